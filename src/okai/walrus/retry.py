"""When to retry a Walrus request, and how long to wait (reference/walrus.md section 6).

Transient: connection errors, timeouts, bodies cut short, 503, 504, 429 from
load shedding, other 5xx, and a 404 for a blob this client stored moments ago
(a CDN may cache the 404 it saw before the blob propagated). Permanent: the
rest of 4xx, and the auth failures that need a new JWT rather than a retry.
Waits grow exponentially with jitter and are capped.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum

# Auth reasons that a retry cannot fix (a 504 or 429 that is not transient).
NEEDS_NEW_TOKEN = frozenset({"EXPIRED_SIGNATURE", "TOKEN_ALREADY_USED"})


class Verdict(Enum):
    """What to do after a failed attempt."""

    RETRY = "retry"
    """Transient: try the next endpoint, then wait and try again."""
    NEXT_ENDPOINT = "next-endpoint"
    """This endpoint cannot serve it (size cap, block, 404, bad bytes); another may."""
    FAIL = "fail"
    """The request itself is wrong or unauthorised: no endpoint will accept it."""


def classify_status(status: int, reason: str | None, *, recently_stored: bool = False) -> Verdict:
    """The verdict for an error status; `reason` is the envelope's ErrorInfo reason."""
    if reason in NEEDS_NEW_TOKEN:
        return Verdict.FAIL
    if status == 404:
        return Verdict.RETRY if recently_stored else Verdict.NEXT_ENDPOINT
    if status in (403, 451):
        return Verdict.NEXT_ENDPOINT
    if status == 429 or status >= 500:
        return Verdict.RETRY
    return Verdict.FAIL


@dataclass(frozen=True)
class RetryPolicy:
    """How many rounds over the endpoints, and the capped exponential wait between them."""

    rounds: int = 5
    first_wait: float = 0.25
    max_wait: float = 4.0
    recent_store_window: float = 60.0
    """Seconds after a store during which a 404 for that blob counts as transient."""

    def wait(self, round_index: int) -> float:
        """Seconds to wait after round `round_index` (0-based): full jitter, capped."""
        ceiling = min(self.max_wait, self.first_wait * (2**round_index))
        return random.uniform(ceiling / 2, ceiling)
