"""The Walrus error table: which error an answer is, and whether to retry it (walrus.md section 6).

Transient: connection errors, timeouts, bodies cut short, 503, 504, 429 from
load shedding, other 5xx, and a 404 for a blob this client stored moments ago
(a CDN may cache the 404 it saw before the blob propagated). Permanent: the
rest of 4xx, and the auth failures that need a new JWT rather than a retry.
How long to wait between attempts is `okai.retry`'s policy, with the settings
of `RetryPolicy`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from okai.errors import OkaiError
from okai.retry import Backoff
from okai.walrus.errors import (
    BlobBlocked,
    BlobNotFound,
    BlobTooLarge,
    PublisherAuthError,
    WalrusStatusError,
    WalrusTimeout,
    WalrusUnavailable,
    WalrusUnreachable,
)
from okai.walrus.results import error_envelope
from okai.walrus.tokens import MORE_TOKENS_HINT

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


def status_error(status: int, raw: bytes, url: str) -> WalrusStatusError:
    """The error for an error answer: its class by status and envelope, its text from the body."""
    try:
        envelope = error_envelope(json.loads(raw))
    except (UnicodeDecodeError, json.JSONDecodeError):
        envelope = None
    reason = envelope.reason if envelope else None
    detail = envelope.message if envelope else raw.decode(errors="replace").strip()[:300]
    message = (
        f"{url} answered {status}"
        + (f" {reason}" if reason else "")
        + (f": {detail}" if detail else "")
    )
    kind: type[WalrusStatusError] = WalrusStatusError
    hint = None
    if status == 404:
        kind = BlobNotFound
    elif status == 413 or reason == "BLOB_TOO_LARGE":
        kind = BlobTooLarge
        hint = "split the data (`okai data push` does) or use an endpoint with a higher limit"
    elif status == 451:
        kind = BlobBlocked
    elif (
        status == 401
        or reason in NEEDS_NEW_TOKEN
        or (envelope is not None and envelope.domain == "auth.publisher.walrus.space")
    ):
        kind = PublisherAuthError
        hint = f"each publisher token is single-use: {MORE_TOKENS_HINT}"
    elif status == 429 or status >= 500:
        kind = WalrusUnavailable
    return kind(message, status=status, reason=reason, url=url, hint=hint)


def store_may_retry(error: Exception) -> bool:
    """Whether a failed publisher request is worth another attempt on the same publisher."""
    if isinstance(error, WalrusUnreachable | WalrusTimeout):
        return True
    return isinstance(error, WalrusStatusError) and (
        classify_status(error.status, error.reason) is Verdict.RETRY
    )


def status_fields(error: OkaiError) -> dict[str, Any]:
    """The keyword arguments that rebuild `error` with another message, status kept."""
    if isinstance(error, WalrusStatusError):
        return {
            "status": error.status,
            "reason": error.reason,
            "url": error.url,
            "hint": error.hint,
        }
    return {"hint": error.hint}


@dataclass(frozen=True)
class RetryPolicy:
    """How many rounds over the endpoints, and the capped exponential wait between them."""

    rounds: int = 5
    first_wait: float = 0.25
    max_wait: float = 4.0
    recent_store_window: float = 60.0
    """Seconds after a store during which a 404 for that blob counts as transient."""

    @property
    def schedule(self) -> Backoff:
        """The waits between rounds: doubling from `first_wait`, capped, jittered."""
        return Backoff(self.rounds, self.first_wait, self.max_wait, jitter=True)


class RecentStores:
    """The blobs this client stored within the window: a 404 for one of them is transient."""

    def __init__(self, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window
        self._clock = clock
        self._stored: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, blob_id: str) -> None:
        now = self._clock()
        with self._lock:
            self._stored[blob_id] = now
            horizon = now - self._window
            for known in [k for k, t in self._stored.items() if t < horizon]:
                del self._stored[known]

    def __contains__(self, blob_id: object) -> bool:
        if not isinstance(blob_id, str):
            return False
        with self._lock:
            stored = self._stored.get(blob_id)
        return stored is not None and self._clock() - stored < self._window
