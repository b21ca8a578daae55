"""`okai record`: publish a run's model and attestation, and record them on chain."""

from __future__ import annotations

from okai.errors import NotBuiltError


def record() -> None:
    """Store a run's model and attestation on Walrus and record them on chain (not built yet)."""
    raise NotBuiltError("okai record")
