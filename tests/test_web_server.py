"""`okai web`: the built page served with its security headers, MIME types and config.json."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import call_okai, run_okai
from okai.config import load_settings
from okai.web.server import CSP_HEADER, WebServer, dist_dir, page_config

REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def write_stack(home: Path) -> None:
    dev = home / ".okai" / "dev"
    dev.mkdir(parents=True, exist_ok=True)
    stack = {
        "services": {},
        "rpc_url": "http://127.0.0.1:18545",
        "walrus_url": "http://127.0.0.1:18546",
        "registry_address": REGISTRY,
    }
    (dev / "stack.json").write_text(json.dumps(stack), encoding="utf-8")


@pytest.fixture
def served(okai_home: Path) -> Iterator[str]:
    """`okai web --port 0` as a real subprocess; yields its URL."""
    write_stack(okai_home)
    process = subprocess.Popen(
        [sys.executable, "-m", "okai", "web", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert match, (
            f"no URL in {line!r}; stderr: {process.stderr.read() if process.stderr else ''}"
        )
        yield match[0]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def raw_get(url: str, path: str) -> int:
    """GET a path exactly as written (httpx would normalise the dots away)."""
    host, port = re.match(r"http://([^:]+):(\d+)/", url).groups()  # type: ignore[union-attr]
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


def test_the_page_is_served_with_a_strict_policy_and_right_types(served: str) -> None:
    page = httpx.get(served, timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["content-security-policy"] == CSP_HEADER
    assert "frame-ancestors 'none'" in CSP_HEADER
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["x-frame-options"] == "DENY"
    script = re.search(r'src="\./(assets/[^"]+\.js)"', page.text)
    style = re.search(r'href="\./(assets/[^"]+\.css)"', page.text)
    assert script and style, "the built page refers to its assets relatively"
    js = httpx.get(served + script[1], timeout=10)
    assert js.headers["content-type"] == "text/javascript; charset=utf-8"
    assert "immutable" in js.headers["cache-control"]
    assert httpx.get(served + style[1], timeout=10).headers["content-type"].startswith("text/css")
    assert httpx.get(served + "favicon.svg", timeout=10).headers["content-type"] == "image/svg+xml"
    assert httpx.head(served, timeout=10).status_code == 200
    assert "<script>" not in page.text  # no inline script in the built page


def test_config_json_points_dev_at_the_running_stack(served: str) -> None:
    reply = httpx.get(served + "config.json", timeout=10)
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["cache-control"] == "no-store"
    assert reply.json() == {
        "schema": "okai.web-config/v1",
        "defaultNetwork": "dev",
        "networks": {
            "dev": {
                "rpcUrl": "http://127.0.0.1:18545",
                "aggregator": "http://127.0.0.1:18546",
                "registryAddress": REGISTRY,
            }
        },
    }


def test_nothing_outside_the_build_is_served(served: str) -> None:
    for path in (
        "/../pyproject.toml",
        "/%2e%2e/pyproject.toml",
        "/assets/../../pyproject.toml",
        "/%2e%2e%2f%2e%2e%2fpyproject.toml",
        "/.vite/manifest.json",
        "//etc/passwd",
        "/nope.html",
    ):
        assert raw_get(served, path) == 404, path
    assert httpx.post(served, content=b"x", timeout=10).status_code == 405


def test_config_for_a_public_network_carries_its_settings(
    okai_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OKAI_REGISTRY", REGISTRY)
    config = page_config(load_settings("coston2").network)
    assert config["defaultNetwork"] == "coston2"
    assert config["networks"]["coston2"] == {
        "rpcUrl": "https://coston2-api.flare.network/ext/C/rpc",
        "aggregator": "https://aggregator.walrus-testnet.walrus.space",
        "registryAddress": REGISTRY,
    }


def test_a_broken_stack_file_is_a_503_not_a_crash(okai_home: Path) -> None:
    dev = okai_home / ".okai" / "dev"
    dev.mkdir(parents=True)
    (dev / "stack.json").write_text("{not json", encoding="utf-8")
    server = WebServer(
        "127.0.0.1", 0, dist_dir(), lambda: page_config(load_settings("dev").network)
    )
    server.start_in_thread()
    try:
        reply = httpx.get(server.url + "config.json", timeout=10)
        assert reply.status_code == 503 and "stack.json" in reply.text
        assert httpx.get(server.url, timeout=10).status_code == 200
    finally:
        server.shutdown()
        server.server_close()


def test_okai_web_without_a_build_says_how_to_get_one(okai_home: Path) -> None:
    empty = okai_home / "empty"
    empty.mkdir()
    result = call_okai("web", "--dist", str(empty), "--port", "0")
    assert result.returncode == 1
    assert "not built" in result.stderr and "make setup" in result.stderr


def test_okai_web_on_a_busy_port_says_so(okai_home: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = run_okai("web", "--port", str(busy.getsockname()[1]))
    assert result.returncode == 1
    assert "cannot listen" in result.stderr and "--port" in result.stderr
