"""The local Walrus-compatible server: publisher and aggregator on one loopback port.

It keeps blobs on disk and answers like the Walrus daemon (reference/walrus.md
section 10), with real Walrus blob IDs computed by the Node helper. Without
Node it refuses to start unless `fake_blob_ids` asks for a labelled stand-in
scheme (every answer then carries `X-Okai-Blob-Id-Scheme: okai-fake-sha256`).

In-process, for tests::

    with WalrusServer(tmp_path, fake_blob_ids=True).start() as server:
        server.faults.set(fail=2, fail_status=503)
        ... WalrusClient([server.url], server.url) ...

From the command line: `okai walrus serve --dir D --port P`.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from okai.errors import OperationalError
from okai.nodejs import ToolMissingError
from okai.walrus.blob_ids import BlobIdComputer, blob_ids_available
from okai.walrus.server.auth import JwtChecker, make_token
from okai.walrus.server.faults import Faults, FaultSettings
from okai.walrus.server.handler import App, WalrusHandler
from okai.walrus.server.storage import Storage

DEFAULT_MAX_BODY = 10 * 1024 * 1024
DEFAULT_MAX_QUILT_BODY = 100 * 1024 * 1024

__all__ = ["FaultSettings", "Faults", "WalrusServer", "make_token"]


class _HTTPServer(ThreadingHTTPServer):
    """A threading server that can also cut its open connections when stopped."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: App) -> None:
        self.app = app
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, WalrusHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up (a reader that gave up on a slow answer) is not a server fault.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def cut_connections(self) -> None:
        """Hang up on every client, as a process that dies would."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class WalrusServer:
    """The server; `start()` runs it in a thread, `serve_forever()` in the caller's."""

    def __init__(
        self,
        directory: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_body: int = DEFAULT_MAX_BODY,
        max_quilt_body: int = DEFAULT_MAX_QUILT_BODY,
        fake_blob_ids: bool = False,
        test_controls: bool = False,
        jwt_secret: str | None = None,
        log: bool = False,
        blob_ids: BlobIdComputer | None = None,
    ) -> None:
        if not fake_blob_ids and blob_ids is None and not blob_ids_available():
            raise ToolMissingError(
                "the local Walrus server computes real blob IDs with Node.js and "
                "@mysten/walrus-wasm, which are not installed",
                hint="run `make setup`, or pass --fake-blob-ids to use labelled stand-in IDs "
                "that no Walrus network accepts",
            )
        self._owns_blob_ids = blob_ids is None and not fake_blob_ids
        computer = None if fake_blob_ids else (blob_ids or BlobIdComputer.for_user())
        self.storage = Storage(Path(directory), fake_blob_ids=fake_blob_ids, blob_ids=computer)
        self._blob_ids = computer
        self.faults = Faults()
        app = App(
            storage=self.storage,
            faults=self.faults,
            max_body=max_body,
            max_quilt_body=max_quilt_body,
            test_controls=test_controls,
            jwt=JwtChecker(jwt_secret) if jwt_secret else None,
            log=log,
        )
        try:
            self._http = _HTTPServer((host, port), app)
        except OSError as exc:
            if self._owns_blob_ids and computer is not None:
                computer.close()
            raise OperationalError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                hint="choose another --port, or stop what listens there",
            ) from exc
        self._thread: threading.Thread | None = None
        self._stopped = False

    @property
    def port(self) -> int:
        return int(self._http.server_address[1])

    @property
    def url(self) -> str:
        host = str(self._http.server_address[0])
        return f"http://{host}:{self.port}"

    def start(self) -> WalrusServer:
        """Serve in a background thread; returns self."""
        self._thread = threading.Thread(
            target=self._http.serve_forever, name=f"walrus-server-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until `stop()` (from another thread or a signal handler)."""
        try:
            self._http.serve_forever()
        finally:
            self._close()

    def run_until_signalled(self) -> None:
        """Serve in this thread until SIGINT or SIGTERM, then close cleanly (the CLI's loop)."""

        def interrupt(signum: int, frame: object) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, interrupt)
        with contextlib.suppress(KeyboardInterrupt):
            self.serve_forever()

    def stop(self) -> None:
        """Stop accepting, hang up on clients, release the port; safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self.faults.release()  # a stalled read would hold up the shutdown
        self._http.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._close()

    def _close(self) -> None:
        self.faults.release()
        self._http.cut_connections()
        self._http.server_close()
        if self._owns_blob_ids and self._blob_ids is not None:
            self._blob_ids.close()

    def __enter__(self) -> WalrusServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
