"""Stores on one publisher: blobs streamed from disk or memory, quilts as multipart.

Each request carries a publisher token of its own (they are single-use); a
transient failure is retried on the same publisher per `okai.retry`, with
the bytes sent again from the start. Where Node is present, the blob ID is
recomputed while the bytes are sent and must match the publisher's answer.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Any, TypeVar

import httpx

from okai.digest import Digest
from okai.errors import ConfigError
from okai.retry import Sleep, call
from okai.walrus.blob_ids import BLOB_ID_CHECK_ENV, BlobIdChecks, BlobIdComputer
from okai.walrus.errors import BlobIdMismatch, PublisherAuthError, WalrusError, WalrusRequestError
from okai.walrus.http import json_answer
from okai.walrus.results import (
    QuiltStoreResult,
    StoreResult,
    outcome_blob_id,
    outcome_end_epoch,
    parse_quilt_store_result,
    parse_store_outcome,
)
from okai.walrus.retry import RecentStores, RetryPolicy, status_fields, store_may_retry
from okai.walrus.streams import (
    READ_AHEAD_ABOVE,
    HighWater,
    ProgressFn,
    ReportingReader,
    read_ahead,
)
from okai.walrus.tokens import PublisherTokens

T = TypeVar("T")
MAX_EPOCHS = 53
_SUI_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{64}$")


class Publisher:
    """PUTs to one publisher (None: stores fail with a configuration error)."""

    def __init__(
        self,
        url: str | None,
        http: httpx.Client,
        tokens: PublisherTokens | None,
        retry: RetryPolicy,
        blob_ids: BlobIdChecks,
        recent: RecentStores,
        *,
        max_body: int,
        max_quilt_body: int,
        hint: str | None,
        sleep: Sleep,
    ) -> None:
        self.url = url
        self._http = http
        self._tokens = tokens
        self._retry = retry
        self._blob_ids = blob_ids
        self._recent = recent
        self._max_body = max_body
        self._max_quilt_body = max_quilt_body
        self.hint = hint
        """Added to connection failures (the local stack's says to start it)."""
        self._sleep = sleep

    @staticmethod
    def params(
        epochs: int, permanent: bool, send_object_to: str | None, share: bool, force: bool
    ) -> dict[str, str]:
        """The query of a store, refused here if no publisher would take it."""
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

    def _route(self, route: str) -> str:
        if self.url is None:
            raise ConfigError(
                "no Walrus publisher is configured for this network",
                hint="set OKAI_WALRUS_PUBLISHER (Mainnet needs an authenticated publisher and "
                "OKAI_WALRUS_JWT), or use the local stack",
            )
        return self.url + route

    # ------------------------------------------------------------ blobs

    def store(
        self,
        body: Callable[[], Iterator[bytes]],
        size: int,
        blob_id_job: Callable[[BlobIdComputer], str],
        what: str,
        params: Mapping[str, str],
        on_progress: ProgressFn | None,
    ) -> StoreResult:
        """Store the `size` bytes `body()` yields (called again for each attempt)."""
        if self._max_body and size > self._max_body:
            raise WalrusRequestError(
                f"{what} is {size} bytes; this publisher accepts at most {self._max_body}",
                hint="`okai data push` splits files into shards that fit",
            )
        url = self._route("/v1/blobs")
        expected_id: Future[str] | None = None
        if self._blob_ids.allows(size):
            computer = self._blob_ids.computer(required=False)
            if computer is not None:
                expected_id = self._blob_ids.in_background(lambda: blob_id_job(computer))
        progress = HighWater(on_progress)
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
        self._recent.add(stored_id)
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
        progress: HighWater,
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
            chunks = read_and_hash() if size <= READ_AHEAD_ABOVE else read_ahead(read_and_hash())
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
        answer = json_answer(self._http, request, self.hint)
        return Digest("sha256:" + hasher_box[-1].hexdigest()), answer

    # ------------------------------------------------------------ quilts

    def store_quilt(
        self,
        files: Mapping[str, Path | bytes],
        tags: Mapping[str, Mapping[str, str]],
        params: Mapping[str, str],
        on_progress: ProgressFn | None,
    ) -> QuiltStoreResult:
        """Store files as one quilt (see `WalrusClient.store_quilt`)."""
        _check_quilt_identifiers(files, tags)
        sizes = {
            name: len(v) if isinstance(v, bytes) else Path(v).stat().st_size
            for name, v in files.items()
        }
        if sum(sizes.values()) > self._max_quilt_body:
            raise WalrusRequestError(
                f"the quilt holds {sum(sizes.values())} bytes; publishers accept at most "
                f"{self._max_quilt_body} per quilt",
                hint="split the files over several quilts",
            )
        url = self._route("/v1/quilts")
        metadata = [
            {"identifier": name, "tags": dict(tags[name])}
            for name in files
            if tags and name in tags
        ]

        progress = HighWater(on_progress)

        def once() -> Any:
            opened: list[IO[bytes]] = []
            progress.restart()
            try:
                parts: list[tuple[str, tuple[str, IO[bytes] | bytes, str]]] = []
                for name, value in files.items():
                    content: IO[bytes] | bytes
                    if on_progress is not None:
                        raw = io.BytesIO(value) if isinstance(value, bytes) else io.FileIO(value)
                        content = ReportingReader(raw, progress)
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
                return json_answer(self._http, request, self.hint)
            finally:
                for stream in opened:
                    stream.close()

        answer = self._with_retries(once, what=f"storing a quilt of {len(files)} files")
        result = parse_quilt_store_result(answer, f"PUT {url}")
        self._recent.add(result.quilt_id)
        return result

    # ------------------------------------------------------------ tokens and retries

    def _authorization(self) -> dict[str, str]:
        """The header of one publisher request: a token of its own (each is single-use)."""
        return {"Authorization": f"Bearer {self._tokens.take()}"} if self._tokens else {}

    def _with_unused_token(self, attempt: Callable[[], T]) -> T:
        """Run `attempt`; while a listed token turns out used (by another process that was
        given the same list, such as a cluster node), try the next one."""
        while True:
            try:
                return attempt()
            except PublisherAuthError as exc:
                if exc.reason != "TOKEN_ALREADY_USED" or not (self._tokens and self._tokens.listed):
                    raise

    def _with_retries(self, attempt: Callable[[], T], *, what: str) -> T:
        """Run one publisher request, retrying transient failures with capped backoff."""

        def exhausted(last: Exception) -> Exception:
            assert isinstance(last, WalrusError)
            return type(last)(
                f"{what} failed after {self._retry.rounds} attempts: {last.message}",
                **status_fields(last),
            )

        return call(
            lambda: self._with_unused_token(attempt),
            self._retry.schedule,
            retryable=store_may_retry,
            sleep=self._sleep,
            exhausted=exhausted,
        )


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
