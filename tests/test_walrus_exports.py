"""`okai.walrus` exports exactly what `__all__` lists (httpx's habit: the list cannot drift)."""

from __future__ import annotations

import inspect

import okai.walrus as walrus
from okai.walrus import server


def test_all_matches_the_public_names() -> None:
    public = {
        name
        for name, value in vars(walrus).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public == set(walrus.__all__)
    assert walrus.__all__ == sorted(walrus.__all__)


def test_server_exports() -> None:
    for name in server.__all__:
        assert getattr(server, name) is not None
