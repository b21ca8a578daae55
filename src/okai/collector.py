"""The cyclic garbage collector held off where its passes are wasted work.

Each pass walks every object in the generations it collects; code that builds many objects,
none in a cycle, pays for walks that find nothing. Both helpers leave the collector on or
off as they found it, whatever happens in the block.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused() -> Iterator[None]:
    """No cyclic collection inside the block; what the block left is collected once the
    collector runs again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextmanager
def paused_then_frozen() -> Iterator[None]:
    """`paused`, then what the block left is frozen: out of every later pass, for objects
    that live as long as the process (what imports leave). Cycles among them stay too."""
    with paused():
        try:
            yield
        finally:
            gc.freeze()
