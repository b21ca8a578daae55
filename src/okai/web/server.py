"""`okai web`: serve the built verification page on loopback.

The page needs no server of ours to be trusted: it talks to the chain RPC and a Walrus
aggregator straight from the browser, and works as plain static files from anywhere.
This server adds what static hosting cannot: the security headers (the
Content-Security-Policy also sits in the page's <meta>, but `frame-ancestors` only works
as a header) and `config.json`, the endpoints of the selected network as the CLI resolves
them, so `dev` points at the running local stack.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from okai.config import Network, load_settings
from okai.errors import OkaiError, OperationalError

# The same policy as the <meta> in web/index.html (a test keeps them equal), plus
# frame-ancestors, which browsers ignore in <meta>. docs/web.md explains each directive.
PAGE_CSP = (
    "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
    "img-src 'self'; font-src 'self'; "
    "connect-src 'self' https: http://127.0.0.1:* http://localhost:*; "
    "manifest-src 'self'; base-uri 'none'; form-action 'none'; object-src 'none'; "
    "require-trusted-types-for 'script'; trusted-types 'none'"
)
CSP_HEADER = PAGE_CSP + "; frame-ancestors 'none'"

SECURITY_HEADERS = {
    "Content-Security-Policy": CSP_HEADER,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}

MIME_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".wasm": "application/wasm",
    ".txt": "text/plain; charset=utf-8",
    ".map": "application/json",
}

CONFIG_SCHEMA = "okai.web-config/v1"
_REPO_DIST = Path(__file__).resolve().parents[3] / "web" / "dist"


class PageNotBuiltError(OperationalError):
    """The built page (web/dist) is missing."""


def dist_dir(explicit: Path | None = None) -> Path:
    """The built page: `explicit`, else OKAI_WEB_DIST, else web/dist of this checkout."""
    folder = explicit or Path(os.environ.get("OKAI_WEB_DIST") or _REPO_DIST)
    if not (folder / "index.html").is_file():
        raise PageNotBuiltError(
            f"the verification page is not built: {folder / 'index.html'} is missing",
            hint="run `make setup` (it runs `npm ci` and `npm run build` in web/)",
        )
    return folder


def page_config(network: Network) -> dict[str, Any]:
    """What the page reads as config.json: the selected network's endpoints."""
    entry: dict[str, Any] = {"rpcUrl": network.rpc_url}
    if network.walrus_aggregators:
        entry["aggregator"] = network.walrus_aggregators[0]
    if network.registry_address:
        entry["registryAddress"] = network.registry_address
    return {
        "schema": CONFIG_SCHEMA,
        "defaultNetwork": network.name,
        "networks": {network.name: entry},
    }


def settings_config(network_name: str | None) -> Callable[[], dict[str, Any]]:
    """config.json resolved afresh on each request, so a restarted dev stack is seen."""
    return lambda: page_config(load_settings(network_name).network)


class _Handler(BaseHTTPRequestHandler):
    server: WebServer
    server_version = "okai-web"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the page's own requests are not worth a line each."""

    def _send(self, status: int, body: bytes, content_type: str, cache: str) -> None:
        self.send_response(status)
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._send(status, message.encode() + b"\n", "text/plain; charset=utf-8", "no-store")

    def do_GET(self) -> None:
        path = unquote(urlsplit(self.path).path)
        if path == "/config.json":
            try:
                body = json.dumps(self.server.config()).encode()
            except OkaiError as exc:
                self._error(HTTPStatus.SERVICE_UNAVAILABLE, exc.message)
                return
            self._send(HTTPStatus.OK, body, "application/json", "no-store")
            return
        file = self.server.resolve(path)
        if file is None:
            self._error(HTTPStatus.NOT_FOUND, "not found")
            return
        # Hashed build assets never change; the page and icons are revalidated.
        cache = "public, max-age=31536000, immutable" if "/assets/" in path else "no-cache"
        content_type = MIME_TYPES.get(file.suffix.lower(), "application/octet-stream")
        self._send(HTTPStatus.OK, file.read_bytes(), content_type, cache)

    def do_HEAD(self) -> None:
        self.do_GET()

    def _not_allowed(self) -> None:
        self._error(HTTPStatus.METHOD_NOT_ALLOWED, "only GET and HEAD")

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed


class WebServer(ThreadingHTTPServer):
    """The page's static files plus config.json, on one address."""

    daemon_threads = True

    def __init__(
        self, host: str, port: int, dist: Path, config: Callable[[], dict[str, Any]]
    ) -> None:
        self.dist = dist.resolve()
        self.config = config
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        text = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{text}]" if ":" in text else text
        return f"http://{shown}:{port}/"

    def resolve(self, path: str) -> Path | None:
        """The file for a URL path, only inside the build folder and never a dotfile."""
        relative = path.lstrip("/") or "index.html"
        parts = relative.split("/")
        if any(part in ("", ".", "..") or part.startswith(".") for part in parts):
            return None
        candidate = (self.dist / relative).resolve()
        if not candidate.is_relative_to(self.dist) or not candidate.is_file():
            return None
        return candidate

    def start_in_thread(self) -> threading.Thread:
        """Serve in a daemon thread (tests, benchmarks); stop with `shutdown()`."""
        thread = threading.Thread(target=self.serve_forever, name="okai-web", daemon=True)
        thread.start()
        return thread
