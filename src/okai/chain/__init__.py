"""The provenance registry on Flare (and on the local stack's anvil).

Reads go over plain JSON-RPC (`RegistryReader`); transactions through web3.py
(`RegistryClient`). Names are imported on first use: web3 takes seconds to import, and
`okai verify` must not pay for it (`import okai.chain.reader` loads no web3).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from okai.chain.artifact import Artifact, decode_revert, load_artifact
    from okai.chain.client import GAS_MARGIN, RegistryClient
    from okai.chain.deployments import deploy_registry, load_deployment, save_deployment
    from okai.chain.errors import (
        AlreadyWitnessed,
        ChainError,
        ImageExists,
        ImageNotRegistered,
        MissingField,
        ModelExists,
        ModelNotRecorded,
        RecordExists,
        RegistryError,
        RpcUnavailable,
        SignerError,
        StorageFailed,
        TooManyDatasets,
        TransactionDropped,
        TransactionReverted,
        WitnessIsSubmitter,
        WrongChainError,
    )
    from okai.chain.reader import RegistryReader
    from okai.chain.records import Deployment, ImageRecord, ModelRecord, Provenance, Transaction
    from okai.chain.rpc import RetryPolicy
    from okai.chain.signer import DEV_ADDRESS, DEV_PRIVATE_KEY, load_signer

_HOMES = {
    "Artifact": "okai.chain.artifact",
    "decode_revert": "okai.chain.artifact",
    "load_artifact": "okai.chain.artifact",
    "GAS_MARGIN": "okai.chain.client",
    "RegistryClient": "okai.chain.client",
    "deploy_registry": "okai.chain.deployments",
    "load_deployment": "okai.chain.deployments",
    "save_deployment": "okai.chain.deployments",
    "AlreadyWitnessed": "okai.chain.errors",
    "ChainError": "okai.chain.errors",
    "ImageExists": "okai.chain.errors",
    "ImageNotRegistered": "okai.chain.errors",
    "MissingField": "okai.chain.errors",
    "ModelExists": "okai.chain.errors",
    "ModelNotRecorded": "okai.chain.errors",
    "RecordExists": "okai.chain.errors",
    "RegistryError": "okai.chain.errors",
    "RpcUnavailable": "okai.chain.errors",
    "SignerError": "okai.chain.errors",
    "StorageFailed": "okai.chain.errors",
    "TooManyDatasets": "okai.chain.errors",
    "TransactionDropped": "okai.chain.errors",
    "TransactionReverted": "okai.chain.errors",
    "WitnessIsSubmitter": "okai.chain.errors",
    "WrongChainError": "okai.chain.errors",
    "Deployment": "okai.chain.records",
    "ImageRecord": "okai.chain.records",
    "ModelRecord": "okai.chain.records",
    "Provenance": "okai.chain.records",
    "Transaction": "okai.chain.records",
    "RetryPolicy": "okai.chain.rpc",
    "DEV_ADDRESS": "okai.chain.signer",
    "DEV_PRIVATE_KEY": "okai.chain.signer",
    "load_signer": "okai.chain.signer",
    "RegistryReader": "okai.chain.reader",
}
"""Where each public name lives."""


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'okai.chain' has no attribute {name!r}")
    return getattr(import_module(home), name)


__all__ = [
    "DEV_ADDRESS",
    "DEV_PRIVATE_KEY",
    "GAS_MARGIN",
    "AlreadyWitnessed",
    "Artifact",
    "ChainError",
    "Deployment",
    "ImageExists",
    "ImageNotRegistered",
    "ImageRecord",
    "MissingField",
    "ModelExists",
    "ModelNotRecorded",
    "ModelRecord",
    "Provenance",
    "RecordExists",
    "RegistryClient",
    "RegistryError",
    "RegistryReader",
    "RetryPolicy",
    "RpcUnavailable",
    "SignerError",
    "StorageFailed",
    "TooManyDatasets",
    "Transaction",
    "TransactionDropped",
    "TransactionReverted",
    "WitnessIsSubmitter",
    "WrongChainError",
    "decode_revert",
    "deploy_registry",
    "load_artifact",
    "load_deployment",
    "load_signer",
    "save_deployment",
]
