"""An httpx transport over the standard library's `http.client`, for bulk bytes.

httpx's default transport reads the socket 64 KiB at a time through h11; on a
fast link that parsing costs half the throughput of curl. Blobs are large, so
this transport reads the body in 1 MiB pieces straight from the socket and
pools keep-alive connections itself. Everything above it still speaks httpx:
requests, responses, timeouts and the httpx exception types it maps to, so the
client can be tested with any other transport.

Bodies arrive in pieces of up to 1 MiB, but a piece is handed on after at
most `PIECE_SECONDS` even if smaller, so a caller can tell a crawling server
from a fast one. A request may carry a `Cancel` (extension "okai.cancel"):
cancelling it hangs up the connection, which ends a read blocked on it.

It speaks HTTP/1.1 only and ignores proxy settings.
"""

from __future__ import annotations

import contextlib
import http.client
import select
import socket
import threading
from collections.abc import Iterator
from time import monotonic
from typing import Any

import httpx

from okai.tls import tls_context

BODY_CHUNK = 1 << 20
PIECE_SECONDS = 0.25
MAX_IDLE_PER_ORIGIN = 32
CANCEL_EXTENSION = "okai.cancel"

_Origin = tuple[str, str, int]


def _timeouts(request: httpx.Request) -> tuple[float | None, float | None, float | None]:
    timeout: dict[str, Any] = request.extensions.get("timeout", {})
    return timeout.get("connect"), timeout.get("read"), timeout.get("write")


class Cancel:
    """A way to abandon one request from another thread: its connection is hung up."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self.cancelled = False

    def attach(self, sock: socket.socket) -> None:
        """The request now runs on `sock`; a cancel that came first hangs it up at once."""
        with self._lock:
            self._sock = sock
            if self.cancelled:
                _hang_up(sock)

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            if self._sock is not None:
                _hang_up(self._sock)


def _hang_up(sock: socket.socket) -> None:
    # shutdown, not close: it wakes a thread blocked in recv on this socket.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Pool:
    """Idle keep-alive connections per origin; thread-safe."""

    def __init__(self) -> None:
        self._idle: dict[_Origin, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def take(self, origin: _Origin, connect_timeout: float | None) -> http.client.HTTPConnection:
        with self._lock:
            idle = self._idle.get(origin, [])
            while idle:
                connection = idle.pop()
                if _still_open(connection):
                    return connection
                connection.close()
        scheme, host, port = origin
        if scheme == "https":
            return http.client.HTTPSConnection(
                host, port, timeout=connect_timeout, context=tls_context()
            )
        return http.client.HTTPConnection(host, port, timeout=connect_timeout)

    def give_back(self, origin: _Origin, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if len(idle) < MAX_IDLE_PER_ORIGIN:
                idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        with self._lock:
            for idle in self._idle.values():
                for connection in idle:
                    connection.close()
            self._idle.clear()


def _still_open(connection: http.client.HTTPConnection) -> bool:
    """An idle connection is usable only if the server has not closed (or written to) it."""
    sock = connection.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


class _Body(httpx.SyncByteStream):
    """A response body read in large pieces; the connection returns to the pool at its end."""

    def __init__(
        self,
        response: http.client.HTTPResponse,
        connection: http.client.HTTPConnection,
        origin: _Origin,
        pool: _Pool,
    ) -> None:
        self._response = response
        self._connection = connection
        self._origin = origin
        self._pool = pool
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            while chunk := self._piece():
                yield chunk
        except TimeoutError as exc:
            self.close()
            raise httpx.ReadTimeout(f"reading the body timed out: {exc}") from exc
        except http.client.IncompleteRead as exc:
            self.close()
            raise httpx.RemoteProtocolError(
                f"the server closed the connection {exc.expected} bytes before the end of the body"
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise httpx.ReadError(f"reading the body failed: {exc}") from exc
        # read(amt) returns b"" at end of stream even when bytes announced are missing.
        missing = self._response.length
        if missing:
            self.close()
            raise httpx.RemoteProtocolError(
                f"the server closed the connection {missing} bytes before the end of the body"
            )
        self._finish()

    def _piece(self) -> bytes:
        """Up to BODY_CHUNK bytes: what arrives within PIECE_SECONDS, at least one recv's worth."""
        parts: list[bytes] = []
        size = 0
        started = monotonic()
        while size < BODY_CHUNK:
            part = self._response.read1(BODY_CHUNK - size)
            if not part:
                break
            parts.append(part)
            size += len(part)
            if monotonic() - started >= PIECE_SECONDS:
                break
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        if self._response.will_close or not self._response.isclosed():
            self._connection.close()
        else:
            self._pool.give_back(self._origin, self._connection)

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._response.close()
            self._connection.close()


class BulkTransport(httpx.BaseTransport):
    """HTTP/1.1 with keep-alive and 1 MiB body reads (see the module docstring)."""

    def __init__(self) -> None:
        self._pool = _Pool()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        scheme = request.url.scheme
        port = request.url.port or (443 if scheme == "https" else 80)
        origin: _Origin = (scheme, request.url.host, port)
        connect_timeout, read_timeout, write_timeout = _timeouts(request)
        connection = self._pool.take(origin, connect_timeout)
        cancel = request.extensions.get(CANCEL_EXTENSION)
        try:
            if connection.sock is None:
                connection.connect()
            assert connection.sock is not None
            if isinstance(cancel, Cancel):
                cancel.attach(connection.sock)
            connection.sock.settimeout(write_timeout)
            self._send(connection, request)
            connection.sock.settimeout(read_timeout)
            response = connection.getresponse()
        except BaseException as exc:
            connection.close()
            raise _translate(exc, request) from exc
        headers = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in response.getheaders()
        ]
        return httpx.Response(
            status_code=response.status,
            headers=headers,
            stream=_Body(response, connection, origin, self._pool),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": response.reason.encode()},
        )

    @staticmethod
    def _send(connection: http.client.HTTPConnection, request: httpx.Request) -> None:
        target = request.url.raw_path.decode("ascii")
        connection.putrequest(request.method, target, skip_host=True, skip_accept_encoding=True)
        chunked = False
        for name, value in request.headers.raw:
            if name.lower() == b"transfer-encoding" and value.lower() == b"chunked":
                chunked = True
            connection.putheader(name.decode("latin-1"), value.decode("latin-1"))
        connection.endheaders()
        assert isinstance(request.stream, httpx.SyncByteStream)
        for chunk in request.stream:
            if not chunk:
                continue
            if chunked:
                connection.send(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            else:
                connection.send(chunk)
        if chunked:
            connection.send(b"0\r\n\r\n")

    def close(self) -> None:
        self._pool.close()


def _translate(exc: BaseException, request: httpx.Request) -> BaseException:
    """The httpx exception that stands for a failure of the standard library's client."""
    if isinstance(exc, httpx.HTTPError) or not isinstance(exc, Exception):
        return exc
    where = f"{request.method} {request.url.host}:{request.url.port}"
    if isinstance(exc, ConnectionRefusedError | socket.gaierror):
        return httpx.ConnectError(f"{where}: {exc}", request=request)
    if isinstance(exc, TimeoutError):
        return httpx.TimeoutException(f"{where}: timed out", request=request)
    if isinstance(exc, http.client.RemoteDisconnected | http.client.BadStatusLine):
        return httpx.RemoteProtocolError(f"{where}: {exc}", request=request)
    if isinstance(exc, OSError | http.client.HTTPException):
        return httpx.NetworkError(f"{where}: {exc}", request=request)
    return exc
