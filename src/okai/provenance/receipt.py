"""`okai.receipt/v1`: what a training run reports about itself, written as `receipt.json`.

The training launcher writes one receipt per run into the run directory; `okai record`
turns it into the run attestation (`okai.provenance.attestation`) and the registry record.
Every field is measured, not configured: digests of the bytes actually used, the identity
the node read from its own system at run time, the library versions that were imported.

Example (the `image` of a node booted from a registered okai image; a host that ran no
registered image has `"host": "unregistered host"` instead)::

    {
      "schema": "okai.receipt/v1",
      "runId": "digits-20260101-120000",
      "provider": "local",
      "modelFile": "model.safetensors",
      "modelSha256": "sha256:…",
      "job": { "schema": "okai.job/v1", … },
      "jobSha256": "sha256:…",                     # = the job's canonical digest
      "datasets": [                                # one per job dataset, same order
        {"ref": "manifest", "manifestBlobId": "…", "sha256": "sha256:…"},
        {"ref": "blob", "blobId": "…", "sha256": "sha256:…"},
        {"ref": "quiltPatch", "quiltPatchId": "…", "sha256": "sha256:…"}
      ],
      "code": {"sha256": "sha256:…", "description": "okai 0.1.0 builtin model 'mlp'"},
      "image": {
        "sha256": "sha256:…", "manifestBlobId": "…",
        "systemToplevel": "/nix/store/…-nixos-system-okai-…",
        "nixpkgsRevision": "…40 hex…", "flakeRevision": "…"
      },
      "libraries": {"python": "3.12.3", "torch": "2.13.0", "okai": "0.1.0"},
      "worldSize": 4, "nodes": 2,
      "startedAt": "2026-01-01T12:00:00Z", "finishedAt": "2026-01-01T12:03:10Z",
      "metrics": {"loss": 0.12, "accuracy": 0.97, "steps": 300}
    }
"""

from __future__ import annotations

import json
import math
from typing import Annotated, ClassVar, Literal, Self

from pydantic import AwareDatetime, Field, model_validator

from okai.digest import ZERO_DIGEST, CanonicalJsonError, Digest, canonical_json
from okai.manifest import (
    UNREGISTERED_HOST,
    BlobId,
    BlobRef,
    DigestField,
    Document,
    EntrypointModel,
    JobSpec,
    ManifestRef,
    Model,
    QuiltPatchRef,
    SafePath,
)

STORE_PATH_PATTERN = r"^/nix/store/[0-9a-z]{32}-[^/]+$"
MetricValue = int | float | str | bool


class ReceiptDataset(Model):
    """One dataset as used: which reference it was, and the SHA-256 actually measured.

    For `manifest` the digest is the dataset manifest's canonical digest; for `blob` and
    `quiltPatch` (data okai never pushed) it is the SHA-256 of the bytes read.
    """

    ref: Literal["manifest", "blob", "quiltPatch"]
    manifest_blob_id: BlobId | None = None
    blob_id: BlobId | None = None
    quilt_patch_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,128}$")
    sha256: DigestField

    @model_validator(mode="after")
    def _one_locator(self) -> Self:
        present = {
            "manifest": self.manifest_blob_id,
            "blob": self.blob_id,
            "quiltPatch": self.quilt_patch_id,
        }
        wanted = {"manifest": "manifestBlobId", "blob": "blobId", "quiltPatch": "quiltPatchId"}
        if present[self.ref] is None:
            raise ValueError(f"a '{self.ref}' dataset needs '{wanted[self.ref]}'")
        extra = [wanted[kind] for kind, value in present.items() if kind != self.ref and value]
        if extra:
            raise ValueError(f"a '{self.ref}' dataset cannot also have {extra}")
        return self

    @property
    def locator(self) -> str:
        """The Walrus ID this dataset was read by."""
        value = self.manifest_blob_id or self.blob_id or self.quilt_patch_id
        assert value is not None
        return value


class ReceiptCode(Model):
    """The training code: for a job entrypoint, its SHA-256; for a builtin model, okai's."""

    sha256: DigestField
    description: str = Field(min_length=1, max_length=500)


class ReceiptImage(Model):
    """The worker image the nodes ran, and the identity each node read from itself.

    `sha256` is the image file's digest (its registry key) when the nodes know it;
    `systemToplevel` is what `/run/current-system` resolved to on the node at run time.
    """

    sha256: DigestField | None = None
    manifest_blob_id: BlobId | None = None
    system_toplevel: str | None = Field(default=None, pattern=STORE_PATH_PATTERN)
    nixpkgs_revision: str | None = Field(default=None, pattern=r"^[0-9a-f]{40}$")
    flake_revision: str | None = Field(default=None, min_length=1, max_length=200)


