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

import torch


def derive_seed(seed: int, purpose: str, *position: int) -> int:
    """A 63-bit seed for one purpose at one position, independent of every other."""
    text = ":".join([str(seed), purpose, *map(str, position)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def step_seed(base: int, step: int) -> int:
    """The seed of one training step from a per-rank base (`derive_seed(seed, "step", rank)`).

    SplitMix64 instead of another SHA-256: this runs every step.
    """
    z = (base + (step + 1) * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) >> 1


class StepSeeds:
    """Reseeds, before each training step, the generators a step draws from (dropout and the
    like), from (seed, rank, step)."""

    def __init__(self, seed: int, rank: int, device_type: str) -> None:
        self.base = derive_seed(seed, "step", rank)
        self.cuda = device_type == "cuda"

    def before(self, step: int) -> None:
        """Not `torch.manual_seed`: it also queues lazy seeding of every accelerator backend,
        recording a Python stack each time, which costs milliseconds a step."""
        seed = step_seed(self.base, step)
        torch.default_generator.manual_seed(seed)
        if self.cuda:
            torch.cuda.manual_seed(seed)
