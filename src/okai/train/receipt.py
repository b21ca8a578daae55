"""`receipt.json`: what a run used and produced, written by rank 0 when training ends.

The receipt binds the model file's digest to the digests of the job, the
datasets and the training code, the library versions, the world size, the
host identity and the times. It is the input of `okai record` (attestation and
registry record). Timestamps live here and never in the model file.

Host identity: on an okai worker image, `/etc/okai/image.json` (written into
the image by its Nix build) gives the nixpkgs and flake revisions, and
`/run/current-system` the system toplevel actually running. Anywhere else the
receipt says `host: "unregistered host"` and `image: null`, explicitly.
"""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

import okai
from okai.digest import Digest
from okai.errors import DocumentError
from okai.manifest import (
    BlobRef,
    DigestField,
    Document,
    JobSpec,
    ManifestRef,
    Model,
    QuiltPatchRef,
)

IMAGE_FILE = Path("/etc/okai/image.json")
CURRENT_SYSTEM = Path("/run/current-system")
OKAI_IMAGE = "okai image"
UNREGISTERED_HOST = "unregistered host"
TIMESTAMP_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$"


class DatasetRecord(Model):
    """One dataset the run read, as the job referenced it."""

    kind: Literal["manifest", "blob", "quiltPatch"]
    manifest_blob_id: str | None = None
    blob_id: str | None = None
    quilt_patch_id: str | None = None
    sha256: DigestField | None


class CodeRecord(Model):
    """The training code: okai's own source for a built-in model, else the entry point file."""

    sha256: DigestField
    description: str


class ImageRecord(Model):
    """The okai worker image the run ran on, as measured on the node."""

    sha256: DigestField | None
    system_toplevel: str
    nixpkgs_revision: str | None
    flake_revision: str | None


class Libraries(Model):
    python: str
    torch: str
    numpy: str
    okai: str


class RunMetrics(Model):
    final_loss: float | None
    test_accuracy: float | None
    samples_per_second: float | None


class Receipt(Document):
    """`okai.receipt/v1`."""

    KIND: ClassVar[str] = "receipt"

    run_id: str = Field(min_length=1, max_length=200)
    model_file: str
    model_sha256: DigestField
    job_sha256: DigestField
    job: dict[str, Any]
    datasets: tuple[DatasetRecord, ...]
    code: CodeRecord
    image: ImageRecord | None
    host: str
    libraries: Libraries
    world_size: int = Field(ge=1)
    nodes: int = Field(ge=1)
    procs_per_node: int = Field(ge=1)
    started_at: str = Field(pattern=TIMESTAMP_PATTERN)
    finished_at: str = Field(pattern=TIMESTAMP_PATTERN)
    metrics: RunMetrics

    def to_json(self) -> dict[str, Any]:
        # Keep nulls: "no image" and "no test accuracy" are statements, not omissions.
        return self.model_dump(mode="json", by_alias=True)


def utc_now() -> str:
    """The current time as ISO 8601 UTC with a `Z`, to the second."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def dataset_records(job: JobSpec) -> tuple[DatasetRecord, ...]:
    records = []
    for ref in job.datasets:
        if isinstance(ref, ManifestRef):
            records.append(
                DatasetRecord(
                    kind="manifest", manifest_blob_id=ref.manifest_blob_id, sha256=ref.sha256
                )
            )
        elif isinstance(ref, BlobRef):
            records.append(DatasetRecord(kind="blob", blob_id=ref.blob_id, sha256=ref.sha256))
        elif isinstance(ref, QuiltPatchRef):
            records.append(
                DatasetRecord(
                    kind="quiltPatch", quilt_patch_id=ref.quilt_patch_id, sha256=ref.sha256
                )
            )
    return tuple(records)


def okai_source() -> CodeRecord:
    """The digest of okai's own Python source: the training code of built-in models."""
    root = Path(okai.__file__).parent
    files = sorted(root.rglob("*.py"))
    listing = [
        {"path": path.relative_to(root).as_posix(), "sha256": str(Digest.of_file(path))}
        for path in files
    ]
    return CodeRecord(
        sha256=Digest.of_json(listing),
        description=f"okai {okai.__version__} package source ({len(files)} Python files)",
    )


def library_versions() -> Libraries:
    return Libraries(
        python=platform.python_version(),
        torch=metadata.version("torch"),
        numpy=metadata.version("numpy"),
        okai=okai.__version__,
    )


def host_identity(
    image_file: Path = IMAGE_FILE, current_system: Path = CURRENT_SYSTEM
) -> tuple[ImageRecord | None, str]:
    """(image, host): the okai image this runs on, or (None, "unregistered host")."""
    try:
        raw = image_file.read_bytes()
    except FileNotFoundError:
        return None, UNREGISTERED_HOST
    except OSError as exc:
        raise DocumentError(image_file, None, f"cannot read: {exc.strerror or exc}") from exc
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DocumentError(image_file, None, f"not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise DocumentError(image_file, None, "expected a JSON object")
    nixos = data.get("nixos")
    if not isinstance(nixos, dict):
        nixos = data
    running = current_system.resolve() if current_system.exists() else None
    toplevel = str(running) if running is not None else nixos.get("systemToplevel")
    if not isinstance(toplevel, str):
        raise DocumentError(
            image_file, "systemToplevel", f"missing, and {current_system} does not exist"
        )
    try:
        image = ImageRecord(
            sha256=data.get("sha256"),
            system_toplevel=toplevel,
            nixpkgs_revision=nixos.get("nixpkgsRevision"),
            flake_revision=nixos.get("flakeRevision"),
        )
    except ValueError as exc:
        raise DocumentError(image_file, None, str(exc)) from exc
    return image, OKAI_IMAGE
