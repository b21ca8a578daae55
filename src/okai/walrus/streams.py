"""Verified streams: bodies moved in 1 MiB pieces, hashed as they arrive, bounded in size.

Memory stays flat whatever the blob size: a read goes into a sink (memory,
a file, or nowhere but the hash), bounded by the expected size or the
caller's limit, kept up to pace, and kept only if its SHA-256 (or its
recomputed Walrus blob ID, or the caller's own check) is what was trusted.
Large bodies move through a helper thread, so hashing overlaps the network.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import queue
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import httpx

from okai.digest import Digest
from okai.errors import IntegrityError, OkaiError
from okai.walrus.blob_ids import BlobIdChecks
from okai.walrus.errors import (
    AnswerRefused,
    BlobIdMismatch,
    ReadLimitExceeded,
    WalrusProtocolError,
    WalrusRequestError,
    WalrusShortBody,
)
from okai.walrus.http import MiB, as_walrus_errors
from okai.walrus.integrity import VerifiedFile
from okai.walrus.pacing import ReadPacing, Throughput

CHUNK = MiB
DEFAULT_READ_BYTES_LIMIT = 64 * MiB
"""The most a read into memory takes unless the caller says otherwise."""
READ_AHEAD_ABOVE = 4 * MiB
"""Bodies larger than this move through a helper thread, so hashing overlaps the network."""

ProgressFn = Callable[[int], None]
"""Called with the number of bytes just moved; used by progress bars."""
Acceptor = Callable[[bytes], "str | None"]
"""Why the bytes of an answer are refused (None: accepted); a refused answer falls over."""


class Sink(Protocol):
    size: int

    def write(self, chunk: bytes) -> None: ...

    def restart(self) -> None: ...

    def digest(self) -> Digest: ...


class BytesSink:
    """Collects a body in memory, hashing as it arrives (reads bound its size)."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self.buffer = bytearray()
        self.size = 0
        self._hasher = hashlib.sha256()

    def write(self, chunk: bytes) -> None:
        self._hasher.update(chunk)
        self.buffer += chunk
        self.size += len(chunk)

    def digest(self) -> Digest:
        return Digest("sha256:" + self._hasher.hexdigest())


class HashSink:
    """Hashes a body and keeps none of it: for checking what a URL serves, at any size."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self.size = 0
        self._hasher = hashlib.sha256()

    def write(self, chunk: bytes) -> None:
        self._hasher.update(chunk)
        self.size += len(chunk)

    def digest(self) -> Digest:
        return Digest("sha256:" + self._hasher.hexdigest())


class ReportingReader(io.BufferedReader):
    """A file read by httpx's multipart encoder, reporting each piece it reads."""

    def __init__(self, raw: io.FileIO | io.BytesIO, report: ProgressFn) -> None:
        super().__init__(raw)
        self._report = report

    def read(self, size: int | None = -1, /) -> bytes:
        chunk = super().read(size)
        self._report(len(chunk))
        return chunk


class HighWater:
    """Reports progress only beyond what was already reported, so retries do not double it."""

    def __init__(self, report: ProgressFn | None) -> None:
        self._report = report
        self._reported = 0
        self._current = 0

    def restart(self) -> None:
        self._current = 0

    def __call__(self, n: int) -> None:
        self._current += n
        if self._report is not None and self._current > self._reported:
            self._report(self._current - self._reported)
            self._reported = self._current


class SkipEndpoint(Exception):
    """This aggregator cannot serve the read; try the next (carries the okai error)."""

    def __init__(self, error: OkaiError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True)
class Check:
    """How a read is verified: against a trusted SHA-256, a recomputed blob ID, or both,
    and then by the caller's `accept` (reads into memory only)."""

    sha256: Digest | None
    blob_id: str | None
    what: str
    accept: Acceptor | None = None


@dataclass
class Opened:
    """An answer whose status, headers and first bytes have arrived."""

    url: str
    response: httpx.Response
    first: bytes
    rest: Iterator[bytes]

    def close(self) -> None:
        """Hang up; a read-ahead helper thread (`read_ahead`) stops with its generator."""
        self.response.close()
        if isinstance(self.rest, Generator):
            self.rest.close()


def announced_size(response: httpx.Response) -> int | None:
    """The Content-Length of an answer; an unreadable one costs the aggregator its turn."""
    announced = response.headers.get("Content-Length")
    try:
        return None if announced is None else int(announced)
    except ValueError:
        raise SkipEndpoint(
            WalrusProtocolError(f"{response.request.url} announced a size of {announced[:40]!r}")
        ) from None


