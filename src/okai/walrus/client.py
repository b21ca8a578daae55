"""The Walrus HTTP client: store on a publisher, read from aggregators, verify everything.

`WalrusClient` is the face of the package; each part of the work has a module:

- `okai.walrus.http`: plain requests, httpx failures as okai errors;
- `okai.walrus.streams`: verified streams (1 MiB pieces hashed as they
  arrive, size limits, the check of what arrived);
- `okai.walrus.retry`: the status-to-error table and what to retry, with the
  waits of `okai.retry`;
- `okai.walrus.fallback`: reads falling over and hedged between aggregators,
  which are demoted when they misbehave (`okai.walrus.aggregators`,
  `okai.walrus.pacing`);
- `okai.walrus.store`: stores on the publisher, one token per request;
- `okai.walrus.blob_ids`: recomputing blob IDs; `okai.walrus.dataset`:
  datasets over all this.

See `okai.walrus.errors` for what is raised.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from okai import __version__
from okai.config import WALRUS_PUBLIC_BODY_LIMIT, Network, Secrets
from okai.digest import Digest
from okai.errors import ConfigError
from okai.retry import Sleep
from okai.walrus.aggregators import AggregatorBook
from okai.walrus.blob_ids import BLOB_ID_CHECK_ENV, BlobIdChecks, BlobIdComputer
from okai.walrus.errors import WalrusRequestError
from okai.walrus.fallback import AggregatorReads
from okai.walrus.http import MiB, checked_blob_id
from okai.walrus.integrity import VerifiedFile
from okai.walrus.pacing import ReadPacing
from okai.walrus.quilts import QuiltMethods
from okai.walrus.results import StoreResult
from okai.walrus.retry import RecentStores, RetryPolicy
from okai.walrus.store import Publisher
from okai.walrus.streams import (
    CHUNK,
    DEFAULT_READ_BYTES_LIMIT,
    Acceptor,
    BytesSink,
    Check,
    ProgressFn,
    file_chunks,
)
from okai.walrus.tokens import PublisherTokens
from okai.walrus.transport import BulkTransport

DEFAULT_TIMEOUT = 60.0
DEFAULT_BLOB_ID_CHECK_UP_TO = 64 * MiB
DEFAULT_MAX_QUILT_BODY = 100 * MiB

__all__ = ["Acceptor", "ProgressFn", "WalrusClient"]


class WalrusClient(QuiltMethods):
    """A client for one publisher and several aggregators; a context manager.

    `compute_blob_ids_up_to` bounds the size of blobs whose real Walrus blob
    ID is recomputed locally (it needs the whole blob in memory and about a
    second of CPU each): on store always, on read only when asked or when
    the caller has no SHA-256. Set it to 0 to turn the recomputation off
    (against a server using stand-in IDs, say). `unreachable_hint` goes with
    connection failures (the local stack's says to start it); `sleep` waits
    between retries (tests pass one that does not).
    """

    def __init__(
        self,
        aggregators: Sequence[str],
        publisher: str | None,
        *,
        tokens: PublisherTokens | None = None,
        max_body: int = WALRUS_PUBLIC_BODY_LIMIT,
        max_quilt_body: int = DEFAULT_MAX_QUILT_BODY,
        timeout: float = DEFAULT_TIMEOUT,
        compute_blob_ids_up_to: int = DEFAULT_BLOB_ID_CHECK_UP_TO,
        retry: RetryPolicy | None = None,
        read_pacing: ReadPacing | None = None,
        transport: httpx.BaseTransport | None = None,
        blob_ids: BlobIdComputer | None = None,
        unreachable_hint: str | None = None,
        sleep: Sleep = time.sleep,
    ) -> None:
        self.aggregators = tuple(dict.fromkeys(url.rstrip("/") for url in aggregators))
        self.book = AggregatorBook(self.aggregators)
        """The aggregators in reading order, and what they did (`book.on_event` reports it)."""
        self.pacing = read_pacing or ReadPacing()
        self.publisher = publisher.rstrip("/") if publisher else None
        self.max_body = max_body
        self.max_quilt_body = max_quilt_body
        self.retry = retry or RetryPolicy()
        self._tokens = tokens
        self._http = httpx.Client(
            transport=transport or BulkTransport(),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={"User-Agent": f"okai/{__version__}"},
        )
        self._blob_ids = BlobIdChecks(compute_blob_ids_up_to, blob_ids)
        recent = RecentStores(self.retry.recent_store_window)
        self._publisher = Publisher(
            self.publisher,
            self._http,
            tokens,
            self.retry,
            self._blob_ids,
            recent,
            max_body=max_body,
            max_quilt_body=max_quilt_body,
            hint=unreachable_hint,
            sleep=sleep,
        )
        self._reads = AggregatorReads(
            self._http,
            self.book,
            self.pacing,
            self.retry,
            self._blob_ids,
            recent,
            hint=unreachable_hint,
            sleep=sleep,
        )

    @property
    def compute_blob_ids_up_to(self) -> int:
        return self._blob_ids.up_to

    @property
    def unreachable_hint(self) -> str | None:
        """Added to connection failures (the local stack's says to start it)."""
        return self._reads.hint

    @unreachable_hint.setter
    def unreachable_hint(self, hint: str | None) -> None:
        self._reads.hint = self._publisher.hint = hint

    @classmethod
    def from_network(cls, network: Network, secrets: Secrets, **options: Any) -> WalrusClient:
        """The client for a configured network; `options` override constructor defaults.

        `OKAI_WALRUS_CHECK_BLOB_IDS_UP_TO` (bytes; 0 turns it off) sets
        `compute_blob_ids_up_to` when `options` does not; the `OKAI_WALRUS_*`
        variables of `ReadPacing.from_env` set `read_pacing`.
        """
        options.setdefault("max_body", network.walrus_max_body)
        # A publisher whose blob limit was raised (OKAI_WALRUS_MAX_BODY) takes quilts as large.
        options.setdefault("max_quilt_body", max(DEFAULT_MAX_QUILT_BODY, network.walrus_max_body))
        if "compute_blob_ids_up_to" not in options and (raw := os.environ.get(BLOB_ID_CHECK_ENV)):
            try:
                options["compute_blob_ids_up_to"] = int(raw)
            except ValueError:
                raise ConfigError(f"{BLOB_ID_CHECK_ENV}={raw!r} is not a number of bytes") from None
        options.setdefault("tokens", PublisherTokens.from_secrets(secrets))
        if "read_pacing" not in options:
            options["read_pacing"] = ReadPacing.from_env()
        if network.is_dev:
            options.setdefault("unreachable_hint", "start the local stack with `okai dev up`")
        return cls(network.walrus_aggregators, network.walrus_publisher, **options)

    def __repr__(self) -> str:
        return f"WalrusClient(aggregators={self.aggregators!r}, publisher={self.publisher!r})"

    # ------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Close connections and helper processes; safe to call twice."""
        self._http.close()
        self._reads.close()
        self._blob_ids.close()

    def __enter__(self) -> WalrusClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------ URLs

    def blob_url(self, blob_id: str) -> str:
        """The public read URL of a blob on the first aggregator."""
        return f"{self._reads.first()}/v1/blobs/{checked_blob_id(blob_id)}"

    # ------------------------------------------------------------ store

    def store_file(
        self,
        path: Path,
        *,
        epochs: int = 1,
        permanent: bool = False,
        offset: int = 0,
        length: int | None = None,
        send_object_to: str | None = None,
        share: bool = False,
        force: bool = False,
        on_progress: ProgressFn | None = None,
    ) -> StoreResult:
        """Store a file (or the bytes [offset, offset+length) of it), streaming from disk."""
        path = Path(path)
        if not path.is_file():
            raise WalrusRequestError(f"{path} is not a file")
        try:
            total = path.stat().st_size
        except OSError as exc:
            raise WalrusRequestError(f"cannot read {path}: {exc.strerror or exc}") from exc
        size = total - offset if length is None else length
        if offset < 0 or size < 0 or offset + size > total:
            raise WalrusRequestError(f"{path}: bytes {offset}..{offset + size} are not in the file")

        def body() -> Iterator[bytes]:
            try:
                with open(path, "rb") as stream:
                    stream.seek(offset)
                    yield from file_chunks(stream, size, path)
            except OSError as exc:  # a local failure: not to be retried as a network one
                raise WalrusRequestError(f"cannot read {path}: {exc.strerror or exc}") from exc

        def blob_id(computer: BlobIdComputer) -> str:
            return computer.of_file(path, offset, size)

        params = Publisher.params(epochs, permanent, send_object_to, share, force)
        return self._publisher.store(body, size, blob_id, f"{path}", params, on_progress)

    def store_bytes(
        self,
        data: bytes,
        *,
        epochs: int = 1,
        permanent: bool = False,
        send_object_to: str | None = None,
        share: bool = False,
        force: bool = False,
        on_progress: ProgressFn | None = None,
    ) -> StoreResult:
        """Store bytes held in memory."""

        def body() -> Iterator[bytes]:
            view = memoryview(data)
            for start in range(0, len(data), CHUNK):
                yield bytes(view[start : start + CHUNK])

        def blob_id(computer: BlobIdComputer) -> str:
            return computer.of_bytes(data)

        params = Publisher.params(epochs, permanent, send_object_to, share, force)
        return self._publisher.store(
            body, len(data), blob_id, f"{len(data)} bytes", params, on_progress
        )

    # ------------------------------------------------------------ read

    def read_to_file(
        self,
        blob_id: str,
        expected: Digest | None,
        dest: Path,
        *,
        expected_size: int | None = None,
        max_bytes: int | None = None,
        verify_blob_id: bool | None = None,
        durable: bool = False,
        on_progress: ProgressFn | None = None,
    ) -> Digest:
        """Download a blob to `dest`, verified and atomic; returns its SHA-256.

        With `expected`, the bytes must hash to it. Without it, the blob ID is
        recomputed from the bytes (needs Node; bounded by
        `compute_blob_ids_up_to`). A failed check leaves nothing at `dest`.
        An answer longer than `max_bytes` is abandoned as soon as it says so
        or sends that much (`ReadLimitExceeded` when no aggregator stays under).
        `durable` forces the bytes to disk before the rename (slower).
        """
        blob_id = checked_blob_id(blob_id)
        check = self._read_check(blob_id, expected, expected_size, verify_blob_id)
        with VerifiedFile(Path(dest), expected, f"blob {blob_id}", durable=durable) as sink:
            self._reads.read(
                f"/v1/blobs/{blob_id}",
                sink,
                check,
                expected_size,
                on_progress,
                blob_id=blob_id,
                max_bytes=max_bytes,
                file_sink=sink,
            )
            return sink.commit(sink.digest())

    def read_bytes(
        self,
        blob_id: str,
        expected: Digest | None,
        *,
        max_bytes: int = DEFAULT_READ_BYTES_LIMIT,
        verify_blob_id: bool | None = None,
        accept: Acceptor | None = None,
    ) -> bytes:
        """Read a blob into memory (at most `max_bytes`), verified like `read_to_file`.

        `accept` checks the bytes further (say, a JSON document's canonical
        digest): an answer it refuses makes way for the next aggregator, and
        when every one is refused, `AnswerRefused` carries the last answer.
        """
        blob_id = checked_blob_id(blob_id)
        check = self._read_check(blob_id, expected, None, verify_blob_id, accept)
        sink = BytesSink()
        self._reads.read(
            f"/v1/blobs/{blob_id}", sink, check, None, None, blob_id=blob_id, max_bytes=max_bytes
        )
        return bytes(sink.buffer)

    def read_range(
        self,
        blob_id: str,
        start: int,
        length: int,
        *,
        expected: Digest | None = None,
        use_range_header: bool = False,
    ) -> bytes:
        """Read bytes [start, start+length) of a blob.

        Walrus checks only the slivers it fetched, and okai cannot check a
        slice against the blob's digest: pass `expected` (the slice's own
        SHA-256) when you have it, else treat the bytes as unverified.
        """
        blob_id = checked_blob_id(blob_id)
        if start < 0 or length <= 0:
            raise WalrusRequestError(f"invalid byte range: start={start}, length={length}")
        check = Check(expected, None, f"bytes {start}+{length} of blob {blob_id}")
        sink = BytesSink()
        if use_range_header:
            headers = {"Range": f"bytes={start}-{start + length - 1}"}
            self._reads.read(
                f"/v1/blobs/{blob_id}",
                sink,
                check,
                length,
                None,
                blob_id=blob_id,
                headers=headers,
                ok_status=206,
            )
        else:
            self._reads.read(
                f"/v1/blobs/{blob_id}/byte-range?start={start}&length={length}",
                sink,
                check,
                length,
                None,
                blob_id=blob_id,
            )
        return bytes(sink.buffer)

    def _read_check(
        self,
        blob_id: str,
        expected: Digest | None,
        size: int | None,
        verify: bool | None,
        accept: Acceptor | None = None,
    ) -> Check:
        if expected is not None:
            expected = Digest.parse(expected)
        wants_id = expected is None if verify is None else verify
        if wants_id:
            if size is not None and not self._blob_ids.allows(size):
                raise WalrusRequestError(
                    f"blob {blob_id} is {size} bytes, above the {self.compute_blob_ids_up_to}-byte "
                    "limit for recomputing blob IDs",
                    hint="give the expected SHA-256, or raise compute_blob_ids_up_to",
                )
            self._blob_ids.computer(required=True)
        return Check(expected, blob_id if wants_id else None, f"blob {blob_id}", accept)
