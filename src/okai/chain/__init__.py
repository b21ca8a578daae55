"""The provenance registry on Flare (and on the local stack's anvil), through web3.py."""

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
from okai.chain.records import Deployment, ImageRecord, ModelRecord, Provenance, Transaction
from okai.chain.rpc import RetryPolicy
from okai.chain.signer import DEV_ADDRESS, DEV_PRIVATE_KEY, load_signer

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
