"""Reads that fall over between aggregators until one answer passes its check.

Aggregators are asked in the book's order (`okai.walrus.aggregators`), a slow
one raced against the next (`okai.walrus.pacing`). An answer that fails its
check, is cut short or has the wrong size makes way for the next; the ones
that misbehave are demoted for the rest of the client's life. Transient
failures are retried in rounds over the aggregators, waiting between rounds
per `okai.retry`; the error raised at the end names what each aggregator did.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from okai.errors import ConfigError, IntegrityError, OkaiError
from okai.retry import Sleep
from okai.walrus.aggregators import AggregatorBook, ReadEvent
from okai.walrus.blob_ids import BlobIdChecks
from okai.walrus.errors import (
    AnswerRefused,
    ReadLimitExceeded,
    WalrusError,
    WalrusProtocolError,
    WalrusRequestError,
    WalrusShortBody,
    WalrusStalled,
    WalrusStatusError,
    WalrusUnreachable,
)
from okai.walrus.http import ERROR_BODY_LIMIT, as_walrus_errors, read_limited
from okai.walrus.integrity import VerifiedFile
from okai.walrus.pacing import ReadPacing, race
from okai.walrus.retry import (
    RecentStores,
    RetryPolicy,
    Verdict,
    classify_status,
    status_error,
    status_fields,
)
from okai.walrus.streams import (
    READ_AHEAD_ABOVE,
    Check,
    HighWater,
    Opened,
    ProgressFn,
    Sink,
    SkipEndpoint,
    announced_size,
    over_limit,
    read_ahead,
    stream_into,
    verify,
)
from okai.walrus.transport import CANCEL_EXTENSION, Cancel

# What an aggregator did that costs it its place in line for the rest of the command.
MISBEHAVIOUR = (IntegrityError, WalrusStalled, WalrusShortBody, WalrusProtocolError)
SILENCE_GRACE = 1.0
"""Seconds a socket read waits beyond the first-byte wait (see `_read_timeout`)."""


@dataclass
class _ReadState:
    """One read's record: what each aggregator did last, and which are out of it."""

    what: str
    outcomes: dict[str, OkaiError] = field(default_factory=dict)
    skipped: set[str] = field(default_factory=set)


