"""What the registry holds, as Python values: digests as `Digest`, blob IDs as text.

On chain every digest is a `bytes32` and a Walrus blob ID its 32 raw bytes; these types
convert both ways so nothing else handles raw bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from okai.digest import ZERO_DIGEST, Digest
from okai.manifest import UNREGISTERED_HOST, blob_id_from_bytes32


def _timestamp(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


ZERO_ADDRESS = "0x" + "0" * 40


@dataclass(frozen=True)
class ImageRecord:
    """One account's claim about a worker image: `registrant` is the publisher."""

    image_digest: Digest
    system_toplevel: Digest
    manifest_blob_id: str
    manifest_sha256: Digest
    registrant: str
    registered_at: int

    @classmethod
    def from_chain(cls, image_digest: Digest, value: Any) -> ImageRecord:
        toplevel, blob, manifest_sha256, registrant, registered_at = value
        return cls(
            image_digest=image_digest,
            system_toplevel=Digest.from_bytes32(toplevel),
            manifest_blob_id=blob_id_from_bytes32(blob),
            manifest_sha256=Digest.from_bytes32(manifest_sha256),
            registrant=registrant,
            registered_at=int(registered_at),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "imageDigest": self.image_digest,
            "systemToplevel": self.system_toplevel,
            "manifestBlobId": self.manifest_blob_id,
            "manifestSha256": self.manifest_sha256,
            "registrant": self.registrant,
            "registeredAt": _timestamp(self.registered_at),
        }


@dataclass(frozen=True)
class ModelRecord:
    """The provenance record of a model, exactly as the registry returns it."""

    model_digest: Digest
    image_digest: Digest
    dataset_digests: tuple[Digest, ...]
    job_digest: Digest
    attestation_digest: Digest
    attestation_blob_id: str
    submitter: str
    recorded_at: int

    @property
    def unregistered_host(self) -> bool:
        """True when the model was trained on a host that ran no registered image."""
        return self.image_digest == ZERO_DIGEST

    @classmethod
    def from_chain(cls, model_digest: Digest, value: Any) -> ModelRecord:
        image, datasets, job, attestation, blob, submitter, recorded_at = value
        return cls(
            model_digest=model_digest,
            image_digest=Digest.from_bytes32(image),
            dataset_digests=tuple(Digest.from_bytes32(d) for d in datasets),
            job_digest=Digest.from_bytes32(job),
            attestation_digest=Digest.from_bytes32(attestation),
            attestation_blob_id=blob_id_from_bytes32(blob),
            submitter=submitter,
            recorded_at=int(recorded_at),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "modelDigest": self.model_digest,
            "imageDigest": None if self.unregistered_host else self.image_digest,
            "host": UNREGISTERED_HOST if self.unregistered_host else "registered image",
            "datasetDigests": list(self.dataset_digests),
            "jobDigest": self.job_digest,
            "attestationDigest": self.attestation_digest,
            "attestationBlobId": self.attestation_blob_id,
            "submitter": self.submitter,
            "recordedAt": _timestamp(self.recorded_at),
        }


@dataclass(frozen=True)
class Provenance:
    """One model claim, the image claims of the publishers asked about, and its witnesses.

    `images` holds only the publishers that registered the claim's image (none for an
    unregistered host); `witnesses` only the accounts asked about that did witness it;
    `witness_count` counts every witness of the claim.
    """

    model: ModelRecord
    images: tuple[ImageRecord, ...]
    witnesses: tuple[str, ...]
    witness_count: int

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model.to_json(),
            "images": [image.to_json() for image in self.images],
            "witnesses": list(self.witnesses),
            "witnessCount": self.witness_count,
        }


@dataclass(frozen=True)
class Transaction:
    """A transaction the client sent: its hash, and once mined, block and gas used."""

    tx_hash: str
    nonce: int
    description: str
    block: int | None = None
    gas_used: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"txHash": self.tx_hash, "block": self.block, "gasUsed": self.gas_used}


@dataclass(frozen=True)
class Deployment:
    """Where the registry lives on one network."""

    address: str
    chain_id: int
    tx_hash: str
    block: int

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "chainId": self.chain_id,
            "txHash": self.tx_hash,
            "block": self.block,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Deployment:
        return cls(
            address=str(data["address"]),
            chain_id=int(data["chainId"]),
            tx_hash=str(data["txHash"]),
            block=int(data["block"]),
        )
