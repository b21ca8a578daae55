"""The Walrus HTTP client: store on a publisher, read from aggregators, verify everything.

Bytes stream both ways in 1 MiB pieces, so memory stays flat whatever the
blob size. Every read is hashed as it arrives and kept only if its SHA-256
matches the digest the caller trusts (or, when the caller has no digest, if
the Walrus blob ID recomputed from the bytes matches the one asked for).

Reads fail over between aggregators and retry transient failures with capped
backoff; stores retry transient failures on the one publisher. See
`okai.walrus.retry` for what counts as transient, `okai.walrus.errors` for what
is raised.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
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
from okai.nodetools import ToolMissingError
from okai.walrus.blob_ids import BlobIdComputer, blob_ids_available
from okai.walrus.errors import (
    BlobBlocked,
    BlobIdMismatch,
    BlobNotFound,
    BlobTooLarge,
    PublisherAuthError,
    WalrusError,
    WalrusProtocolError,
    WalrusRequestError,
    WalrusStatusError,
    WalrusTimeout,
    WalrusUnavailable,
    WalrusUnreachable,
)
from okai.walrus.integrity import VerifiedFile
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
from okai.walrus.transport import BulkTransport

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


@contextmanager
def _as_walrus_errors(url: str, hint: str | None = None) -> Iterator[None]:
    """The one place where httpx exceptions become okai ones."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise WalrusTimeout(f"{url} did not answer in time", hint=hint) from exc
    except httpx.TransportError as exc:
        raise WalrusUnreachable(f"cannot reach {url}: {exc}", hint=hint) from exc


class _Sink(Protocol):
    size: int

    def write(self, chunk: bytes) -> None: ...

    def restart(self) -> None: ...

    def digest(self) -> Digest: ...


