"""The registry of the local stack: deployed by `okai dev up`, kept while anvil's state is."""

from __future__ import annotations

from collections.abc import Callable

from eth_account import Account

from okai.chain.client import RegistryClient
from okai.chain.deployments import load_deployment, save_deployment
from okai.chain.records import Deployment
from okai.chain.signer import DEV_PRIVATE_KEY
from okai.config import PRESETS, Network


def dev_network(rpc_url: str) -> Network:
    """The `dev` network preset pointed at a running anvil."""
    return Network.model_validate({"name": "dev", **PRESETS["dev"], "rpc_url": rpc_url})


def ensure_dev_registry(
    rpc_url: str, on_event: Callable[[str], None] = lambda message: None
) -> Deployment:
    """Keep the saved dev registry if anvil still holds its code, else deploy a fresh one.

    Always signs with anvil's account 0, whatever OKAI_PRIVATE_KEY says: the local chain
    funds that account and no other.
    """
    network = dev_network(rpc_url)
    client = RegistryClient(network, signer=Account.from_key(DEV_PRIVATE_KEY))
    saved = load_deployment(network)
    if saved is not None and client.has_registry_code(saved.address):
        on_event(f"registry already deployed at {saved.address}")
        return saved
    if saved is not None:
        on_event(f"no current registry code at {saved.address} (chain reset or new contract)")
    deployment = client.deploy()
    save_deployment(network, deployment)
    on_event(f"registry deployed at {deployment.address} (block {deployment.block})")
    return deployment
