"""The Walrus HTTP client: store on a publisher, read from aggregators, verify everything.

Bytes stream both ways in 1 MiB pieces, so memory stays flat whatever the
blob size. Every read is hashed as it arrives and kept only if its SHA-256
matches the digest the caller trusts (or, when the caller has no digest, if
the Walrus blob ID recomputed from the bytes matches the one asked for).

Reads fail over between aggregators on any answer that fails its check, is
cut short or has the wrong size, race a slow aggregator against the next
(`okai.walrus.pacing`), demote the ones that misbehave for the rest of the
client's life and report it all (`okai.walrus.aggregators`); transient
failures are retried with capped backoff. Stores retry transient failures on
the one publisher. See `okai.walrus.retry` for what counts as transient,
`okai.walrus.errors` for what is raised.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol
from urllib.parse import quote

import httpx

from okai import __version__
from okai.config import WALRUS_PUBLIC_BODY_LIMIT, Network, Secrets
from okai.digest import Digest
from okai.errors import ConfigError, IntegrityError, OkaiError
from okai.manifest import BLOB_ID_PATTERN
from okai.nodejs import ToolMissingError
from okai.walrus.aggregators import AggregatorBook, ReadEvent
from okai.walrus.blob_ids import BlobIdComputer, blob_ids_available
from okai.walrus.errors import (
    AnswerRefused,
    BlobBlocked,
    BlobIdMismatch,
    BlobNotFound,
    BlobTooLarge,
    PublisherAuthError,
    ReadLimitExceeded,
    WalrusError,
    WalrusProtocolError,
    WalrusRequestError,
    WalrusShortBody,
    WalrusStalled,
    WalrusStatusError,
    WalrusTimeout,
    WalrusUnavailable,
    WalrusUnreachable,
)
from okai.walrus.integrity import VerifiedFile
from okai.walrus.pacing import ReadPacing, Throughput, race
from okai.walrus.results import (
    QuiltPatchItem,
    QuiltStoreResult,
    StoreResult,
    error_envelope,
    outcome_blob_id,
    outcome_end_epoch,
    parse_quilt_store_result,
    parse_store_outcome,
)
from okai.walrus.retry import NEEDS_NEW_TOKEN, RetryPolicy, Verdict, classify_status
from okai.walrus.tokens import MORE_TOKENS_HINT, PublisherTokens
from okai.walrus.transport import CANCEL_EXTENSION, BulkTransport, Cancel

MiB = 1 << 20
CHUNK = MiB
MAX_EPOCHS = 53
DEFAULT_TIMEOUT = 60.0
DEFAULT_BLOB_ID_CHECK_UP_TO = 64 * MiB
DEFAULT_MAX_QUILT_BODY = 100 * MiB
DEFAULT_READ_BYTES_LIMIT = 64 * MiB
READ_AHEAD_ABOVE = 4 * MiB
"""Bodies larger than this move through a helper thread, so hashing overlaps the network."""
BLOB_ID_CHECK_ENV = "OKAI_WALRUS_CHECK_BLOB_IDS_UP_TO"
_ERROR_BODY_LIMIT = 64 * 1024
_SUI_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{64}$")
_PATCH_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")

ProgressFn = Callable[[int], None]
"""Called with the number of bytes just moved; used by progress bars."""
Acceptor = Callable[[bytes], "str | None"]
"""Why the bytes of an answer are refused (None: accepted); a refused answer falls over."""


@contextmanager
def _as_walrus_errors(
    url: str, hint: str | None = None, *, reading: bool = False
) -> Iterator[None]:
    """The one place where httpx exceptions become okai ones.

    `hint` (how to start the local stack) goes only with connections refused:
    an endpoint that answered and then hung up or went quiet is up.
    """
    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        raise WalrusUnreachable(f"cannot reach {url}: {exc}", hint=hint) from exc
    except httpx.TimeoutException as exc:
        if reading:
            raise WalrusStalled(f"{url} stalled: nothing received in time ({exc})") from exc
        raise WalrusTimeout(f"{url} did not answer in time") from exc
    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
        if reading:
            raise WalrusShortBody(f"short body from {url}: {exc}") from exc
        # A publisher that hung up mid-store (restarted, killed) is retried like a reset
        # connection, without the hint: it was up.
        raise WalrusUnreachable(f"{url} hung up before answering: {exc}") from exc
    except httpx.TransportError as exc:
        raise WalrusUnreachable(f"cannot reach {url}: {exc}", hint=hint) from exc


class _Sink(Protocol):
    size: int

    def write(self, chunk: bytes) -> None: ...

    def restart(self) -> None: ...

    def digest(self) -> Digest: ...


class _BytesSink:
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


class _HashSink:
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


class _ReportingReader(io.BufferedReader):
    """A file read by httpx's multipart encoder, reporting each piece it reads."""

    def __init__(self, raw: io.FileIO | io.BytesIO, report: ProgressFn) -> None:
        super().__init__(raw)
        self._report = report

    def read(self, size: int | None = -1, /) -> bytes:
        chunk = super().read(size)
        self._report(len(chunk))
        return chunk


