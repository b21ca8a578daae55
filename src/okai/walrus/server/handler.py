"""HTTP routes of the local Walrus-compatible server (publisher and aggregator on one port).

Status codes, headers and bodies follow the real daemon as documented in
reference/walrus.md sections 2 to 6 and 10: JSON error envelopes where the
Walrus handlers produce them, plain text where the framework does (bad query,
body over the limit, load shedding), an empty 404 for unknown routes, and the
permissive CORS of the daemon on every answer.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import parse_qsl, unquote, urlsplit

from okai import __version__
from okai.walrus.blob_ids import SCHEME_FAKE, BlobIdError
from okai.walrus.server.auth import AUTH_DOMAIN, JwtChecker
from okai.walrus.server.faults import FAILURES, Faults
from okai.walrus.server.quilts import (
    QuiltFormError,
    container,
    patch_id,
    receive_form,
    split_patch_id,
)
from okai.walrus.server.storage import Storage, StoreRequest

if TYPE_CHECKING:
    from okai.walrus.server import _HTTPServer

DOMAIN = "daemon.walrus.space"
MAX_EPOCHS = 53
DRAIN_LIMIT = 64 << 20
"""Bodies up to this size are read and dropped before an early error, so the client sees it."""
CHUNK = 1 << 20
_BLOB_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")
_OBJECT_ID = re.compile(r"^0x[0-9a-fA-F]{64}$")
_RANGE = re.compile(r"^bytes=(\d+)-(\d+)$")
_PUBLISHER_KEYS = frozenset(
    {
        "encoding_type",
        "epochs",
        "deletable",
        "permanent",
        "force",
        "quilt_version",
        "reuse_resources",
        "send_object_to",
        "share",
    }
)
_READ_KEYS = frozenset({"strict_consistency_check", "skip_consistency_check"})
_NOT_FOUND = "the requested blob ID does not exist on Walrus, ensure that it was entered correctly"
_CORS_VARY = "origin, access-control-request-method, access-control-request-headers"


@dataclass
class App:
    """Everything a request needs: storage, switches, limits."""

    storage: Storage
    faults: Faults
    max_body: int
    max_quilt_body: int
    test_controls: bool
    jwt: JwtChecker | None
    log: bool


class PlainError(Exception):
    """A framework-style error: plain-text body, no envelope."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


class ApiError(Exception):
    """A Walrus-handler error: the JSON envelope."""

    def __init__(
        self, code: int, status: str, reason: str, message: str, domain: str = DOMAIN
    ) -> None:
        super().__init__(message)
        self.code, self.status, self.reason, self.message, self.domain = (
            code,
            status,
            reason,
            message,
            domain,
        )

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "status": self.status,
                "message": self.message,
                "details": [
                    {
                        "@type": "ErrorInfo",
                        "reason": self.reason,
                        "domain": self.domain,
                        "metadata": {},
                    }
                ],
            }
        }


def internal_error() -> ApiError:
    return ApiError(
        500,
        "INTERNAL",
        "INTERNAL_ERROR",
        "an internal server error has occurred, please report it",
        domain="global",
    )


def injected_failure(status: int) -> ApiError | PlainError:
    status_name, reason = FAILURES[status]
    if status == 429:
        return PlainError(429, "the service is receiving too many requests; please try again later")
    if status == 500:
        return internal_error()
    messages = {
        403: "the blob size exceeds the maximum allowed size of this aggregator",
        404: _NOT_FOUND,
        451: "the requested blob has been blocked",
        503: "the blob is currently not retrievable from the storage network; retry later",
        504: "the blob could not be stored on enough storage nodes in time; retry",
    }
    return ApiError(status, status_name, reason, messages[status])


def _query(raw: str, allowed: frozenset[str]) -> dict[str, str]:
    """Query keys as serde with deny_unknown_fields would accept them (else plain 400)."""
    values: dict[str, str] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        if key not in allowed:
            raise PlainError(400, f"Failed to deserialize query string: unknown field `{key}`")
        if key in values:
            raise PlainError(400, f"Failed to deserialize query string: duplicate field `{key}`")
        values[key] = value
    return values


