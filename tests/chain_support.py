"""Test support for the chain tests: raw JSON-RPC, accounts, deployed registries.

The anvil they run against comes from `okai.dev.anvil.running_anvil`.

Not a test module; the chain tests import it (`from chain_support import ...`).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount

from okai.chain import RegistryClient, RetryPolicy
from okai.chain.dev import dev_network
from okai.chain.signer import DEV_PRIVATE_KEY
from okai.digest import Digest
from okai.manifest import blob_id_from_bytes32

ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
FAST_RETRY = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.05, request_timeout=5)


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