class _SkipEndpoint(Exception):
    """This aggregator cannot serve the read; try the next (carries the okai error)."""

    def __init__(self, error: OkaiError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True)
class _Check:
    """How a read is verified: against a trusted SHA-256, a recomputed blob ID, or both,
    and then by the caller's `accept` (reads into memory only)."""

    sha256: Digest | None
    blob_id: str | None
    what: str
    accept: Acceptor | None = None


class _HighWater:
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


class WalrusClient:
    """A client for one publisher and several aggregators; a context manager.

    `compute_blob_ids_up_to` bounds the size of blobs whose real Walrus blob
    ID is recomputed locally (it needs the whole blob in memory and about a
    second of CPU each): on store always, on read only when asked or when
    the caller has no SHA-256. Set it to 0 to turn the recomputation off
    (against a server using stand-in IDs, say).
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
    ) -> None:
        self.aggregators = tuple(dict.fromkeys(url.rstrip("/") for url in aggregators))
        self.book = AggregatorBook(self.aggregators)
        """The aggregators in reading order, and what they did (`book.on_event` reports it)."""
        self.pacing = read_pacing or ReadPacing()
        # Per socket read: the first-byte timeout is also how long a body may stay silent.
        self._read_timeout = httpx.Timeout(
            self.pacing.first_byte, connect=min(self.pacing.first_byte, 10.0)
        )
        self.publisher = publisher.rstrip("/") if publisher else None
        self.max_body = max_body
        self.max_quilt_body = max_quilt_body
        self.compute_blob_ids_up_to = compute_blob_ids_up_to
        self.retry = retry or RetryPolicy()
        self.unreachable_hint: str | None = None
        """Added to connection failures (the local stack's says to start it)."""
        self._tokens = tokens
        self._http = httpx.Client(
            transport=transport or BulkTransport(),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={"User-Agent": f"okai/{__version__}"},
        )
        self._blob_ids = blob_ids
        self._owns_blob_ids = blob_ids is None
        self._blob_ids_ok: bool | None = None if blob_ids is None else True
        self._background: ThreadPoolExecutor | None = None
        self._reads: ThreadPoolExecutor | None = None
        self._recent: dict[str, float] = {}
        self._lock = threading.Lock()

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
        client = cls(network.walrus_aggregators, network.walrus_publisher, **options)
        if network.is_dev:
            client.unreachable_hint = "start the local stack with `okai dev up`"
        return client

    def __repr__(self) -> str:
        return f"WalrusClient(aggregators={self.aggregators!r}, publisher={self.publisher!r})"

    # ------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Close connections and helper processes; safe to call twice."""
        self._http.close()
        if self._background is not None:
            self._background.shutdown(wait=True)
            self._background = None
        if self._reads is not None:
            self._reads.shutdown(wait=False, cancel_futures=True)  # losers end on their own
            self._reads = None
        if self._owns_blob_ids and self._blob_ids is not None:
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
        return f"{self._first_aggregator()}/v1/blobs/{_checked_blob_id(blob_id)}"

    def _first_aggregator(self) -> str:
        if not self.aggregators:
            raise ConfigError(
                "no Walrus aggregator is configured",
                hint="set OKAI_WALRUS_AGGREGATORS, or start the local stack with `okai dev up`",
            )
        return self.aggregators[0]

    # ------------------------------------------------------------ blob IDs

    def _blob_id_computer(self, required: bool) -> BlobIdComputer | None:
        """The blob-ID computer, or None when Node is missing and the check is optional."""
        with self._lock:
            if self._blob_ids_ok is None:
                self._blob_ids_ok = blob_ids_available()
            if self._blob_ids_ok and self._blob_ids is None:
                self._blob_ids = BlobIdComputer()
            computer = self._blob_ids if self._blob_ids_ok else None
        if computer is None and required:
            raise ToolMissingError(
                "checking a Walrus blob ID needs Node.js and @mysten/walrus-wasm",
                hint="run `make setup`, or give the expected SHA-256 of the data",
            )
        return computer

    def _may_compute_blob_id(self, size: int) -> bool:
        return self.compute_blob_ids_up_to > 0 and size <= self.compute_blob_ids_up_to

    def _in_background(self, job: Callable[[], str]) -> Future[str]:
        with self._lock:
            if self._background is None:
                self._background = ThreadPoolExecutor(4, thread_name_prefix="okai-blob-id")
            return self._background.submit(job)

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
                    yield from _file_chunks(stream, size, path)
            except OSError as exc:  # a local failure: not to be retried as a network one
                raise WalrusRequestError(f"cannot read {path}: {exc.strerror or exc}") from exc

        def blob_id(computer: BlobIdComputer) -> str:
            return computer.of_file(path, offset, size)

        return self._store(
            body,
            size,
            blob_id,
            f"{path}",
            epochs,
            permanent,
            send_object_to,
            share,
            force,
            on_progress,
        )

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

        return self._store(
            body,
            len(data),
            blob_id,
            f"{len(data)} bytes",
            epochs,
            permanent,
            send_object_to,
            share,
            force,
            on_progress,
        )

    def _store_params(
        self, epochs: int, permanent: bool, send_object_to: str | None, share: bool, force: bool
    ) -> dict[str, str]:
        if isinstance(epochs, bool) or not 1 <= epochs <= MAX_EPOCHS:
            raise WalrusRequestError(
                f"epochs must be between 1 and {MAX_EPOCHS}, got {epochs}",
                hint="Walrus stores blobs for at most 53 epochs ahead (about two years on Mainnet)",
            )
        if send_object_to is not None and share:
            raise WalrusRequestError("send_object_to and share exclude each other")
        if send_object_to is not None and not _SUI_ADDRESS.match(send_object_to):
            raise WalrusRequestError(f"not a Sui address (0x + 64 hex): {send_object_to[:80]!r}")
        params = {"epochs": str(epochs)}
        if permanent:
            params["permanent"] = "true"
        if force:
            params["force"] = "true"
        if share:
            params["share"] = "true"
        if send_object_to is not None:
            params["send_object_to"] = send_object_to
        return params

    def _publisher(self) -> str:
        if self.publisher is None:
            raise ConfigError(
                "no Walrus publisher is configured for this network",
                hint="set OKAI_WALRUS_PUBLISHER (Mainnet needs an authenticated publisher and "
                "OKAI_WALRUS_JWT), or use the local stack",
            )
        return self.publisher

    def _store(
        self,
        body: Callable[[], Iterator[bytes]],
        size: int,
        blob_id_job: Callable[[BlobIdComputer], str],
        what: str,
        epochs: int,
        permanent: bool,
        send_object_to: str | None,
        share: bool,
        force: bool,
        on_progress: ProgressFn | None,
    ) -> StoreResult:
        params = self._store_params(epochs, permanent, send_object_to, share, force)
        if self.max_body and size > self.max_body:
            raise WalrusRequestError(
                f"{what} is {size} bytes; this publisher accepts at most {self.max_body}",
                hint="`okai data push` splits files into shards that fit",
            )
        url = f"{self._publisher()}/v1/blobs"
        expected_id: Future[str] | None = None
        if self._may_compute_blob_id(size):
            computer = self._blob_id_computer(required=False)
            if computer is not None:
                expected_id = self._in_background(lambda: blob_id_job(computer))
        progress = _HighWater(on_progress)
        sha256, answer = self._with_retries(
            lambda: self._put_once(url, params, body, size, progress), what=f"storing {what}"
        )
        outcome = parse_store_outcome(answer, f"PUT {url}")
        stored_id = outcome_blob_id(outcome)
        verified = False
        if expected_id is not None:
            computed = expected_id.result()
            if computed != stored_id:
                mismatch = BlobIdMismatch(
                    f"the Walrus blob ID the publisher returned for {what}", computed, stored_id
                )
                mismatch.hint = (
                    f"a local server run with --fake-blob-ids answers stand-in IDs; against it, "
                    f"set {BLOB_ID_CHECK_ENV}=0"
                )
                raise mismatch
            verified = True
        self._remember_store(stored_id)
        return StoreResult(
            blob_id=stored_id,
            end_epoch=outcome_end_epoch(outcome),
            outcome=outcome,
            sha256=sha256,
            size=size,
            blob_id_verified=verified,
        )

    def _put_once(
        self,
        url: str,
        params: Mapping[str, str],
        body: Callable[[], Iterator[bytes]],
        size: int,
        progress: _HighWater,
    ) -> tuple[Digest, Any]:
        hasher_box: list[Any] = []

        def hashed() -> Iterator[bytes]:
            hasher = hashlib.sha256()
            hasher_box.append(hasher)

            def read_and_hash() -> Iterator[bytes]:
                for chunk in body():
                    hasher.update(chunk)
                    yield chunk

            # Large bodies are read and hashed by a helper thread while this one sends.
            chunks = read_and_hash() if size <= READ_AHEAD_ABOVE else _read_ahead(read_and_hash())
            sent = 0
            progress.restart()
            for chunk in chunks:
                sent += len(chunk)
                yield chunk
                progress(len(chunk))
            if sent != size:
                raise WalrusRequestError(
                    f"the data changed while it was sent ({sent} of {size} bytes)"
                )

        headers = {"Content-Length": str(size), "Content-Type": "application/octet-stream"}
        headers.update(self._authorization())
        request = self._http.build_request(
            "PUT", url, params=params, content=hashed(), headers=headers
        )
        answer = self._json_answer(request)
        return Digest("sha256:" + hasher_box[-1].hexdigest()), answer

    def store_quilt(
        self,
        files: Mapping[str, Path | bytes],
        *,
        tags: Mapping[str, Mapping[str, str]] | None = None,
        epochs: int = 1,
        permanent: bool = False,
        force: bool = False,
        on_progress: ProgressFn | None = None,
    ) -> QuiltStoreResult:
        """Store files as one quilt; keys are the files' identifiers.

        Files given as paths stream from disk; `on_progress` counts the bytes
        of the files (given as paths or bytes) as they are sent.
        """
        params = self._store_params(epochs, permanent, None, False, force)
        _check_quilt_identifiers(files, tags or {})
        sizes = {
            name: len(v) if isinstance(v, bytes) else Path(v).stat().st_size
            for name, v in files.items()
        }
        if sum(sizes.values()) > self.max_quilt_body:
            raise WalrusRequestError(
                f"the quilt holds {sum(sizes.values())} bytes; publishers accept at most "
                f"{self.max_quilt_body} per quilt",
                hint="split the files over several quilts",
            )
        url = f"{self._publisher()}/v1/quilts"
        metadata = [
            {"identifier": name, "tags": dict(tags[name])}
            for name in files
            if tags and name in tags
        ]

        progress = _HighWater(on_progress)

        def once() -> tuple[None, Any]:
            opened: list[IO[bytes]] = []
            progress.restart()
            try:
                parts: list[tuple[str, tuple[str, IO[bytes] | bytes, str]]] = []
                for name, value in files.items():
                    content: IO[bytes] | bytes
                    if on_progress is not None:
                        raw = io.BytesIO(value) if isinstance(value, bytes) else io.FileIO(value)
                        content = _ReportingReader(raw, progress)
                        opened.append(content)
                    elif isinstance(value, bytes):
                        content = value
                    else:
                        content = open(value, "rb")  # noqa: SIM115 - closed below
                        opened.append(content)
                    parts.append((name, (name, content, "application/octet-stream")))
                data = {"_metadata": json.dumps(metadata)} if metadata else None
                headers = self._authorization()
                request = self._http.build_request(
                    "PUT", url, params=params, files=parts, data=data, headers=headers
                )
                return None, self._json_answer(request)
            finally:
                for stream in opened:
                    stream.close()

        _, answer = self._with_retries(once, what=f"storing a quilt of {len(files)} files")
        result = parse_quilt_store_result(answer, f"PUT {url}")
        self._remember_store(result.quilt_id)
        return result

    def _json_answer(self, request: httpx.Request) -> Any:
        """Send a request; the JSON of a 200 answer, an okai error for anything else."""
        url = str(request.url.copy_with(query=None))
        with _as_walrus_errors(url, self.unreachable_hint):
            response = self._http.send(request, stream=True)
            try:
                limit = _ERROR_BODY_LIMIT if response.status_code != 200 else 64 * MiB
                raw = _read_limited(response, limit)
            finally:
                response.close()
        if response.status_code != 200:
            raise self._status_error(response.status_code, raw, url)
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise WalrusProtocolError(f"{url} answered 200 with a body that is not JSON") from exc

    @staticmethod
    def _status_error(status: int, raw: bytes, url: str) -> WalrusStatusError:
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

    # ------------------------------------------------------------ retries

    def _authorization(self) -> dict[str, str]:
        """The header of one publisher request: a token of its own (each is single-use)."""
        return {"Authorization": f"Bearer {self._tokens.take()}"} if self._tokens else {}

    def _with_unused_token(self, attempt: Callable[[], Any]) -> Any:
        """Run `attempt`; while a listed token turns out used (by another process that was
        given the same list, such as a cluster node), try the next one."""
        while True:
            try:
                return attempt()
            except PublisherAuthError as exc:
                if exc.reason != "TOKEN_ALREADY_USED" or not (self._tokens and self._tokens.listed):
                    raise

    def _with_retries(self, attempt: Callable[[], Any], *, what: str) -> Any:
        """Run one publisher request, retrying transient failures with capped backoff."""
        last: WalrusError | None = None
        for round_index in range(self.retry.rounds):
            try:
                return self._with_unused_token(attempt)
            except (WalrusUnreachable, WalrusTimeout) as exc:
                last = exc
            except WalrusStatusError as exc:
                if classify_status(exc.status, exc.reason) is not Verdict.RETRY:
                    raise
                last = exc
            if round_index + 1 < self.retry.rounds:
                time.sleep(self.retry.wait(round_index))
        assert last is not None
        raise type(last)(
            f"{what} failed after {self.retry.rounds} attempts: {last.message}",
            **_status_fields(last),
        ) from last

    def _remember_store(self, blob_id: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._recent[blob_id] = now
            horizon = now - self.retry.recent_store_window
            for known in [k for k, t in self._recent.items() if t < horizon]:
                del self._recent[known]

    def _recently_stored(self, blob_id: str | None) -> bool:
        if blob_id is None:
            return False
        with self._lock:
            stored = self._recent.get(blob_id)
        return stored is not None and time.monotonic() - stored < self.retry.recent_store_window

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
        blob_id = _checked_blob_id(blob_id)
        check = self._read_check(blob_id, expected, expected_size, verify_blob_id)
        with VerifiedFile(Path(dest), expected, f"blob {blob_id}", durable=durable) as sink:
            self._read(
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
        blob_id = _checked_blob_id(blob_id)
        check = self._read_check(blob_id, expected, None, verify_blob_id, accept)
        sink = _BytesSink()
        self._read(
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
        blob_id = _checked_blob_id(blob_id)
        if start < 0 or length <= 0:
            raise WalrusRequestError(f"invalid byte range: start={start}, length={length}")
        check = _Check(expected, None, f"bytes {start}+{length} of blob {blob_id}")
        sink = _BytesSink()
        if use_range_header:
            headers = {"Range": f"bytes={start}-{start + length - 1}"}
            self._read(
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
            self._read(
                f"/v1/blobs/{blob_id}/byte-range?start={start}&length={length}",
                sink,
                check,
                length,
                None,
                blob_id=blob_id,
            )
        return bytes(sink.buffer)

    def read_quilt_patch(
        self,
        quilt_patch_id: str,
        expected: Digest | None,
        *,
        max_bytes: int = DEFAULT_READ_BYTES_LIMIT,
        allow_unverified: bool = False,
    ) -> bytes:
        """Read one file of a quilt by its patch ID, verified against `expected`.

        A patch is not a blob, so its bytes cannot be checked by blob ID:
        without `expected`, the read is refused unless `allow_unverified`.
        """
        patch = _checked_patch_id(quilt_patch_id)
        check = self._patch_check(expected, f"quilt patch {patch}", allow_unverified)
        sink = _BytesSink()
        route = f"/v1/blobs/by-quilt-patch-id/{patch}"
        self._read(route, sink, check, None, None, blob_id=None, max_bytes=max_bytes)
        return bytes(sink.buffer)

    def read_quilt_patch_to_file(
        self,
        quilt_patch_id: str,
        expected: Digest | None,
        dest: Path,
        *,
        max_bytes: int | None = None,
        allow_unverified: bool = False,
        on_progress: ProgressFn | None = None,
    ) -> Digest:
        """Download one file of a quilt to `dest`, verified and atomic; returns its SHA-256."""
        patch = _checked_patch_id(quilt_patch_id)
        check = self._patch_check(expected, f"quilt patch {patch}", allow_unverified)
        with VerifiedFile(Path(dest), expected, check.what) as sink:
            self._read(
                f"/v1/blobs/by-quilt-patch-id/{patch}",
                sink,
                check,
                None,
                on_progress,
                blob_id=None,
                max_bytes=max_bytes,
                file_sink=sink,
            )
            return sink.commit(sink.digest())

    def read_quilt_file(
        self,
        quilt_id: str,
        identifier: str,
        expected: Digest | None,
        *,
        max_bytes: int = DEFAULT_READ_BYTES_LIMIT,
        allow_unverified: bool = False,
    ) -> bytes:
        """Read one file of a quilt by the quilt's ID and the file's identifier."""
        quilt_id = _checked_blob_id(quilt_id)
        check = self._patch_check(expected, f"{identifier!r} of quilt {quilt_id}", allow_unverified)
        sink = _BytesSink()
        route = f"/v1/blobs/by-quilt-id/{quilt_id}/{quote(identifier, safe='')}"
        self._read(route, sink, check, None, None, blob_id=None, max_bytes=max_bytes)
        return bytes(sink.buffer)

    def check_quilt_file(
        self,
        quilt_id: str,
        identifier: str,
        expected: Digest,
        *,
        expected_size: int | None = None,
        max_bytes: int | None = None,
        on_progress: ProgressFn | None = None,
    ) -> str:
        """Stream one file of a quilt by quilt ID and identifier, hashing it and keeping nothing.

        Returns the aggregator whose answer hashed to `expected` (its URL for
        the file is `<aggregator>/v1/blobs/by-quilt-id/<quiltId>/<identifier>`);
        raises `IntegrityError` when none served those bytes. Memory stays flat
        whatever the size, so it checks files of gigabytes.
        """
        quilt_id = _checked_blob_id(quilt_id)
        check = self._patch_check(expected, f"{identifier!r} of quilt {quilt_id}", False)
        route = f"/v1/blobs/by-quilt-id/{quilt_id}/{quote(identifier, safe='')}"
        return self._read(
            route,
            _HashSink(),
            check,
            expected_size,
            on_progress,
            blob_id=quilt_id,
            max_bytes=max_bytes,
        )

    def list_quilt_patches(self, quilt_id: str) -> list[QuiltPatchItem]:
        """The files of a quilt: identifier, patch ID and tags of each."""
        quilt_id = _checked_blob_id(quilt_id)
        sink = _BytesSink()
        self._read(
            f"/v1/quilts/{quilt_id}/patches",
            sink,
            _Check(None, None, f"the patch list of quilt {quilt_id}"),
            None,
            None,
            blob_id=quilt_id,
            max_bytes=16 * MiB,
        )
        try:
            items = json.loads(bytes(sink.buffer))
            return [QuiltPatchItem.model_validate(item) for item in items]
        except (ValueError, TypeError) as exc:
            raise WalrusProtocolError(f"the patch list of quilt {quilt_id} is malformed") from exc

    def _read_check(
        self,
        blob_id: str,
        expected: Digest | None,
        size: int | None,
        verify: bool | None,
        accept: Acceptor | None = None,
    ) -> _Check:
        if expected is not None:
            expected = Digest.parse(expected)
        wants_id = expected is None if verify is None else verify
        if wants_id:
            if size is not None and not self._may_compute_blob_id(size):
                raise WalrusRequestError(
                    f"blob {blob_id} is {size} bytes, above the {self.compute_blob_ids_up_to}-byte "
                    "limit for recomputing blob IDs",
                    hint="give the expected SHA-256, or raise compute_blob_ids_up_to",
                )
            self._blob_id_computer(required=True)
        return _Check(expected, blob_id if wants_id else None, f"blob {blob_id}", accept)

    @staticmethod
    def _patch_check(expected: Digest | None, what: str, allow_unverified: bool) -> _Check:
        if expected is None and not allow_unverified:
            raise WalrusRequestError(
                f"reading {what} needs its expected SHA-256",
                hint="a quilt patch cannot be checked by blob ID; pass the digest you trust",
            )
        return _Check(Digest.parse(expected) if expected else None, None, what)

    def _read(
        self,
        route: str,
        sink: _Sink,
        check: _Check,
        expected_size: int | None,
        on_progress: ProgressFn | None,
        *,
        blob_id: str | None,
        max_bytes: int | None = None,
        file_sink: VerifiedFile | None = None,
        headers: Mapping[str, str] | None = None,
        ok_status: int = 200,
    ) -> str:
        """Fetch `route` from the aggregators into `sink` until one answer passes `check`.

        Aggregators are asked in the book's order, hedged (okai.walrus.pacing);
        an answer that fails its check, is cut short or has the wrong size makes
        way for the next. Returns the aggregator whose answer passed.
        """
        self._first_aggregator()
        progress = _HighWater(on_progress)
        read = _ReadState(check.what)
        recently_stored = self._recently_stored(blob_id)
        first_choice = self.book.order()[0]

        def open_one(base: str, cancel: Cancel) -> _Opened:
            return self._open(
                base, route, expected_size, max_bytes, headers, ok_status, cancel, recently_stored
            )

        def fatal(error: BaseException) -> bool:
            return not _is_endpoint_failure(error, recently_stored)

        for round_index in range(self.retry.rounds):
            tried: set[str] = set()
            while candidates := [
                b for b in self.book.order() if b not in read.skipped and b not in tried
            ]:
                outcome = race(
                    candidates,
                    open_one,
                    pacing=self.pacing,
                    pool=self._read_pool(),
                    discard=lambda opened: opened.close(),
                    fatal=fatal,
                )
                for base in outcome.hedged:
                    self.book.record(
                        ReadEvent(
                            "hedge",
                            base,
                            check.what,
                            f"no first byte from the aggregators before it after "
                            f"{self.pacing.hedge_after:g} s",
                        )
                    )
                for base, error in outcome.failures.items():
                    tried.add(base)
                    self._failed(read, base, error, recently_stored)
                if outcome.winner is None:
                    break
                for base in outcome.slower:
                    self.book.demote(
                        base,
                        f"slow: no first byte after {self.pacing.hedge_after:g} s, "
                        f"{outcome.winner} answered first",
                        check.what,
                    )
                winner, opened = outcome.winner, outcome.value
                assert opened is not None
                tried.add(winner)
                sink.restart()
                progress.restart()
                try:
                    self._stream(opened, sink, expected_size, max_bytes, progress)
                    self._verify(sink, check, file_sink, winner)
                except (OkaiError, _SkipEndpoint) as error:
                    if fatal(error):
                        raise
                    self._failed(read, winner, error, recently_stored)
                    continue
                if read.outcomes or winner != first_choice:
                    tried_before = ", ".join(read.outcomes) or first_choice
                    self.book.record(
                        ReadEvent("fallback", winner, check.what, f"after {tried_before}")
                    )
                return winner
            if len(read.skipped) == len(self.aggregators):
                break
            if round_index + 1 < self.retry.rounds:
                time.sleep(self.retry.wait(round_index))
        raise _read_failure(read, self.retry.rounds)

    def _failed(self, read: _ReadState, base: str, error: BaseException, recent: bool) -> None:
        """Note what `base` did wrong: report it, demote it if it misbehaved, skip or retry."""
        okai_error = error.error if isinstance(error, _SkipEndpoint) else error
        assert isinstance(okai_error, OkaiError)
        read.outcomes[base] = okai_error
        self.book.record(ReadEvent("failure", base, read.what, _describe(okai_error)))
        if isinstance(okai_error, _MISBEHAVIOUR):
            self.book.demote(base, _describe(okai_error), read.what)
        # Not asked again in this read: wrong answers, stalls, and 404s or refusals.
        if isinstance(error, _SkipEndpoint | IntegrityError | WalrusStalled) or (
            isinstance(error, WalrusStatusError)
            and classify_status(error.status, error.reason, recently_stored=recent)
            is Verdict.NEXT_ENDPOINT
        ):
            read.skipped.add(base)

    def _read_pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._reads is None:
                self._reads = ThreadPoolExecutor(32, thread_name_prefix="okai-walrus-read")
            return self._reads

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
    ) -> _Opened:
        """Ask `base` for `route` and wait for the status, the headers and the first bytes."""
        url = base + route
        request = self._http.build_request(
            "GET",
            url,
            headers=headers,
            timeout=self._read_timeout,
            extensions={CANCEL_EXTENSION: cancel},
        )
        with _as_walrus_errors(url, self.unreachable_hint, reading=True):
            response = self._http.send(request, stream=True)
            try:
                if response.status_code != ok_status:
                    raw = _read_limited(response, _ERROR_BODY_LIMIT)
                    error = self._status_error(response.status_code, raw, url)
                    verdict = classify_status(
                        error.status, error.reason, recently_stored=recently_stored
                    )
                    if verdict is Verdict.NEXT_ENDPOINT:
                        raise _SkipEndpoint(error)
                    raise error
                announced = _announced_size(response)
                if expected_size is not None and announced not in (None, expected_size):
                    raise _SkipEndpoint(
                        WalrusProtocolError(
                            f"wrong size from {base}: it announced {announced} bytes, "
                            f"the expected size is {expected_size}"
                        )
                    )
                if max_bytes is not None and announced is not None and announced > max_bytes:
                    raise _SkipEndpoint(_over_limit(base, f"announced {announced}", max_bytes))
                chunks: Iterator[bytes] = response.iter_raw()
                if announced is None or announced > READ_AHEAD_ABOVE:
                    chunks = _read_ahead(chunks)
                return _Opened(url, response, next(chunks, b""), chunks)
            except BaseException:
                response.close()
                raise

    def _stream(
        self,
        opened: _Opened,
        sink: _Sink,
        expected_size: int | None,
        max_bytes: int | None,
        progress: _HighWater,
    ) -> None:
        """The rest of an opened answer into `sink`, bounded in size and kept up to pace."""
        base = opened.url.split("/v1/", 1)[0]
        limit = expected_size if expected_size is not None else max_bytes
        pace = Throughput(self.pacing, base) if self.pacing.min_throughput else None
        try:
            with _as_walrus_errors(opened.url, self.unreachable_hint, reading=True):
                for chunk in itertools.chain((opened.first,), opened.rest):
                    if limit is not None and sink.size + len(chunk) > limit:
                        if expected_size is None:
                            raise _SkipEndpoint(_over_limit(base, "sent more", limit))
                        raise _SkipEndpoint(
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

    def _verify(
        self, sink: _Sink, check: _Check, file_sink: VerifiedFile | None, base: str
    ) -> None:
        actual = sink.digest()
        if check.sha256 is not None and actual != check.sha256:
            error = IntegrityError(f"{check.what} (wrong bytes from {base})", check.sha256, actual)
            error.source = base  # so a verifier can name who served the wrong bytes
            raise error
        if check.blob_id is not None:
            computer = self._blob_id_computer(required=True)
            assert computer is not None
            if not self._may_compute_blob_id(sink.size):
                raise _SkipEndpoint(
                    WalrusRequestError(
                        f"{check.what} is {sink.size} bytes, above the {self.compute_blob_ids_up_to}"
                        "-byte limit for recomputing blob IDs; give its expected SHA-256"
                    )
                )
            if file_sink is not None:
                file_sink.flush()
                computed = computer.of_file(file_sink.temporary, 0, sink.size, sha256=actual)
            else:
                assert isinstance(sink, _BytesSink)
                computed = computer.of_bytes(bytes(sink.buffer), sha256=actual)
            if computed != check.blob_id:
                raise BlobIdMismatch(
                    f"the Walrus blob ID of the bytes served as {check.what} by {base}",
                    check.blob_id,
                    computed,
                )
        if check.accept is not None:
            assert isinstance(sink, _BytesSink)
            data = bytes(sink.buffer)
            problem = check.accept(data)
            if problem is not None:
                raise AnswerRefused(
                    f"{check.what} (wrong bytes from {base})", "acceptable bytes", problem, data
                )


@dataclass
class _Opened:
    """An answer whose status, headers and first bytes have arrived."""

    url: str
    response: httpx.Response
    first: bytes
    rest: Iterator[bytes]

    def close(self) -> None:
        """Hang up; a read-ahead helper thread (`_read_ahead`) stops with its generator."""
        self.response.close()
        if isinstance(self.rest, Generator):
            self.rest.close()


@dataclass
class _ReadState:
    """One read's record: what each aggregator did last, and which are out of it."""

    what: str
    outcomes: dict[str, OkaiError] = field(default_factory=dict)
    skipped: set[str] = field(default_factory=set)


# What an aggregator did that costs it its place in line for the rest of the command.
_MISBEHAVIOUR = (IntegrityError, WalrusStalled, WalrusShortBody, WalrusProtocolError)


def _is_endpoint_failure(error: BaseException, recently_stored: bool) -> bool:
    """Whether another aggregator (or a later round) may do better than this failure."""
    if isinstance(error, _SkipEndpoint | IntegrityError):
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


def _announced_size(response: httpx.Response) -> int | None:
    announced = response.headers.get("Content-Length")
    try:
        return None if announced is None else int(announced)
    except ValueError:
        raise _SkipEndpoint(
            WalrusProtocolError(f"{response.request.url} announced a size of {announced[:40]!r}")
        ) from None


def _over_limit(base: str, did: str, limit: int) -> ReadLimitExceeded:
    return ReadLimitExceeded(
        f"too large: {base} {did} than the {limit} bytes allowed for this read",
        hint="raise the limit for this kind of object if it is legitimately this large",
    )


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
    return type(chosen)(message, **_status_fields(chosen))


def _status_fields(error: OkaiError) -> dict[str, Any]:
    if isinstance(error, WalrusStatusError):
        return {
            "status": error.status,
            "reason": error.reason,
            "url": error.url,
            "hint": error.hint,
        }
    return {"hint": error.hint}


_END = object()


def _read_ahead(chunks: Iterator[bytes], depth: int = 4) -> Iterator[bytes]:
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


def _read_limited(response: httpx.Response, limit: int) -> bytes:
    data = bytearray()
    for chunk in response.iter_raw():
        data += chunk
        if len(data) > limit:
            raise WalrusProtocolError(f"{response.request.url} sent an answer over {limit} bytes")
    return bytes(data)


def _file_chunks(stream: IO[bytes], size: int, path: Path) -> Iterator[bytes]:
    left = size
    while left > 0:
        chunk = stream.read(min(CHUNK, left))
        if not chunk:
            raise WalrusRequestError(f"{path} became shorter while it was being stored")
        left -= len(chunk)
        yield chunk


def _checked_blob_id(blob_id: str) -> str:
    if not isinstance(blob_id, str) or not re.fullmatch(BLOB_ID_PATTERN, blob_id):
        raise WalrusRequestError(
            f"not a Walrus blob ID: {str(blob_id)[:80]!r} (43 URL-safe base64 characters)"
        )
    return blob_id


def _checked_patch_id(patch_id: str) -> str:
    if not _PATCH_ID.fullmatch(patch_id):
        raise WalrusRequestError(f"not a quilt patch ID: {patch_id[:80]!r}")
    return patch_id


def _check_quilt_identifiers(
    files: Mapping[str, Path | bytes], tags: Mapping[str, Mapping[str, str]]
) -> None:
    """The documented identifier rules: start alphanumeric, no control characters, < 64 KiB."""
    if not files:
        raise WalrusRequestError("a quilt needs at least one file")
    for name in files:
        if (
            not name
            or not name[0].isalnum()
            or name != name.rstrip()
            or any(ord(c) < 32 or ord(c) == 127 for c in name)
            or len(name.encode()) >= 64 * 1024
        ):
            raise WalrusRequestError(
                f"invalid quilt identifier {name[:80]!r}",
                hint="identifiers start with a letter or digit, have no control characters "
                "or trailing spaces, and are shorter than 64 KiB",
            )
    unknown = set(tags) - set(files)
    if unknown:
        raise WalrusRequestError(f"tags name files not in the quilt: {sorted(unknown)[:3]}")
