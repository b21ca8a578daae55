"""Signals while a cluster is made or removed: SIGINT, SIGTERM and SIGHUP, handled alike.

Ctrl-C, `kill`, a CI cancel or a closed terminal must never leave resources
billed without a word. Inside `handling_signals()` (installed by
`okai cluster up` and `down`):

- the first signal raises `Interrupted` (a `KeyboardInterrupt`) where the
  program is, so the usual rollback runs; inside a `shielded()` block (one
  create and the recording of its answer) it is raised when the block ends,
  so no answer is lost;
- any later signal, and any signal while a rollback or teardown runs
  (`rolling_back()`), raises nothing: it asks the teardown to stop once its
  current call is done, and `checkpoint()`, which the teardown calls between
  calls, raises `TeardownStopped`. The teardown records what is left and the
  message names the `okai cluster down` command that finishes the job.

Outside the main thread, or outside `handling_signals()`, nothing changes.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

from okai.errors import ExitCode, OperationalError

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A signal asked okai to stop; rollbacks treat it like Ctrl-C."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name

    def __str__(self) -> str:
        return f"interrupted by {self.signal_name}"


class TeardownStopped(OperationalError):
    """A signal stopped a rollback or teardown between two calls; resources may be left."""


class ClusterInterrupted(OperationalError):
    """What the CLI reports after a signal: what is still billed, and the command to run."""

    exit_code = ExitCode.INTERRUPTED


@dataclass
class _Guard:
    installed: bool = False
    raised: bool = False
    """The first signal was raised: later ones only stop teardowns."""
    shield_depth: int = 0
    pending: str | None = None
    """A signal that arrived inside a shielded block, raised when the block ends."""
    rolling_back: int = 0
    stop: str | None = None
    """A signal that asked the running teardown to stop."""


_guard = _Guard()


def _handle(signum: int, frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    if _guard.raised or _guard.rolling_back:
        if _guard.stop is None:
            _guard.stop = name
            print(
                f"{name}: finishing the current call, then stopping the teardown "
                "(what is left stays recorded)",
                file=sys.stderr,
                flush=True,
            )
        return
    if _guard.shield_depth:
        _guard.pending = _guard.pending or name
        return
    _guard.raised = True
    raise Interrupted(name)


@contextmanager
def handling_signals() -> Iterator[None]:
    """Turn SIGINT, SIGTERM and SIGHUP into `Interrupted` (see the module docstring)."""
    if _guard.installed or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    _guard.__init__()  # type: ignore[misc]
    _guard.installed = True
    for sig in SIGNALS:
        signal.signal(sig, _handle)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _guard.__init__()  # type: ignore[misc]


@contextmanager
def shielded() -> Iterator[None]:
    """A signal arriving in this block is raised when the block ends (if nothing else was)."""
    _guard.shield_depth += 1
    failed = False
    try:
        yield
    except BaseException:
        failed = True  # a rollback follows anyway; the signal is not lost, it is this one
        raise
    finally:
        _guard.shield_depth -= 1
        if not _guard.shield_depth and _guard.pending is not None:
            name, _guard.pending = _guard.pending, None
            if not failed and not _guard.rolling_back:
                _guard.raised = True
                raise Interrupted(name)


@contextmanager
def rolling_back() -> Iterator[None]:
    """While a rollback or teardown runs, signals stop it between calls instead of raising."""
    _guard.rolling_back += 1
    _guard.pending = None
    try:
        yield
    finally:
        _guard.rolling_back -= 1


def checkpoint() -> None:
    """Raise `TeardownStopped` if a signal asked the running teardown to stop."""
    if _guard.stop is not None and _guard.rolling_back:
        raise TeardownStopped(f"stopped by {_guard.stop} before it finished")
