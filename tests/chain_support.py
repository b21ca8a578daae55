"""Test support for the chain tests: raw JSON-RPC, accounts, deployed registries.

The anvil they run against comes from `okai.dev.anvil.running_anvil`.

Not a test module; the chain tests import it (`from chain_support import ...`).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import httpx
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from hexbytes import HexBytes

from okai.chain import RegistryClient, RetryPolicy
from okai.chain.dev import dev_network
from okai.chain.signer import DEV_PRIVATE_KEY
from okai.digest import Digest
from okai.manifest import blob_id_from_bytes32
from okai.tls import tls_context

ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
FAST_RETRY = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.05, request_timeout=5)


def rpc(url: str, method: str, *params: Any, check: bool = True) -> Any:
    """One raw JSON-RPC call (anvil_* and evm_* methods web3 does not wrap)."""
    try:
        reply = httpx.post(
            url,
            json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)},
            timeout=10,
            verify=tls_context(),
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


def _slot(*keys: Any) -> int:
    """The storage slot of a nested mapping entry: keys outermost first, slot last."""
    *path, slot = keys
    position = HexBytes(abi_encode(["uint256"], [slot]))
    for key in path:
        kind = "address" if isinstance(key, str) else "bytes32"
        position = HexBytes(keccak(abi_encode([kind], [key]) + position))
    return int.from_bytes(position, "big")


WITNESSES_SLOT = 4
"""`_witnesses` in ProvenanceRegistry's storage layout (images, publishers, models, claims)."""


def spam_witnesses(
    anvil_url: str, registry: str, model: Digest, submitter: str, count: int
) -> None:
    """`count` distinct witness accounts on one claim, written straight into storage.

    Sending 20,000 transactions would take minutes; `anvil_setStorageAt` in JSON-RPC
    batches writes exactly the state they would leave (checked through the views).
    """
    length_slot = _slot(model.to_bytes32(), submitter, WITNESSES_SLOT)
    first = int.from_bytes(keccak(length_slot.to_bytes(32, "big")), "big")
    writes = [(length_slot, count)]
    writes += [(first + i, 0x5000_0000 + i) for i in range(count)]
    for start in range(0, len(writes), 2000):
        batch = [
            {
                "jsonrpc": "2.0",
                "id": start + n,
                "method": "anvil_setStorageAt",
                "params": [registry, hex(slot), "0x" + value.to_bytes(32, "big").hex()],
            }
            for n, (slot, value) in enumerate(writes[start : start + 2000])
        ]
        replies = httpx.post(anvil_url, json=batch, timeout=60, verify=tls_context()).json()
        assert all("error" not in reply for reply in replies)