def over_limit(base: str, did: str, limit: int) -> ReadLimitExceeded:
    return ReadLimitExceeded(
        f"too large: {base} {did} than the {limit} bytes allowed for this read",
        hint="raise the limit for this kind of object if it is legitimately this large",
    )


def stream_into(
    opened: Opened,
    sink: Sink,
    expected_size: int | None,
    max_bytes: int | None,
    progress: HighWater,
    pacing: ReadPacing,
    hint: str | None,
) -> None:
    """The rest of an opened answer into `sink`, bounded in size and kept up to pace."""
    base = opened.url.split("/v1/", 1)[0]
    limit = expected_size if expected_size is not None else max_bytes
    pace = Throughput(pacing, base) if pacing.min_throughput else None
    try:
        with as_walrus_errors(opened.url, hint, reading=True):
            for chunk in itertools.chain((opened.first,), opened.rest):
                if limit is not None and sink.size + len(chunk) > limit:
                    if expected_size is None:
                        raise SkipEndpoint(over_limit(base, "sent more", limit))
                    raise SkipEndpoint(
                        WalrusProtocolError(
                            f"wrong size from {base}: it sent more than the expected "
                            f"{expected_size} bytes"
                        )
                    )
                sink.write(chunk)
                progress(len(chunk))
                if pace is not None:
                    pace.advance(len(chunk))
    finally:
        opened.close()
    if expected_size is not None and sink.size < expected_size:
        raise WalrusShortBody(
            f"short body from {base}: {sink.size} of the expected {expected_size} bytes"
        )


def verify(
    sink: Sink, check: Check, file_sink: VerifiedFile | None, base: str, blob_ids: BlobIdChecks
) -> None:
    """Refuse what `base` sent into `sink` unless it passes `check`."""
    actual = sink.digest()
    if check.sha256 is not None and actual != check.sha256:
        error = IntegrityError(f"{check.what} (wrong bytes from {base})", check.sha256, actual)
        error.source = base  # so a verifier can name who served the wrong bytes
        raise error
    if check.blob_id is not None:
        computer = blob_ids.computer(required=True)
        assert computer is not None
        if not blob_ids.allows(sink.size):
            raise SkipEndpoint(
                WalrusRequestError(
                    f"{check.what} is {sink.size} bytes, above the {blob_ids.up_to}"
                    "-byte limit for recomputing blob IDs; give its expected SHA-256"
                )
            )
        if file_sink is not None:
            file_sink.flush()
            computed = computer.of_file(file_sink.temporary, 0, sink.size, sha256=actual)
        else:
            assert isinstance(sink, BytesSink)
            computed = computer.of_bytes(bytes(sink.buffer), sha256=actual)
        if computed != check.blob_id:
            raise BlobIdMismatch(
                f"the Walrus blob ID of the bytes served as {check.what} by {base}",
                check.blob_id,
                computed,
            )
    if check.accept is not None:
        assert isinstance(sink, BytesSink)
        data = bytes(sink.buffer)
        problem = check.accept(data)
        if problem is not None:
            raise AnswerRefused(
                f"{check.what} (wrong bytes from {base})", "acceptable bytes", problem, data
            )


_END = object()


def read_ahead(chunks: Iterator[bytes], depth: int = 4) -> Iterator[bytes]:
    """Pull chunks in a helper thread, so the network read overlaps hashing and writing.

    At most `depth` chunks wait in between, so memory stays flat; a failure in
    the helper is raised here, and a consumer that stops early stops the helper.
    """
    waiting: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                waiting.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def pump() -> None:
        try:
            for chunk in chunks:
                if not offer(chunk):
                    return
            offer(_END)
        except BaseException as exc:  # handed to the consumer, which raises it
            offer(exc)

    threading.Thread(target=pump, name="okai-read-ahead", daemon=True).start()
    try:
        while True:
            item = waiting.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, bytes)
            yield item
    finally:
        stop.set()


def file_chunks(stream: IO[bytes], size: int, path: Path) -> Iterator[bytes]:
    """`size` bytes of an open file in pieces; a file that shrinks meanwhile is refused."""
    left = size
    while left > 0:
        chunk = stream.read(min(CHUNK, left))
        if not chunk:
            raise WalrusRequestError(f"{path} became shorter while it was being stored")
        left -= len(chunk)
        yield chunk
