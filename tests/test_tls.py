"""HTTPS through okai's clients: one shared TLS context, and a server it does not trust refused.

A real TLS server on loopback with a self-signed certificate (openssl). The context is
built once per process; these tests rebuild it around SSL_CERT_FILE and leave the
default one behind.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from chain_support import FAST_RETRY
from okai.chain.errors import RpcUnavailable
from okai.chain.rpc import JsonRpc
from okai.tls import tls_context
from okai.walrus.transport import BulkTransport


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, and its key."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def https_url(certificate: tuple[Path, Path]) -> Iterator[str]:
    """An HTTPS server answering every POST with a JSON-RPC result, every GET with b"OK"."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return None

        def do_GET(self) -> None:
            self._reply(b"OK")

        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self._reply(
                json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": "0xe"}).encode()
            )

        def _reply(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def trusting(certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's context rebuilt to trust the test certificate (as SSL_CERT_FILE says)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    tls_context.cache_clear()
    yield
    monkeypatch.delenv("SSL_CERT_FILE")
    tls_context.cache_clear()


def test_the_context_is_built_once_and_shared() -> None:
    assert tls_context() is tls_context()


@pytest.mark.usefixtures("trusting")
def test_the_chain_and_walrus_clients_speak_https_to_a_server_the_context_trusts(
    https_url: str,
) -> None:
    assert JsonRpc(https_url, FAST_RETRY).request("eth_chainId", [])["result"] == "0xe"
    with httpx.Client(transport=BulkTransport()) as client:
        assert client.get(f"{https_url}/status").content == b"OK"


def test_a_server_whose_certificate_no_ca_vouches_for_is_refused(https_url: str) -> None:
    tls_context.cache_clear()  # the default: certifi's CAs, which never signed this one
    with pytest.raises(RpcUnavailable, match="failed eth_chainId 3 times; last: ConnectError"):
        JsonRpc(https_url, FAST_RETRY).request("eth_chainId", [])
    with (
        httpx.Client(transport=BulkTransport()) as client,
        pytest.raises(httpx.NetworkError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        client.get(f"{https_url}/status")