class _BytesSink:
    """Collects a body in memory, hashing as it arrives; refuses more than `limit` bytes."""

    def __init__(self, limit: int, what: str) -> None:
        self.limit = limit
        self.what = what
        self.restart()

    def restart(self) -> None:
        self.buffer = bytearray()
        self.size = 0
        self._hasher = hashlib.sha256()

    def write(self, chunk: bytes) -> None:
        if self.size + len(chunk) > self.limit:
            raise WalrusRequestError(
                f"{self.what} is larger than {self.limit} bytes, the most read into memory",
                hint="read it to a file instead",
            )
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
    """How a read is verified: against a trusted SHA-256, a recomputed blob ID, or both."""

    sha256: Digest | None
    blob_id: str | None
    what: str


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
        transport: httpx.BaseTransport | None = None,
        blob_ids: BlobIdComputer | None = None,
    ) -> None:
        self.aggregators = tuple(dict.fromkeys(url.rstrip("/") for url in aggregators))
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
        self._recent: dict[str, float] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_network(cls, network: Network, secrets: Secrets, **options: Any) -> WalrusClient:
        """The client for a configured network; `options` override constructor defaults.

        `OKAI_WALRUS_CHECK_BLOB_IDS_UP_TO` (bytes; 0 turns it off) sets
        `compute_blob_ids_up_to` when `options` does not.
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
        verify_blob_id: bool | None = None,
        durable: bool = False,
        on_progress: ProgressFn | None = None,
    ) -> Digest:
        """Download a blob to `dest`, verified and atomic; returns its SHA-256.

        With `expected`, the bytes must hash to it. Without it, the blob ID is
        recomputed from the bytes (needs Node; bounded by
        `compute_blob_ids_up_to`). A failed check leaves nothing at `dest`.
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
                file_sink=sink,
            )
            return sink.commit(sink.digest())

    def read_bytes(
        self,
        blob_id: str,
        expected: Digest | None,
        *,
        max_size: int = DEFAULT_READ_BYTES_LIMIT,
        verify_blob_id: bool | None = None,
    ) -> bytes:
        """Read a blob into memory (at most `max_size` bytes), verified like `read_to_file`."""
        blob_id = _checked_blob_id(blob_id)
        check = self._read_check(blob_id, expected, None, verify_blob_id)
        sink = _BytesSink(max_size, f"blob {blob_id}")
        self._read(f"/v1/blobs/{blob_id}", sink, check, None, None, blob_id=blob_id)
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
        sink = _BytesSink(length, check.what)
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
        max_size: int = DEFAULT_READ_BYTES_LIMIT,
        allow_unverified: bool = False,
    ) -> bytes:
        """Read one file of a quilt by its patch ID, verified against `expected`.

        A patch is not a blob, so its bytes cannot be checked by blob ID:
        without `expected`, the read is refused unless `allow_unverified`.
        """
        patch = _checked_patch_id(quilt_patch_id)
        check = self._patch_check(expected, f"quilt patch {patch}", allow_unverified)
        sink = _BytesSink(max_size, check.what)
        self._read(f"/v1/blobs/by-quilt-patch-id/{patch}", sink, check, None, None, blob_id=None)
        return bytes(sink.buffer)

    def read_quilt_patch_to_file(
        self,
        quilt_patch_id: str,
        expected: Digest | None,
        dest: Path,
        *,
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
                file_sink=sink,
            )
            return sink.commit(sink.digest())

    def read_quilt_file(
        self,
        quilt_id: str,
        identifier: str,
        expected: Digest | None,
        *,
        max_size: int = DEFAULT_READ_BYTES_LIMIT,
        allow_unverified: bool = False,
    ) -> bytes:
        """Read one file of a quilt by the quilt's ID and the file's identifier."""
        quilt_id = _checked_blob_id(quilt_id)
        check = self._patch_check(expected, f"{identifier!r} of quilt {quilt_id}", allow_unverified)
        sink = _BytesSink(max_size, check.what)
        route = f"/v1/blobs/by-quilt-id/{quilt_id}/{quote(identifier, safe='')}"
        self._read(route, sink, check, None, None, blob_id=None)
        return bytes(sink.buffer)

    def check_quilt_file(
        self,
        quilt_id: str,
        identifier: str,
        expected: Digest,
        *,
        expected_size: int | None = None,
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
        return self._read(route, _HashSink(), check, expected_size, on_progress, blob_id=quilt_id)

    def list_quilt_patches(self, quilt_id: str) -> list[QuiltPatchItem]:
        """The files of a quilt: identifier, patch ID and tags of each."""
        quilt_id = _checked_blob_id(quilt_id)
        sink = _BytesSink(16 * MiB, f"the patch list of quilt {quilt_id}")
        self._read(
            f"/v1/quilts/{quilt_id}/patches",
            sink,
            _Check(None, None, sink.what),
            None,
            None,
            blob_id=quilt_id,
        )
        try:
            items = json.loads(bytes(sink.buffer))
            return [QuiltPatchItem.model_validate(item) for item in items]
        except (ValueError, TypeError) as exc:
            raise WalrusProtocolError(f"the patch list of quilt {quilt_id} is malformed") from exc

    def _read_check(
        self, blob_id: str, expected: Digest | None, size: int | None, verify: bool | None
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
        return _Check(expected, blob_id if wants_id else None, f"blob {blob_id}")

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
        file_sink: VerifiedFile | None = None,
        headers: Mapping[str, str] | None = None,
        ok_status: int = 200,
    ) -> str:
        """Fetch `route` from the aggregators into `sink` until one answer passes `check`.

        Returns the aggregator whose answer passed.
        """
        bases = [self._first_aggregator(), *self.aggregators[1:]]
        progress = _HighWater(on_progress)
        skipped: dict[str, OkaiError] = {}
        last_transient: WalrusError | None = None
        for round_index in range(self.retry.rounds):
            for base in bases:
                if base in skipped:
                    continue
                sink.restart()
                progress.restart()
                try:
                    self._read_once(
                        base + route,
                        sink,
                        expected_size,
                        progress,
                        headers,
                        ok_status,
                        recently_stored=self._recently_stored(blob_id),
                    )
                    self._verify(sink, check, file_sink)
                    return base
                except _SkipEndpoint as skip:
                    skipped[base] = skip.error
                except IntegrityError as exc:
                    exc.source = base  # so a verifier can name who served the wrong bytes
                    skipped[base] = exc
                except (WalrusUnreachable, WalrusTimeout, WalrusUnavailable) as exc:
                    last_transient = exc
                except WalrusStatusError as exc:
                    if (
                        classify_status(
                            exc.status, exc.reason, recently_stored=self._recently_stored(blob_id)
                        )
                        is Verdict.RETRY
                    ):
                        last_transient = exc
                    else:
                        raise
            if len(skipped) == len(bases):
                break
            if round_index + 1 < self.retry.rounds:
                time.sleep(self.retry.wait(round_index))
        raise _read_failure(check.what, skipped, last_transient, self.retry.rounds)

    def _read_once(
        self,
        url: str,
        sink: _Sink,
        expected_size: int | None,
        progress: _HighWater,
        headers: Mapping[str, str] | None,
        ok_status: int,
        *,
        recently_stored: bool,
    ) -> None:
        request = self._http.build_request("GET", url, headers=headers)
        with _as_walrus_errors(url, self.unreachable_hint):
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
                announced = response.headers.get("Content-Length")
                if (
                    expected_size is not None
                    and announced is not None
                    and int(announced) != expected_size
                ):
                    raise _SkipEndpoint(
                        WalrusProtocolError(
                            f"{url} announced {announced} bytes, expected {expected_size}"
                        )
                    )
                limit = expected_size
                chunks: Iterator[bytes] = response.iter_raw()
                if announced is None or int(announced) > READ_AHEAD_ABOVE:
                    chunks = _read_ahead(chunks)
                for chunk in chunks:
                    if limit is not None and sink.size + len(chunk) > limit:
                        raise _SkipEndpoint(
                            WalrusProtocolError(f"{url} sent more than the expected {limit} bytes")
                        )
                    sink.write(chunk)
                    progress(len(chunk))
            finally:
                response.close()

    def _verify(self, sink: _Sink, check: _Check, file_sink: VerifiedFile | None) -> None:
        actual = sink.digest()
        if check.sha256 is not None and actual != check.sha256:
            raise IntegrityError(check.what, check.sha256, actual)
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
                    f"the Walrus blob ID of the bytes served as {check.what}",
                    check.blob_id,
                    computed,
                )


def _read_failure(
    what: str, skipped: Mapping[str, OkaiError], transient: WalrusError | None, rounds: int
) -> OkaiError:
    """The error that best explains why no aggregator delivered."""
    integrity = [e for e in skipped.values() if isinstance(e, IntegrityError)]
    if integrity:
        return integrity[-1]
    if transient is not None:
        return type(transient)(
            f"reading {what} failed after {rounds} rounds over the aggregators: {transient.message}",
            **_status_fields(transient),
        )
    return list(skipped.values())[-1]


def _status_fields(error: WalrusError) -> dict[str, Any]:
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
