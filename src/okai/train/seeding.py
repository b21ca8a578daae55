"""Randomness as a function of the job: every draw is derived from (seed, purpose, position).

Nothing random is carried as hidden state between steps. The data order of an
epoch is a function of (seed, epoch, rank, file); the generator used during a
training step (dropout, augmentation) is reseeded from (seed, rank, step) before
the step. So a run resumed from a checkpoint at step k draws exactly what an
uninterrupted run draws from step k on, whichever node or process a rank lands
on after a restart, and checkpoints need no per-rank RNG state.
"""

from __future__ import annotations

import hashlib


def derive_seed(seed: int, purpose: str, *position: int) -> int:
    """A 63-bit seed for one purpose at one position, independent of every other."""
    text = ":".join([str(seed), purpose, *map(str, position)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1
