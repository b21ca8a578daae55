"""Errors of the chain client.

    ChainError (OperationalError, exit 1)    the node or the transaction failed
    ├── RpcUnavailable                       the RPC endpoint kept failing after retries
    ├── TransactionDropped                   no receipt arrived within the timeout
    └── TransactionReverted                  mined but reverted, without a registry reason
    WrongChainError (ConfigError, exit 2)    the RPC serves another chain than the network's
    SignerError (ConfigError, exit 2)        no usable key, or the dev key off the dev network
    RegistryError (UsageError, exit 2)       the registry refused: a custom error, decoded
    ├── RecordExists                         write-once per claim: ImageExists, ModelExists
    ├── ImageNotRegistered, ModelNotRecorded
    ├── MissingField, TooManyDatasets
    ├── WitnessIsSubmitter, AlreadyWitnessed
    └── StorageFailed

Each RegistryError subclass matches one `ProvenanceRegistry<Name>` error of the contract
and carries its arguments as attributes (digests as `Digest`, addresses checksummed).
"""

from __future__ import annotations

from typing import Any, ClassVar

from okai.digest import Digest
from okai.errors import ConfigError, OperationalError, UsageError

ZERO_ADDRESS = "0x" + "0" * 40


class ChainError(OperationalError):
    """Talking to the chain failed."""


class RpcUnavailable(ChainError):
    """The RPC endpoint did not answer usefully, even after retries."""


class TransactionDropped(ChainError):
    """A sent transaction got no receipt within the timeout."""

    def __init__(self, tx_hash: str, waited: float, *, pending: bool, link: str | None) -> None:
        self.tx_hash = tx_hash
        state = "is still pending" if pending else "is no longer known to the node (dropped)"
        super().__init__(
            f"transaction {tx_hash} was not mined within {waited:.0f} s and {state}",
            hint=(f"check {link}; " if link else "")
            + "run the command again: records are write-once, so nothing is duplicated",
        )


class TransactionReverted(ChainError):
    """A transaction was mined but reverted, and the replay gave no registry error."""

    def __init__(self, tx_hash: str, detail: str) -> None:
        self.tx_hash = tx_hash
        super().__init__(f"transaction {tx_hash} reverted: {detail}")


class WrongChainError(ConfigError):
    """The RPC endpoint serves a different chain than the selected network."""

    def __init__(self, network: str, expected: int, actual: int, rpc_url: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"network {network} expects chain ID {expected}, but {rpc_url} serves chain {actual}",
            hint="check --network, OKAI_RPC_URL and okai.toml; nothing was sent",
        )


class SignerError(ConfigError):
    """No usable signing key (the message never contains key material)."""


class RegistryError(UsageError):
    """The registry contract refused the call with one of its custom errors."""

    contract_error: ClassVar[str] = ""
    """The Solidity error name without the `ProvenanceRegistry` prefix."""

    def __init__(self, message: str, args: dict[str, Any]) -> None:
        self.values = args
        super().__init__(message)


class RecordExists(RegistryError):
    """A write-once record already exists."""


class ImageExists(RecordExists):
    contract_error = "ImageExists"

    def __init__(self, image_digest: Digest, publisher: str) -> None:
        self.image_digest = image_digest
        self.publisher = publisher
        super().__init__(
            f"{publisher} already registered image {image_digest} (each claim is write-once)",
            {"imageDigest": image_digest, "publisher": publisher},
        )


class ModelExists(RecordExists):
    contract_error = "ModelExists"

    def __init__(self, model_digest: Digest, submitter: str) -> None:
        self.model_digest = model_digest
        self.submitter = submitter
        super().__init__(
            f"{submitter} already recorded model {model_digest} (each claim is write-once)",
            {"modelDigest": model_digest, "submitter": submitter},
        )


class ImageNotRegistered(RegistryError):
    contract_error = "ImageNotRegistered"

    def __init__(self, image_digest: Digest, publisher: str = ZERO_ADDRESS) -> None:
        self.image_digest = image_digest
        self.publisher = publisher
        by = "any account" if publisher == ZERO_ADDRESS else publisher
        super().__init__(
            f"image {image_digest} is not registered by {by}",
            {"imageDigest": image_digest, "publisher": publisher},
        )


class ModelNotRecorded(RegistryError):
    contract_error = "ModelNotRecorded"

    def __init__(self, model_digest: Digest, submitter: str) -> None:
        self.model_digest = model_digest
        self.submitter = submitter
        super().__init__(
            f"{submitter} has not recorded model {model_digest}",
            {"modelDigest": model_digest, "submitter": submitter},
        )


class MissingField(RegistryError):
    contract_error = "MissingField"

    def __init__(self, field: str) -> None:
        self.field = field
        super().__init__(f"the registry requires '{field}' to be set (non-zero)", {"field": field})


class TooManyDatasets(RegistryError):
    contract_error = "TooManyDatasets"

    def __init__(self, count: int, maximum: int) -> None:
        self.count = count
        self.maximum = maximum
        super().__init__(
            f"a model record lists at most {maximum} datasets, not {count}",
            {"count": count, "maximum": maximum},
        )


class WitnessIsSubmitter(RegistryError):
    contract_error = "WitnessIsSubmitter"

    def __init__(self, model_digest: Digest, witness: str) -> None:
        self.model_digest = model_digest
        self.witness = witness
        super().__init__(
            f"{witness} recorded model {model_digest}, so it cannot witness its own claim",
            {"modelDigest": model_digest, "witness": witness},
        )


class AlreadyWitnessed(RegistryError):
    contract_error = "AlreadyWitnessed"

    def __init__(self, model_digest: Digest, witness: str) -> None:
        self.model_digest = model_digest
        self.witness = witness
        super().__init__(
            f"{witness} has already witnessed this claim on model {model_digest}",
            {"modelDigest": model_digest, "witness": witness},
        )


class StorageFailed(RegistryError):
    contract_error = "StorageFailed"

    def __init__(self, model_digest: Digest) -> None:
        self.model_digest = model_digest
        super().__init__(
            f"the registry could not store the record of model {model_digest}",
            {"modelDigest": model_digest},
        )


REGISTRY_ERRORS: tuple[type[RegistryError], ...] = (
    ImageExists,
    ModelExists,
    ImageNotRegistered,
    ModelNotRecorded,
    MissingField,
    TooManyDatasets,
    WitnessIsSubmitter,
    AlreadyWitnessed,
    StorageFailed,
)
"""Every decoded contract error; a test checks this matches the artifact's ABI exactly."""
