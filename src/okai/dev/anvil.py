"""anvil, the local chain: its command line, and a throwaway one for tests and benchmarks."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from okai.nodejs import anvil_binary
from okai.processes import StackError
from okai.tls import tls_context


def anvil_argv(port: int, state: Path | None = None) -> list[str]:
    """anvil on loopback `port`: cancun, chain 31337; chain state kept in `state` if given."""
    argv = [
        str(anvil_binary()),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--hardfork",
        "cancun",
        "--chain-id",
        "31337",
    ]
    if state is not None:
        argv += ["--state", str(state), "--state-interval", "2"]
    return argv


def rpc_answers(url: str) -> bool:
    """True when a JSON-RPC node at `url` answers eth_chainId."""
    try:
        reply = httpx.post(
            url,
            json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
            timeout=2,
            verify=tls_context(),
        )
        return reply.status_code == 200 and "result" in reply.json()
    except (httpx.HTTPError, ValueError):
        return False


@contextmanager
def running_anvil(timeout: float = 30.0) -> Iterator[str]:
    """Start a fresh anvil with no saved state on a free port; yield its URL; stop it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    process = subprocess.Popen(
        anvil_argv(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while not rpc_answers(url):
            if process.poll() is not None:
                raise StackError("anvil exited while starting")
            if time.monotonic() >= deadline:
                raise StackError(f"anvil did not answer within {timeout:.0f} s")
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