def _check_metrics(metrics: dict[str, MetricValue]) -> None:
    """Metrics must survive canonical JSON and back unchanged, or no digest can verify them."""
    for name, value in metrics.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"metric {name!r} is {value}; JSON has no NaN or infinity")
    try:
        # Parsed back, 1e16 becomes the integer 10**16, beyond what JSON numbers hold exactly.
        canonical_json(json.loads(canonical_json(metrics)))
    except CanonicalJsonError as exc:
        raise ValueError(
            f"metrics have no canonical JSON form (keep numbers within ±2**53): {exc}"
        ) from None


class Receipt(Document):
    """`okai.receipt/v1`: the facts of one training run (see the module docstring)."""

    KIND: ClassVar[str] = "receipt"

    run_id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,128}$")
    provider: str = Field(pattern=r"^[a-z][a-z0-9-]{0,31}$", description="local, fluence, …")
    model_file: SafePath
    model_sha256: DigestField
    job: JobSpec
    job_sha256: DigestField
    datasets: tuple[ReceiptDataset, ...] = Field(min_length=1)
    code: ReceiptCode
    image: ReceiptImage | None = None
    host: Literal["unregistered host"] | None = None
    libraries: dict[str, Annotated[str, Field(min_length=1, max_length=100)]] = Field(min_length=1)
    world_size: int = Field(ge=1)
    nodes: int = Field(ge=1)
    started_at: AwareDatetime
    finished_at: AwareDatetime
    metrics: dict[str, MetricValue] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.image is None) == (self.host is None):
            raise ValueError(f"give exactly one of 'image' or 'host' ('{UNREGISTERED_HOST}')")
        if self.job_sha256 != self.job.digest():
            raise ValueError(f"jobSha256 is not the job's digest ({self.job.digest()})")
        if (self.nodes, self.world_size) != (self.job.nodes, self.job.world_size):
            raise ValueError(
                f"nodes/worldSize {self.nodes}/{self.world_size} differ from the job's "
                f"{self.job.nodes}/{self.job.world_size}"
            )
        if self.finished_at < self.started_at:
            raise ValueError("finishedAt is before startedAt")
        _check_metrics(self.metrics)
        model = self.job.model
        if isinstance(model, EntrypointModel) and self.code.sha256 != model.sha256:
            raise ValueError("code.sha256 differs from the job entrypoint's sha256")
        check_datasets_match_job(self.job, [(d.ref, d.locator, d.sha256) for d in self.datasets])
        return self

    def chain_image_digest(self) -> Digest:
        """The image digest for the registry: the image's, or zero for an unregistered host."""
        if self.image is not None and self.image.sha256 is not None:
            return Digest(self.image.sha256)
        return ZERO_DIGEST

    def host_identity(self) -> str:
        """The system toplevel the node read at run time, or 'unregistered host'."""
        if self.image is not None and self.image.system_toplevel is not None:
            return self.image.system_toplevel
        return UNREGISTERED_HOST


def system_toplevel_digest(store_path: str) -> Digest:
    """The registry's identity of a NixOS system: SHA-256 of its toplevel store path.

    For `/nix/store/<hash>-nixos-system-okai-24.11` it is the digest of exactly those
    UTF-8 characters, no trailing newline; the store hash already pins the whole closure.
    """
    return Digest.of_bytes(store_path.encode("utf-8"))


def check_datasets_match_job(job: JobSpec, used: list[tuple[str, str, str]]) -> None:
    """Each (ref kind, Walrus ID, sha256) must be the job's dataset at that position."""
    if len(used) != len(job.datasets):
        raise ValueError(f"{len(used)} datasets reported, the job lists {len(job.datasets)}")
    for index, ((kind, locator, sha256), ref) in enumerate(zip(used, job.datasets, strict=True)):
        if isinstance(ref, ManifestRef):
            expected: tuple[str, str, str | None] = ("manifest", ref.manifest_blob_id, ref.sha256)
        elif isinstance(ref, BlobRef):
            expected = ("blob", ref.blob_id, ref.sha256)
        elif isinstance(ref, QuiltPatchRef):
            expected = ("quiltPatch", ref.quilt_patch_id, ref.sha256)
        if (kind, locator) != expected[:2]:
            raise ValueError(f"dataset {index} is {kind} {locator}, the job says {expected[:2]}")
        if expected[2] is not None and sha256 != expected[2]:
            raise ValueError(f"dataset {index} has sha256 {sha256}, the job expects {expected[2]}")