def _bool(values: dict[str, str], key: str) -> bool:
    value = values.get(key)
    if value is None:
        return False
    if value not in ("true", "false"):
        raise PlainError(400, f"Failed to deserialize query string: {key}: invalid boolean")
    return value == "true"


def _uint(values: dict[str, str], key: str, default: int | None = None) -> int:
    value = values.get(key)
    if value is None:
        if default is None:
            raise PlainError(400, f"Failed to deserialize query string: missing field `{key}`")
        return default
    if not value.isdigit() or int(value) >= 1 << 64:
        raise PlainError(400, f"Failed to deserialize query string: {key}: invalid digit")
    return int(value)


def _blob_id(text: str) -> str:
    if not _BLOB_ID.match(text) or len(base64.urlsafe_b64decode(text + "=")) != 32:
        raise PlainError(400, f"Invalid URL: Cannot parse `{text[:80]}` to a `BlobId`")
    return text


class WalrusHandler(BaseHTTPRequestHandler):
    """One connection; HTTP/1.1 keep-alive."""

    protocol_version = "HTTP/1.1"
    timeout = 120
    server: _HTTPServer

    @property
    def app(self) -> App:
        return self.server.app

    def version_string(self) -> str:
        return f"okai-walrus/{__version__}"

    def log_message(self, format: str, *args: Any) -> None:
        if self.app.log:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    def end_headers(self) -> None:
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Vary", _CORS_VARY)
        if self.app.storage.scheme == SCHEME_FAKE:
            self.send_header("X-Okai-Blob-Id-Scheme", SCHEME_FAKE)
        super().end_headers()

    # ------------------------------------------------------------ dispatch

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_OPTIONS(self) -> None:
        if self.headers.get("Access-Control-Request-Method") is None:
            self._dispatch("OPTIONS")
            return
        self._body_read = False
        self._head = False
        self._drain()
        self.send_response(200)
        self.send_header("Access-Control-Allow-Methods", "*")
        self.send_header("Access-Control-Allow-Headers", "*")
        self.send_header("Access-Control-Max-Age", "86400")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _routes(self) -> list[tuple[str, re.Pattern[str], dict[str, Callable[..., None]]]]:
        routes: list[tuple[str, str, dict[str, Callable[..., None]]]] = [
            ("status", r"/status", {"GET": self._status}),
            ("api", r"/v1/api", {"GET": self._api_page}),
            ("blobs", r"/v1/blobs", {"PUT": self._put_blob}),
            ("quilts", r"/v1/quilts", {"PUT": self._put_quilt}),
            (
                "by-object-id",
                r"/v1/blobs/by-object-id/(?P<object_id>[^/]+)",
                {"GET": self._get_by_object},
            ),
            (
                "by-quilt-patch-id",
                r"/v1/blobs/by-quilt-patch-id/(?P<patch>[^/]+)",
                {"GET": self._get_patch_by_id},
            ),
            (
                "by-quilt-id",
                r"/v1/blobs/by-quilt-id/(?P<quilt>[^/]+)/(?P<identifier>.+)",
                {"GET": self._get_patch_by_name},
            ),
            ("byte-range", r"/v1/blobs/(?P<blob>[^/]+)/byte-range", {"GET": self._get_byte_range}),
            ("blob", r"/v1/blobs/(?P<blob>[^/]+)", {"GET": self._get_blob}),
            ("patches", r"/v1/quilts/(?P<quilt>[^/]+)/patches", {"GET": self._list_patches}),
        ]
        if self.app.test_controls:
            routes += [
                (
                    "test-faults",
                    r"/_okai/test/faults",
                    {"GET": self._faults, "POST": self._faults, "DELETE": self._faults},
                ),
                ("test-stats", r"/_okai/test/stats", {"GET": self._stats}),
                ("test-epoch", r"/_okai/test/epoch", {"GET": self._epoch, "POST": self._epoch}),
            ]
        return [(name, re.compile(f"^{pattern}$"), methods) for name, pattern, methods in routes]

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        self._query = split.query
        self._head = method == "HEAD"
        self._body_read = False
        try:
            for name, pattern, methods in self._routes():
                match = pattern.match(split.path)
                if match is None:
                    continue
                handler = methods.get("GET" if method == "HEAD" else method)
                if handler is None:
                    self._drain()
                    self._send(405, b"", [("Allow", ", ".join(methods))])
                    return
                if split.path.startswith("/v1/"):
                    self.app.faults.count(f"{method} {name}")
                    if delay := self.app.faults.delay():
                        time.sleep(delay)
                handler(**{k: unquote(v) for k, v in match.groupdict().items()})
                return
            self._drain()
            self._send(404, b"")
        except PlainError as error:
            self._drain()
            headers = [("Content-Type", "text/plain; charset=utf-8")]
            self._send(error.status, error.text.encode(), headers)
        except ApiError as error:
            self._drain()
            self._send_json(error.code, error.body())
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # a bug here must still answer like the real server: 500
            sys.stderr.write(f"walrus server: {method} {split.path} failed: {exc!r}\n")
            self.close_connection = True
            self._send_json(500, internal_error().body())

    # ------------------------------------------------------------ responses

    def _send(self, status: int, body: bytes, headers: list[tuple[str, str]] | None = None) -> None:
        self.send_response(status)
        for name, value in headers or []:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not self._head:
            self.wfile.write(body)

    def _send_json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data).encode(), [("Content-Type", "application/json")])

    def _drain(self) -> None:
        """Read and drop an unread request body, or close the connection if it is too big."""
        if self._body_read:
            return
        self._body_read = True
        length = self.headers.get("Content-Length")
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        if chunked or (length is not None and int(length) > DRAIN_LIMIT):
            self.close_connection = True
            return
        left = int(length or 0)
        while left > 0:
            piece = self.rfile.read(min(CHUNK, left))
            if not piece:
                break
            left -= len(piece)

    def _body(self, limit: int) -> Iterator[bytes]:
        """The request body in pieces (Content-Length or chunked); 413 beyond `limit`."""
        self._body_read = True
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            yield from self._chunked_body(limit)
            return
        left = int(self.headers.get("Content-Length") or 0)
        if left > limit:
            self._body_read = False
            raise PlainError(413, "Failed to buffer the request body: length limit exceeded")
        while left > 0:
            piece = self.rfile.read(min(CHUNK, left))
            if not piece:
                raise PlainError(400, "Failed to buffer the request body: unexpected end of body")
            left -= len(piece)
            yield piece

    def _chunked_body(self, limit: int) -> Iterator[bytes]:
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise PlainError(400, "Failed to buffer the request body: bad chunk") from None
            if size == 0:
                while self.rfile.readline(1024).strip():
                    pass
                return
            total += size
            if total > limit:
                self.close_connection = True
                raise PlainError(413, "Failed to buffer the request body: length limit exceeded")
            yield self.rfile.read(size)
            self.rfile.readline(16)

    def _fail_if_due(self, kind: str) -> None:
        status = self.app.faults.take_failure(kind)
        if status is not None:
            raise injected_failure(status)

    # ------------------------------------------------------------ simple routes

    def _status(self) -> None:
        self._send(200, b"OK", [("Content-Type", "text/plain; charset=utf-8")])

    def _api_page(self) -> None:
        page = (
            "<!doctype html><title>okai local Walrus server</title>"
            "<p>A local Walrus-compatible publisher and aggregator. The API is the Walrus "
            "daemon's: see the OpenAPI files in the okai repository.</p>"
        )
        self._send(200, page.encode(), [("Content-Type", "text/html; charset=utf-8")])

    # ------------------------------------------------------------ publisher

    def _store_request(self, values: dict[str, str]) -> StoreRequest:
        epochs = _uint(values, "epochs", 1)
        permanent = _bool(values, "permanent")
        if values.get("encoding_type", "RS2") != "RS2":
            raise PlainError(
                400, "Failed to deserialize query string: unknown variant of encoding_type"
            )
        for key in ("force", "share", "reuse_resources"):
            _bool(values, key)
        if _bool(values, "deletable") and permanent:
            raise ApiError(
                400,
                "INVALID_ARGUMENT",
                "INVALID_BLOB_PERSISTENCE",
                "a blob cannot be both deletable and permanent",
            )
        send_to = values.get("send_object_to")
        if send_to is not None and "share" in values:
            raise PlainError(
                400,
                "Failed to deserialize query string: send_object_to and share "
                "are mutually exclusive",
            )
        if send_to is not None and not _OBJECT_ID.match(send_to):
            raise PlainError(400, "Failed to deserialize query string: invalid Sui address")
        if not 1 <= epochs <= MAX_EPOCHS:
            # The real publisher only learns this when the Move call aborts.
            raise internal_error()
        return StoreRequest(
            epochs=epochs,
            permanent=permanent,
            force=_bool(values, "force"),
            share=_bool(values, "share"),
        )

    def _authorize(self) -> None:
        if self.app.jwt is None:
            return
        header = self.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            raise PlainError(400, "Header of type `authorization` was missing")
        failure = self.app.jwt.check(header.removeprefix("Bearer ").strip())
        if failure is not None:
            raise ApiError(
                failure.http_status,
                failure.status,
                failure.reason,
                failure.message,
                domain=AUTH_DOMAIN,
            )

    def _put_blob(self) -> None:
        request = self._store_request(_query(self._query, _PUBLISHER_KEYS))
        self._authorize()
        self._fail_if_due("store")
        storage = self.app.storage
        temporary, sha256, size = storage.receive(self._body(self.app.max_body))
        try:
            blob_id = storage.blob_id_of(temporary, sha256, size)
            result = storage.store(temporary, blob_id, sha256, size, request)
        except BlobIdError:
            raise internal_error() from None
        finally:
            temporary.unlink(missing_ok=True)
        self._send_json(200, result)

    def _put_quilt(self) -> None:
        values = _query(self._query, _PUBLISHER_KEYS)
        if values.get("quilt_version", "v1") not in ("v1", "V1", "1"):
            raise PlainError(400, "Failed to deserialize query string: unknown quilt_version")
        request = self._store_request(values)
        self._authorize()
        self._fail_if_due("store")
        storage = self.app.storage
        with tempfile.TemporaryDirectory(dir=storage.root / "tmp") as spool:
            try:
                patches = receive_form(
                    self.headers.get("Content-Type", ""),
                    self._body(self.app.max_quilt_body),
                    Path(spool),
                )
            except QuiltFormError as exc:
                raise ApiError(400, "INVALID_ARGUMENT", "MALFORMED_REQUEST", str(exc)) from None
            chunks, index = container(patches)
            temporary, sha256, size = storage.receive(chunks)
        try:
            quilt_id = storage.blob_id_of(temporary, sha256, size)
            result = storage.store(temporary, quilt_id, sha256, size, request)
        except BlobIdError:
            raise internal_error() from None
        finally:
            temporary.unlink(missing_ok=True)
        storage.save_quilt(quilt_id, index)
        stored = [
            {
                "identifier": entry["identifier"],
                "quiltPatchId": patch_id(quilt_id, entry["start"], entry["end"]),
            }
            for entry in index
        ]
        self._send_json(200, {"blobStoreResult": result, "storedQuiltBlobs": stored})

    # ------------------------------------------------------------ aggregator

    def _read_options(self, extra: frozenset[str] = frozenset()) -> dict[str, str]:
        values = _query(self._query, _READ_KEYS | extra)
        if _bool(values, "strict_consistency_check") and _bool(values, "skip_consistency_check"):
            raise ApiError(
                400,
                "INVALID_ARGUMENT",
                "INVALID_CONSISTENCY_CHECK",
                "strict and skip consistency checks exclude each other",
            )
        return values

    def _live_blob(self, blob_id: str) -> Path:
        path = self.app.storage.blob_path(blob_id)
        if path is None:
            raise ApiError(404, "NOT_FOUND", "BLOB_NOT_FOUND", _NOT_FOUND)
        return path

    def _content_headers(self, etag: str) -> list[tuple[str, str]]:
        headers = [
            ("ETag", etag),
            ("X-Content-Type-Options", "nosniff"),
            ("Cache-Control", "public, max-age=86400, stale-while-revalidate=3600"),
        ]
        accept = self.headers.get("Accept")
        if accept and "*" not in accept:
            headers.append(("Content-Type", accept))
        elif content_type := self.headers.get("Content-Type"):
            headers.append(("Content-Type", content_type))
        return headers

    def _get_blob(self, blob: str) -> None:
        blob_id = _blob_id(blob)
        self._read_options()
        self._fail_if_due("read")
        path = self._live_blob(blob_id)
        size = path.stat().st_size
        headers = self._content_headers(blob_id)
        requested = self.headers.get("Range")
        if requested is None:
            self._send_file(200, path, 0, size, headers)
            return
        match = _RANGE.match(requested.strip())
        if match is None or int(match[1]) > int(match[2]) or int(match[2]) >= size:
            raise ApiError(
                416,
                "RANGE_NOT_SATISFIABLE",
                "INVALID_BYTE_RANGE",
                f"invalid byte range {requested[:80]!r} for a blob of {size} bytes",
            )
        start, end = int(match[1]), int(match[2])
        headers.append(("Content-Range", f"bytes {start}-{end}/{size}"))
        self._send_file(206, path, start, end - start + 1, headers)

    def _get_byte_range(self, blob: str) -> None:
        blob_id = _blob_id(blob)
        values = self._read_options(frozenset({"start", "length"}))
        start, length = _uint(values, "start"), _uint(values, "length")
        self._fail_if_due("read")
        path = self._live_blob(blob_id)
        size = path.stat().st_size
        if length == 0 or start + length > size:
            raise ApiError(
                400,
                "INVALID_ARGUMENT",
                "INVALID_BYTE_RANGE",
                f"the range {start}+{length} is not inside the blob of {size} bytes",
            )
        self._send_file(
            200, path, start, length, self._content_headers(f"{blob_id}-{start}-{length}")
        )

    def _get_by_object(self, object_id: str) -> None:
        if not _OBJECT_ID.match(object_id):
            raise PlainError(400, f"Invalid URL: Cannot parse `{object_id[:80]}` to an `ObjectID`")
        self._read_options()
        self._fail_if_due("read")
        blob_id = self.app.storage.blob_for_object(object_id)
        if blob_id is None:
            raise ApiError(404, "NOT_FOUND", "BLOB_NOT_FOUND", _NOT_FOUND)
        path = self._live_blob(blob_id)
        self._send_file(200, path, 0, path.stat().st_size, self._content_headers(blob_id))

    def _quilt_patches(self, quilt_id: str) -> list[dict[str, Any]]:
        patches = self.app.storage.quilt(quilt_id)
        if patches is None:
            raise ApiError(404, "NOT_FOUND", "BLOB_NOT_FOUND", _NOT_FOUND)
        return patches

    def _send_patch(self, quilt_id: str, entry: dict[str, Any]) -> None:
        path = self._live_blob(quilt_id)
        headers = self._content_headers(quilt_id)
        headers.append(("X-Quilt-Patch-Identifier", entry["identifier"]))
        self._send_file(200, path, entry["offset"], entry["length"], headers)

    def _patch_missing(self) -> ApiError:
        return ApiError(
            404,
            "NOT_FOUND",
            "QUILT_PATCH_NOT_FOUND",
            "the requested quilt patch does not exist on Walrus",
        )

    def _get_patch_by_id(self, patch: str) -> None:
        parts = split_patch_id(patch)
        if parts is None:
            raise PlainError(400, f"Invalid URL: Cannot parse `{patch[:80]}` to a `QuiltPatchId`")
        self._read_options()
        self._fail_if_due("read")
        quilt_id, start = parts
        for entry in self._quilt_patches(quilt_id):
            if entry["start"] == start:
                self._send_patch(quilt_id, entry)
                return
        raise self._patch_missing()

    def _get_patch_by_name(self, quilt: str, identifier: str) -> None:
        quilt_id = _blob_id(quilt)
        self._read_options()
        self._fail_if_due("read")
        for entry in self._quilt_patches(quilt_id):
            if entry["identifier"] == identifier:
                self._send_patch(quilt_id, entry)
                return
        raise self._patch_missing()

    def _list_patches(self, quilt: str) -> None:
        quilt_id = _blob_id(quilt)
        self._read_options()
        self._fail_if_due("read")
        items = [
            {
                "identifier": e["identifier"],
                "patch_id": patch_id(quilt_id, e["start"], e["end"]),
                "tags": e["tags"],
            }
            for e in self._quilt_patches(quilt_id)
        ]
        self._send_json(200, items)

    def _send_file(
        self, status: int, path: Path, offset: int, length: int, headers: list[tuple[str, str]]
    ) -> None:
        """Send bytes of a file, applying the stall, corrupt, truncate and trickle switches."""
        self.app.faults.stall_if_due()
        corrupt = self.app.faults.take_corrupt()
        truncate = not corrupt and self.app.faults.take_truncate()
        rate = None if corrupt or truncate else self.app.faults.trickle_rate()
        announced = 1 if corrupt and length == 0 else length
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(announced))
        self.end_headers()
        if self._head:
            return
        with open(path, "rb") as stream:
            if rate is not None:
                self._trickle(stream, offset, length, rate)
                return
            if not corrupt and not truncate:
                if length:
                    self.connection.sendfile(stream, offset, length)
                return
            if truncate:
                # Announce every byte, send half, hang up: what a dying aggregator does.
                if length > 1:
                    self.connection.sendfile(stream, offset, length // 2)
                self.close_connection = True
                return
            stream.seek(offset)
            data = bytearray(stream.read(length)) or bytearray(1)
            data[len(data) // 2] ^= 0x01
            self.wfile.write(data)

    def _trickle(self, stream: BinaryIO, offset: int, length: int, rate: int) -> None:
        """Send `length` bytes at `rate` bytes per second, ten pieces a second."""
        stream.seek(offset)
        piece = max(1, rate // 10)
        left = length
        while left > 0:
            data = stream.read(min(piece, left))
            self.wfile.write(data)
            self.wfile.flush()
            left -= len(data)
            time.sleep(len(data) / rate)

    # ------------------------------------------------------------ test controls

    def _json_body(self) -> dict[str, Any]:
        raw = b"".join(self._body(1 << 16))
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            raise PlainError(400, "the body is not JSON") from None
        if not isinstance(data, dict):
            raise PlainError(400, "the body must be a JSON object")
        return data

    def _faults(self) -> None:
        if self.command == "POST":
            try:
                self.app.faults.set(**self._json_body())
            except (ValueError, TypeError) as exc:
                raise PlainError(400, str(exc)) from None
        elif self.command == "DELETE":
            self.app.faults.reset()
        self._send_json(200, asdict(self.app.faults.settings()))

    def _stats(self) -> None:
        self._send_json(200, self.app.faults.counts())

    def _epoch(self) -> None:
        storage = self.app.storage
        if self.command == "POST":
            body = self._json_body()
            try:
                epoch = (
                    int(body["epoch"]) if "epoch" in body else storage.epoch + int(body["advance"])
                )
            except (KeyError, TypeError, ValueError):
                raise PlainError(400, 'send {"epoch": N} or {"advance": N}') from None
            storage.set_epoch(epoch)
        self._send_json(200, {"epoch": storage.epoch})
