"""Test support for the chain tests: a real anvil on a free loopback port, and helpers.

Not a test module; the chain tests import it (`from chain_support import ...`).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount

from conftest import free_port
from okai.chain import RegistryClient, RetryPolicy
from okai.chain.dev import dev_network
from okai.chain.signer import DEV_PRIVATE_KEY
from okai.digest import Digest
from okai.manifest import blob_id_from_bytes32
from okai.nodetools import anvil_binary

ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
FAST_RETRY = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.05, request_timeout=5)


@contextmanager
def running_anvil() -> Iterator[str]:
    """Start anvil (cancun, chain 31337) on a free port; yield its URL; stop it."""
    port = free_port()
    process = subprocess.Popen(
        [
            str(anvil_binary()),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--hardfork",
            "cancun",
            "--chain-id",
            "31337",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if rpc(url, "eth_chainId", check=False) is not None:
                break
            if process.poll() is not None:
                raise RuntimeError("anvil exited while starting")
            time.sleep(0.05)
        else:
            raise RuntimeError("anvil did not answer within 30 s")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def rpc(url: str, method: str, *params: Any, check: bool = True) -> Any:
    """One raw JSON-RPC call (anvil_* and evm_* methods web3 does not wrap)."""
    try:
        reply = httpx.post(
            url,
            json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)},
            timeout=10,
        )
    except httpx.HTTPError:
        if check:
            raise
        return None
    body = reply.json()
    if check and "error" in body:
        raise RuntimeError(f"{method}: {body['error']}")
    return body.get("result")


def dev_account() -> LocalAccount:
    account: LocalAccount = Account.from_key(DEV_PRIVATE_KEY)
    return account


@cache
def account(index: int) -> LocalAccount:
    """anvil's funded account `index` (0 = the dev key), from its public mnemonic."""
    Account.enable_unaudited_hdwallet_features()
    found: LocalAccount = Account.from_mnemonic(
        ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}"
    )
    return found


def client_for(url: str, signer: LocalAccount | None = None, **options: Any) -> RegistryClient:
    """A dev-network client on `url` with fast retries; no registry address yet."""
    options.setdefault("retry", FAST_RETRY)
    options.setdefault("poll_interval", 0.05)
    return RegistryClient(dev_network(url), signer=signer or dev_account(), **options)


def deployed(url: str, signer: LocalAccount | None = None, **options: Any) -> RegistryClient:
    """A client pointed at a freshly deployed registry."""
    client = client_for(url, signer, **options)
    client.deploy()
    return client


def digest(seed: int | str) -> Digest:
    return Digest.of_bytes(str(seed).encode())


def blob_id(seed: int | str) -> str:
    return blob_id_from_bytes32(digest(f"blob:{seed}").to_bytes32())