class AggregatorReads:
    """GETs from the aggregators of one client, verified, falling over, retried in rounds."""

    def __init__(
        self,
        http: httpx.Client,
        book: AggregatorBook,
        pacing: ReadPacing,
        retry: RetryPolicy,
        blob_ids: BlobIdChecks,
        recent: RecentStores,
        *,
        hint: str | None,
        sleep: Sleep,
    ) -> None:
        self._http = http
        self._book = book
        self._pacing = pacing
        self._retry = retry
        self._blob_ids = blob_ids
        self._recent = recent
        self.hint = hint
        """Added to connection failures (the local stack's says to start it)."""
        self._sleep = sleep
        # Per socket read: how long a body may stay silent, the first-byte wait and a
        # grace second, so that before the first byte the read loop's own deadline (which
        # knows that no byte came) always gives the read up, not this one in a race.
        silence = pacing.first_byte + SILENCE_GRACE
        self._read_timeout = httpx.Timeout(silence, connect=min(pacing.first_byte, 10.0))
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def first(self) -> str:
        """The first aggregator configured; none is a configuration error."""
        if not self._book.urls:
            raise ConfigError(
                "no Walrus aggregator is configured",
                hint="set OKAI_WALRUS_AGGREGATORS, or start the local stack with `okai dev up`",
            )
        return self._book.urls[0]

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)  # losers end on their own
                self._pool = None

    def read(
        self,
        route: str,
        sink: Sink,
        check: Check,
        expected_size: int | None,
        on_progress: ProgressFn | None,
        *,
        blob_id: str | None,
        max_bytes: int | None = None,
        file_sink: VerifiedFile | None = None,
        headers: Mapping[str, str] | None = None,
        ok_status: int = 200,
    ) -> str:
        """Fetch `route` into `sink` until one answer passes `check`; returns who served it."""
        self.first()
        book, pacing = self._book, self._pacing
        progress = HighWater(on_progress)
        read = _ReadState(check.what)
        recently_stored = blob_id is not None and blob_id in self._recent
        first_choice = book.order()[0]

        def open_one(base: str, cancel: Cancel) -> Opened:
            return self._open(
                base, route, expected_size, max_bytes, headers, ok_status, cancel, recently_stored
            )

        def fatal(error: BaseException) -> bool:
            return not _is_endpoint_failure(error, recently_stored)

        for _ in self._retry.schedule.rounds(self._sleep):
            tried: set[str] = set()
            while candidates := [b for b in book.order() if b not in read.skipped | tried]:
                outcome = race(
                    candidates,
                    open_one,
                    pacing=pacing,
                    pool=self._read_pool(),
                    discard=lambda opened: opened.close(),
                    fatal=fatal,
                )
                for base in outcome.hedged:
                    book.record(
                        ReadEvent(
                            "hedge",
                            base,
                            check.what,
                            f"no first byte from the aggregators before it after "
                            f"{pacing.hedge_after:g} s",
                        )
                    )
                for base, error in outcome.failures.items():
                    tried.add(base)
                    self._failed(read, base, error, recently_stored)
                if outcome.winner is None:
                    break
                for base in outcome.slower:
                    book.demote(
                        base,
                        f"slow: no first byte after {pacing.hedge_after:g} s, "
                        f"{outcome.winner} answered first",
                        check.what,
                    )
                winner, opened = outcome.winner, outcome.value
                assert opened is not None
                tried.add(winner)
                sink.restart()
                progress.restart()
                try:
                    stream_into(opened, sink, expected_size, max_bytes, progress, pacing, self.hint)
                    verify(sink, check, file_sink, winner, self._blob_ids)
                except (OkaiError, SkipEndpoint) as error:
                    if fatal(error):
                        raise
                    self._failed(read, winner, error, recently_stored)
                    continue
                if read.outcomes or winner != first_choice:
                    tried_before = ", ".join(read.outcomes) or first_choice
                    book.record(ReadEvent("fallback", winner, check.what, f"after {tried_before}"))
                return winner
            if len(read.skipped) == len(book.urls):
                break
        raise _read_failure(read, self._retry.rounds)

    def _failed(self, read: _ReadState, base: str, error: BaseException, recent: bool) -> None:
        """Note what `base` did wrong: report it, demote it if it misbehaved, skip or retry."""
        okai_error = error.error if isinstance(error, SkipEndpoint) else error
        assert isinstance(okai_error, OkaiError)
        read.outcomes[base] = okai_error
        self._book.record(ReadEvent("failure", base, read.what, _describe(okai_error)))
        if isinstance(okai_error, MISBEHAVIOUR):
            self._book.demote(base, _describe(okai_error), read.what)
        # Not asked again in this read: wrong answers, stalls, and 404s or refusals.
        if isinstance(error, SkipEndpoint | IntegrityError | WalrusStalled) or (
            isinstance(error, WalrusStatusError)
            and classify_status(error.status, error.reason, recently_stored=recent)
            is Verdict.NEXT_ENDPOINT
        ):
            read.skipped.add(base)

    def _read_pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(32, thread_name_prefix="okai-walrus-read")
            return self._pool

    def _open(
        self,
        base: str,
        route: str,
        expected_size: int | None,
        max_bytes: int | None,
        headers: Mapping[str, str] | None,
        ok_status: int,
        cancel: Cancel,
        recently_stored: bool,
    ) -> Opened:
        """Ask `base` for `route` and wait for the status, the headers and the first bytes."""
        url = base + route
        request = self._http.build_request(
            "GET",
            url,
            headers=headers,
            timeout=self._read_timeout,
            extensions={CANCEL_EXTENSION: cancel},
        )
        with as_walrus_errors(url, self.hint, reading=True):
            response = self._http.send(request, stream=True)
            try:
                if response.status_code != ok_status:
                    raw = read_limited(response, ERROR_BODY_LIMIT)
                    error = status_error(response.status_code, raw, url)
                    verdict = classify_status(
                        error.status, error.reason, recently_stored=recently_stored
                    )
                    if verdict is Verdict.NEXT_ENDPOINT:
                        raise SkipEndpoint(error)
                    raise error
                announced = announced_size(response)
                if expected_size is not None and announced not in (None, expected_size):
                    raise SkipEndpoint(
                        WalrusProtocolError(
                            f"wrong size from {base}: it announced {announced} bytes, "
                            f"the expected size is {expected_size}"
                        )
                    )
                if max_bytes is not None and announced is not None and announced > max_bytes:
                    raise SkipEndpoint(over_limit(base, f"announced {announced}", max_bytes))
                chunks: Iterator[bytes] = response.iter_raw()
                if announced is None or announced > READ_AHEAD_ABOVE:
                    chunks = read_ahead(chunks)
                return Opened(url, response, next(chunks, b""), chunks)
            except BaseException:
                response.close()
                raise


def _is_endpoint_failure(error: BaseException, recently_stored: bool) -> bool:
    """Whether another aggregator (or a later round) may do better than this failure."""
    if isinstance(error, SkipEndpoint | IntegrityError):
        return True
    if isinstance(error, WalrusStatusError):
        verdict = classify_status(error.status, error.reason, recently_stored=recently_stored)
        return verdict is not Verdict.FAIL
    return isinstance(error, WalrusError)


def _describe(error: OkaiError) -> str:
    """What an aggregator did, in a few words (the messages name the aggregator)."""
    if isinstance(error, AnswerRefused):
        return f"{error.what}: {error.actual}"
    if isinstance(error, IntegrityError):
        return f"{error.what}: SHA-256 {error.actual}, expected {error.expected}"
    return error.message


def _read_failure(read: _ReadState, rounds: int) -> OkaiError:
    """The error that best explains why no aggregator delivered, naming what each did."""
    outcomes = list(read.outcomes.values())
    for kind in (AnswerRefused, IntegrityError):
        found = [e for e in outcomes if isinstance(e, kind)]
        if found:
            return found[-1]
    transient = [e for e in outcomes if not isinstance(e, ReadLimitExceeded | WalrusRequestError)]
    retried = [b for b in read.outcomes if b not in read.skipped]
    chosen = (
        ([e for e in outcomes if isinstance(e, ReadLimitExceeded)] or transient or outcomes)[-1]
        if outcomes
        else WalrusUnreachable("no aggregator was asked")
    )
    rounds_note = f" after {rounds} rounds over the aggregators" if retried else ""
    detail = "; ".join(_describe(e) for e in outcomes)
    message = f"reading {read.what} failed{rounds_note}: {detail}"
    assert isinstance(chosen, WalrusError | WalrusRequestError)
    return type(chosen)(message, **status_fields(chosen))
