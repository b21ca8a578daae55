"""Slow aggregators: a first-byte deadline, hedged starts, a minimum throughput.

A read asks the first aggregator. If no first byte has come after
`hedge_after` seconds, it asks the next one as well (a hedged read), and so
on down the list; the first to answer wins and the others are cancelled. An
aggregator that fails makes way for the next at once; one that sends nothing
for `first_byte` seconds is given up as stalled, and so is a body that then
falls silent for a second longer. Once bytes flow, they must also keep coming at `min_throughput` bytes per second, measured over
`throughput_window` seconds, or the read is given up as too slow.

The settings come from `OKAI_WALRUS_FIRST_BYTE_TIMEOUT`, `OKAI_WALRUS_HEDGE_AFTER`,
`OKAI_WALRUS_MIN_THROUGHPUT` and `OKAI_WALRUS_THROUGHPUT_WINDOW` (docs/configuration.md).
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from time import monotonic
from typing import Generic, TypeVar

from okai.errors import ConfigError
from okai.walrus.errors import WalrusStalled
from okai.walrus.transport import Cancel

_ENV = {
    "first_byte": "OKAI_WALRUS_FIRST_BYTE_TIMEOUT",
    "hedge_after": "OKAI_WALRUS_HEDGE_AFTER",
    "min_throughput": "OKAI_WALRUS_MIN_THROUGHPUT",
    "throughput_window": "OKAI_WALRUS_THROUGHPUT_WINDOW",
}


@dataclass(frozen=True)
class ReadPacing:
    """How long an aggregator may keep a read waiting (seconds; bytes per second)."""

    first_byte: float = 10.0
    """No first byte (nor any byte later) for this long: the aggregator has stalled."""
    hedge_after: float = 1.5
    """No first byte for this long: ask the next aggregator too. 0 turns hedging off."""
    min_throughput: float = 64 * 1024
    """Fewer bytes per second than this, over a window: too slow. 0 turns the check off."""
    throughput_window: float = 10.0

    def __post_init__(self) -> None:
        if self.first_byte <= 0 or self.throughput_window <= 0:
            raise ConfigError("the first-byte timeout and the throughput window must be positive")
        if self.hedge_after < 0 or self.min_throughput < 0:
            raise ConfigError("the hedge delay and the minimum throughput cannot be negative")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ReadPacing:
        """The defaults, with each `OKAI_WALRUS_*` variable that is set taking precedence."""
        values: dict[str, float] = {}
        for name, variable in _ENV.items():
            raw = environ.get(variable, "").strip()
            if not raw:
                continue
            try:
                values[name] = float(raw)
            except ValueError:
                raise ConfigError(f"{variable}={raw[:40]!r} is not a number") from None
        return cls(**values)


class Throughput:
    """Raises `WalrusStalled` when a body arrives slower than the pacing allows."""

    def __init__(self, pacing: ReadPacing, url: str) -> None:
        self._pacing = pacing
        self._url = url
        self._since = monotonic()
        self._bytes = 0

    def advance(self, n: int) -> None:
        self._bytes += n
        now = monotonic()
        elapsed = now - self._since
        if elapsed < self._pacing.throughput_window:
            return
        if self._bytes < self._pacing.min_throughput * elapsed:
            raise WalrusStalled(
                f"{self._url} is too slow: {self._bytes} bytes in {elapsed:.1f} s, below the "
                f"minimum of {self._pacing.min_throughput:g} bytes/s",
                hint="raise OKAI_WALRUS_THROUGHPUT_WINDOW or lower OKAI_WALRUS_MIN_THROUGHPUT "
                "for a slow link",
            )
        self._since, self._bytes = now, 0


T = TypeVar("T")


@dataclass
class _Attempt:
    base: str
    started: float
    cancel: Cancel = field(default_factory=Cancel)
    lock: threading.Lock = field(default_factory=threading.Lock)
    abandoned: bool = False


@dataclass
class Race(Generic[T]):
    """How a race for the first byte ended."""

    winner: str | None = None
    value: T | None = None
    failures: dict[str, BaseException] = field(default_factory=dict)
    """Aggregators that failed, stalled included, in the order they did."""
    slower: list[str] = field(default_factory=list)
    """Aggregators asked before the winner that had not answered when it did."""
    hedged: list[str] = field(default_factory=list)
    """Aggregators asked while an earlier one was still silent."""


def race(
    candidates: Sequence[str],
    open_one: Callable[[str, Cancel], T],
    *,
    pacing: ReadPacing,
    pool: Executor,
    discard: Callable[[T], None],
    fatal: Callable[[BaseException], bool],
) -> Race[T]:
    """Ask `candidates` in turn (hedged, see the module docstring) until one answers.

    `open_one(base, cancel)` runs in `pool` and returns an opened answer (its
    first bytes read); answers that lose are handed to `discard`. A failure for
    which `fatal` is true ends the race at once and is raised.
    """
    waiting = list(candidates)
    running: list[_Attempt] = []
    answers: queue.Queue[tuple[_Attempt, T | None, BaseException | None]] = queue.Queue()
    outcome: Race[T] = Race()

    def run(attempt: _Attempt) -> None:
        try:
            value = open_one(attempt.base, attempt.cancel)
        except BaseException as exc:  # handed to the racing thread
            with attempt.lock:
                if not attempt.abandoned:
                    answers.put((attempt, None, exc))
            return
        with attempt.lock:
            if not attempt.abandoned:
                answers.put((attempt, value, None))
                return
        discard(value)

    def start() -> None:
        attempt = _Attempt(waiting.pop(0), monotonic())
        if running:
            outcome.hedged.append(attempt.base)
        running.append(attempt)
        pool.submit(run, attempt)

    def abandon(attempt: _Attempt) -> None:
        with attempt.lock:
            attempt.abandoned = True
        attempt.cancel.cancel()

    try:
        start()
        while running:
            now = monotonic()
            deadlines = [a.started + pacing.first_byte for a in running]
            if waiting and pacing.hedge_after > 0:
                deadlines.append(running[-1].started + pacing.hedge_after)
            try:
                attempt, value, error = answers.get(timeout=max(0.0, min(deadlines) - now))
            except queue.Empty:
                now = monotonic()
                for late in [a for a in running if now >= a.started + pacing.first_byte]:
                    running.remove(late)
                    abandon(late)
                    outcome.failures[late.base] = WalrusStalled(
                        f"{late.base} stalled: no first byte in {pacing.first_byte:g} s",
                        hint="it is given up; set OKAI_WALRUS_FIRST_BYTE_TIMEOUT to wait longer",
                    )
                hedge_due = bool(running) and now >= running[-1].started + pacing.hedge_after
                if waiting and (not running or (pacing.hedge_after > 0 and hedge_due)):
                    start()
                continue
            running.remove(attempt)
            if error is not None:
                if fatal(error):
                    raise error
                outcome.failures[attempt.base] = error
                if waiting and (not running or pacing.hedge_after > 0):
                    start()
                continue
            outcome.winner, outcome.value = attempt.base, value
            outcome.slower = [a.base for a in running if a.started < attempt.started]
            return outcome
        return outcome
    finally:
        for attempt in running:
            abandon(attempt)
        while not answers.empty():  # answers that came in before their attempts were abandoned
            _, value, _ = answers.get_nowait()
            if value is not None:
                discard(value)
