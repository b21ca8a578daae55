"""Test-only misbehaviour of the local server, switchable while it runs, and its counters.

Counts are "how many of the next requests" to affect; -1 means all of them
until switched off. Tests set them in-process (`server.faults.set(...)`) or,
for a server in another process started with `--test-controls`, over HTTP
(`POST /_okai/test/faults` with the same fields as JSON).
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, fields
from typing import Any

# Error statuses a test may ask for, with the reason and status name the real server uses.
FAILURES: dict[int, tuple[str, str]] = {
    403: ("PERMISSION_DENIED", "BLOB_TOO_LARGE"),
    404: ("NOT_FOUND", "BLOB_NOT_FOUND"),
    429: ("RESOURCE_EXHAUSTED", ""),  # load shedding: plain text, no envelope
    451: ("UNAVAILABLE_FOR_LEGAL_REASONS", "FORBIDDEN_BLOB"),
    500: ("INTERNAL", "INTERNAL_ERROR"),
    503: ("UNAVAILABLE", "BLOB_UNAVAILABLE"),
    504: ("DEADLINE_EXCEEDED", "INSUFFICIENT_CONFIRMATIONS"),
}
STALL_LIMIT = 120.0
"""The longest a stalled read hangs, so a forgotten switch cannot hold a thread forever."""


@dataclass
class FaultSettings:
    """The switches; all off by default."""

    corrupt: int = 0
    """Blob reads whose bytes get one byte flipped."""
    truncate: int = 0
    """Blob reads cut off after half their bytes (the connection then closes)."""
    stall: int = 0
    """Blob reads that send nothing, not even headers, until the switches are reset or the
    server stops (at most STALL_LIMIT seconds): an aggregator that hangs."""
    trickle: int = 0
    """Blob reads whose bytes are sent at `trickle_rate` bytes per second: one that crawls."""
    trickle_rate: int = 4096
    delay: float = 0.0
    """Seconds to wait before answering every /v1 request."""
    fail: int = 0
    """/v1 requests answered with `fail_status` instead of being served."""
    fail_status: int = 503
    fail_scope: str = "any"
    """Which requests `fail` hits: "read", "store" or "any"."""


class Faults:
    """Thread-safe fault switches plus request counters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settings = FaultSettings()
        self._counts: Counter[str] = Counter()
        self._released = threading.Event()

    def set(self, **changes: Any) -> FaultSettings:
        """Change some switches (unknown names and bad values raise ValueError)."""
        known = {field.name: field.type for field in fields(FaultSettings)}
        with self._lock:
            for name, value in changes.items():
                if name not in known:
                    raise ValueError(f"unknown fault {name!r}; known: {sorted(known)}")
                if name == "fail_status" and int(value) not in FAILURES:
                    raise ValueError(f"fail_status must be one of {sorted(FAILURES)}")
                if name == "fail_scope" and value not in ("read", "store", "any"):
                    raise ValueError("fail_scope must be read, store or any")
                if name == "trickle_rate" and int(value) < 1:
                    raise ValueError("trickle_rate must be at least 1 byte per second")
                setattr(self._settings, name, value)
            return FaultSettings(**self._settings.__dict__)

    def reset(self) -> None:
        """All switches off; reads stalled so far are released."""
        with self._lock:
            self._settings = FaultSettings()
            self._released.set()
            self._released = threading.Event()

    def release(self) -> None:
        """Let every stalled read go on (the server is stopping)."""
        with self._lock:
            self._released.set()

    def settings(self) -> FaultSettings:
        with self._lock:
            return FaultSettings(**self._settings.__dict__)

    def _take(self, name: str) -> bool:
        """Consume one use of a counted switch; True if it applies to this request."""
        with self._lock:
            left = getattr(self._settings, name)
            if left == 0:
                return False
            if left > 0:
                setattr(self._settings, name, left - 1)
            return True

    def take_failure(self, kind: str) -> int | None:
        """The status to fail this request with, if a failure is due for its kind."""
        scope = self.settings().fail_scope
        if scope not in ("any", kind):
            return None
        return self.settings().fail_status if self._take("fail") else None

    def take_corrupt(self) -> bool:
        return self._take("corrupt")

    def take_truncate(self) -> bool:
        return self._take("truncate")

    def delay(self) -> float:
        return self.settings().delay

    def stall_if_due(self) -> None:
        """Hang this read until released, if a stall is due."""
        if self._take("stall"):
            with self._lock:
                released = self._released
            released.wait(STALL_LIMIT)

    def trickle_rate(self) -> int | None:
        """Bytes per second to send this read at, if a trickle is due."""
        return self.settings().trickle_rate if self._take("trickle") else None

    # ------------------------------------------------------------ counters

    def count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)
