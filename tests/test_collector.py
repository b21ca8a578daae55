"""okai.collector: the cyclic collector held off in a block, and back as it was after it."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest

from okai import collector


@pytest.fixture(autouse=True)
def collector_as_found() -> Iterator[None]:
    """The collector on, and nothing left frozen by the test."""
    assert gc.isenabled()
    yield
    gc.unfreeze()
    gc.enable()


class Cycle:
    def __init__(self) -> None:
        self.me = self


def a_dropped_cycle() -> weakref.ref[Cycle]:
    return weakref.ref(Cycle())


def test_paused_leaves_cycles_to_the_next_pass() -> None:
    with collector.paused():
        assert not gc.isenabled()
        left = a_dropped_cycle()
        gc.collect()  # an explicit pass still runs
        assert left() is None
        left = a_dropped_cycle()
    assert gc.isenabled() and left() is not None
    gc.collect()
    assert left() is None


def test_paused_then_frozen_keeps_what_the_block_left_out_of_later_passes() -> None:
    with collector.paused_then_frozen():
        assert not gc.isenabled()
        left = a_dropped_cycle()
    assert gc.isenabled()
    gc.collect()
    assert left() is not None, "frozen: no later pass looks at it"
    gc.unfreeze()
    gc.collect()
    assert left() is None


@pytest.mark.parametrize("block", [collector.paused, collector.paused_then_frozen])
def test_the_collector_is_back_when_the_block_fails(
    block: Callable[[], AbstractContextManager[None]],
) -> None:
    with pytest.raises(RuntimeError, match="bad job file"), block():
        raise RuntimeError("bad job file")
    assert gc.isenabled()


@pytest.mark.parametrize("block", [collector.paused, collector.paused_then_frozen])
def test_a_collector_that_was_off_stays_off(
    block: Callable[[], AbstractContextManager[None]],
) -> None:
    gc.disable()
    with block():
        pass
    assert not gc.isenabled()
