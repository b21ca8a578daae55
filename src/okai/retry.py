"""The one retry policy of every remote endpoint: Walrus, chain JSON-RPC, Fluence.

Each caller keeps its own settings (`Backoff`: how many attempts, the first
wait, the cap, whether to jitter) and its own error table, which decides what
is transient; this module owns the loop and how the wait grows: doubling from
`first`, capped at `cap`, never after the last attempt. Sleeping is injected,
so tests run every path without waiting.

Why not tenacity or stamina: the three callers need two shapes (one request
retried; rounds over several endpoints with waits between rounds), a
server-given wait (Retry-After) and messages of their own; that is a few
lines here, and one dependency less for the node image and for `okai verify`'s
start-up.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
Sleep = Callable[[float], None]
"""Waits the given seconds (`time.sleep`; tests pass one that only records)."""


@dataclass(frozen=True)
class Backoff:
    """How many attempts, and the capped exponential wait between them."""

    attempts: int
    """Attempts in all, the first included (at least one is always made)."""
    first: float
    """Seconds before the second attempt; each later wait doubles, up to `cap`."""
    cap: float
    """The longest wait, a server-given one included."""
    jitter: bool = False
    """Wait a random time between half the delay and the delay, so clients spread out."""

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after the failed attempt number `retry` (0-based)."""
        ceiling = float(min(self.cap, self.first * 2**retry))
        if not self.jitter:
            return ceiling
        return (rng or random).uniform(ceiling / 2, ceiling)

    def rounds(self, sleep: Sleep = time.sleep) -> Iterator[int]:
        """0, 1, ..., attempts - 1, waiting `delay` before each but the first.

        For loops that try several endpoints in a round: leaving the loop
        early skips the waits still to come.
        """
        for index in range(max(1, self.attempts)):
            if index:
                sleep(self.delay(index - 1))
            yield index


def call(
    attempt: Callable[[], T],
    backoff: Backoff,
    *,
    retryable: Callable[[Exception], bool],
    sleep: Sleep = time.sleep,
    server_wait: Callable[[Exception], float | None] | None = None,
    exhausted: Callable[[Exception], Exception] | None = None,
) -> T:
    """`attempt()`, again after each failure `retryable` accepts, up to `backoff.attempts`.

    A failure it refuses is raised at once. `server_wait` gives the wait an
    endpoint asked for (say, Retry-After), used instead of the backoff's,
    still capped. After the last attempt, `exhausted` turns its failure into
    the error raised (from it); without one the failure itself is raised.
    """
    attempts = max(1, backoff.attempts)
    for index in range(attempts):
        try:
            return attempt()
        except Exception as error:
            if not retryable(error):
                raise
            if index + 1 == attempts:
                if exhausted is None:
                    raise
                raise exhausted(error) from error
            asked = server_wait(error) if server_wait is not None else None
            sleep(min(backoff.cap, asked) if asked is not None else backoff.delay(index))
    raise AssertionError("unreachable")  # pragma: no cover
