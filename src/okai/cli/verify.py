"""`okai verify`: check a model file or digest against its provenance record."""

from __future__ import annotations

from okai.errors import NotBuiltError


def verify() -> None:
    """Verify a model's provenance against the chain and Walrus (not built yet)."""
    raise NotBuiltError("okai verify")
