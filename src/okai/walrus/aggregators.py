"""The order reads try aggregators in, and what each did: one book per client.

An aggregator that serves wrong bytes, a short body or the wrong size, that
stalls, crawls or loses a hedged race is demoted for the rest of the client's
life (in the CLI: the rest of the command): later reads ask it only after the
others. Every failure, hedge, fall-over and demotion is kept as a `ReadEvent`
and handed to `on_event`, so commands can say what happened (stderr, --json).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

EventKind = Literal["failure", "hedge", "fallback", "demotion"]
MAX_EVENTS = 200
"""Events kept for the --json report; later ones are counted, not kept."""


@dataclass(frozen=True)
class ReadEvent:
    """Something an aggregator did during a read."""

    kind: EventKind
    aggregator: str
    what: str
    """What was being read: `blob <id>`, `quilt patch <id>`..."""
    detail: str

    def describe(self) -> str:
        """One line for people."""
        if self.kind == "failure":
            return f"{self.what}: {self.detail}"
        if self.kind == "hedge":
            return f"{self.what}: also asking {self.aggregator}: {self.detail}"
        if self.kind == "fallback":
            return f"{self.what}: served by {self.aggregator} {self.detail}"
        return f"{self.aggregator} demoted for the rest of this command: {self.detail}"

    def to_json(self) -> dict[str, str]:
        return {
            "event": self.kind,
            "aggregator": self.aggregator,
            "what": self.what,
            "detail": self.detail,
        }


class AggregatorBook:
    """The aggregators in reading order (demoted ones last) and the events of their reads."""

    def __init__(self, urls: Sequence[str]) -> None:
        self.urls = tuple(urls)
        self.on_event: Callable[[ReadEvent], None] | None = None
        self._demoted: dict[str, str] = {}
        self._events: list[ReadEvent] = []
        self._left_out = 0
        self._lock = threading.Lock()

    def order(self) -> list[str]:
        """Aggregators not demoted, as configured, then the demoted in the order they were."""
        with self._lock:
            demoted = list(self._demoted)
        return [url for url in self.urls if url not in demoted] + demoted

    def demote(self, url: str, reason: str, what: str) -> None:
        """Ask `url` last from now on (reported once)."""
        with self._lock:
            if url in self._demoted:
                return
            self._demoted[url] = reason
        self.record(ReadEvent("demotion", url, what, reason))

    def record(self, event: ReadEvent) -> None:
        with self._lock:
            if len(self._events) < MAX_EVENTS:
                self._events.append(event)
            else:
                self._left_out += 1
        if self.on_event is not None:
            self.on_event(event)

    def events(self) -> list[ReadEvent]:
        with self._lock:
            return list(self._events)

    def report(self) -> dict[str, Any]:
        """What `--json` shows: the demoted aggregators and the events, in order."""
        with self._lock:
            return {
                "demoted": dict(self._demoted),
                "events": [event.to_json() for event in self._events],
                "eventsLeftOut": self._left_out,
            }
