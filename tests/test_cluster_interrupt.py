"""okai.compute.interrupt in this process: real signals, delivered to ourselves."""

from __future__ import annotations

import os
import signal

import pytest

from okai.compute import interrupt


def test_a_signal_raises_interrupted_and_the_handlers_are_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(interrupt.Interrupted) as caught, interrupt.handling_signals():
        os.kill(os.getpid(), signal.SIGTERM)
    assert str(caught.value) == "interrupted by SIGTERM"
    assert isinstance(caught.value, KeyboardInterrupt), "rollbacks treat it like Ctrl-C"
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_signal_inside_a_shielded_block_waits_for_its_end() -> None:
    done: list[str] = []
    with pytest.raises(interrupt.Interrupted, match="SIGHUP"), interrupt.handling_signals():
        with interrupt.shielded():
            os.kill(os.getpid(), signal.SIGHUP)
            done.append("the answer was recorded")
        done.append("never reached")
    assert done == ["the answer was recorded"]


def test_during_a_teardown_a_signal_stops_it_between_calls() -> None:
    calls: list[int] = []
    with interrupt.handling_signals(), interrupt.rolling_back():
        interrupt.checkpoint()  # no signal yet: carries on
        calls.append(1)
        os.kill(os.getpid(), signal.SIGINT)  # raises nothing here
        calls.append(2)  # the current call finishes
        with pytest.raises(interrupt.TeardownStopped, match="stopped by SIGINT"):
            interrupt.checkpoint()
    assert calls == [1, 2]


def test_after_the_first_signal_later_ones_only_ask_to_stop() -> None:
    with interrupt.handling_signals():
        with pytest.raises(interrupt.Interrupted):
            os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)  # e.g. a second Ctrl-C before the rollback began
        with interrupt.rolling_back(), pytest.raises(interrupt.TeardownStopped):
            interrupt.checkpoint()
