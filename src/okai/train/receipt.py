"""Measuring what goes into `receipt.json`: host identity, code, libraries, datasets.

The receipt document itself is `okai.provenance.receipt.Receipt` (`okai.receipt/v1`),
the input of `okai record`; this module only measures its parts on the node that
hosts rank 0. Timestamps live in the receipt and never in the model file.

Host identity: on an okai worker image, `/etc/okai/image.json` (written into
the image by its Nix build) gives the nixpkgs and flake revisions, and
`/run/current-system` the system toplevel actually running. Anywhere else the
receipt says `host: "unregistered host"` and `image: null`, explicitly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

import okai
from okai.digest import Digest
from okai.documents import document_error, read_document_if_exists
from okai.errors import DocumentError, UsageError
from okai.manifest import UNREGISTERED_HOST, BlobRef, JobSpec, ManifestRef, QuiltPatchRef
from okai.provenance import software
from okai.provenance.receipt import (
    ReceiptCode,
    ReceiptDataset,
    ReceiptImage,
)

IMAGE_FILE = Path("/etc/okai/image.json")
CURRENT_SYSTEM = Path("/run/current-system")
IMAGE_FILE_ENV = "OKAI_IMAGE_IDENTITY"
"""Another identity file for the workers to read (the node agent's `--image-identity`)."""
IMAGE_DIGEST_ENV = "OKAI_IMAGE_SHA256"
"""The image file's digest, which no image can hold itself: the node agent passes the one
the cluster names once it has matched the running system to that image (see `run_image`)."""
IMAGE_FLAKE_REVISION_ENV = "OKAI_IMAGE_FLAKE_REVISION"
"""The okai revision the image was built from, which images do not carry (it names a
commit, not content): the node agent passes the one in the image manifest the cluster
names, alongside the digest."""

__all__ = [
    "UNREGISTERED_HOST",
    "dataset_records",
    "host_identity",
    "library_versions",
    "okai_source",
    "run_image",
    "utc_now",
]


def utc_now() -> str:
    """The current time as ISO 8601 UTC with a `Z`, to the second."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def dataset_records(job: JobSpec) -> tuple[ReceiptDataset, ...]:
    """The job's datasets as used: each was verified against its digest before training."""
    records = []
    for index, ref in enumerate(job.datasets):
        if ref.sha256 is None:
            raise UsageError(
                f"dataset {index} has no sha256; okai trains only on data it can verify"
            )
        if isinstance(ref, ManifestRef):
            record = ReceiptDataset(
                ref="manifest", manifest_blob_id=ref.manifest_blob_id, sha256=ref.sha256
            )
        elif isinstance(ref, BlobRef):
            record = ReceiptDataset(ref="blob", blob_id=ref.blob_id, sha256=ref.sha256)
        elif isinstance(ref, QuiltPatchRef):
            record = ReceiptDataset(
                ref="quiltPatch", quilt_patch_id=ref.quilt_patch_id, sha256=ref.sha256
            )
        records.append(record)
    return tuple(records)


def okai_source() -> ReceiptCode:
    """The digest of okai's own Python source: the training code of built-in models."""
    root = Path(okai.__file__).parent
    files = sorted(root.rglob("*.py"))
    listing = [
        {"path": path.relative_to(root).as_posix(), "sha256": str(Digest.of_file(path))}
        for path in files
    ]
    return ReceiptCode(
        sha256=Digest.of_json(listing),
        description=f"okai {okai.__version__} package source ({len(files)} Python files)",
    )


def library_versions() -> dict[str, str]:
    """The software that decides the model's bytes (`okai.provenance.software`), and okai."""
    return {**software.measure(), "okai": okai.__version__}


def run_image(env: Mapping[str, str] = os.environ) -> ReceiptImage | None:
    """The image of this run, for the receipt: the identity the node reads from itself,
    with the image digest and flake revision its agent passed (`IMAGE_DIGEST_ENV`,
    `IMAGE_FLAKE_REVISION_ENV`) when the file has none.

    The digest is a claim the verifier checks: the registry maps it to a system toplevel,
    which must equal the one measured here (`image.registered`).
    """
    image = host_identity(Path(env.get(IMAGE_FILE_ENV) or IMAGE_FILE))
    if image is None:
        return None
    update: dict[str, str] = {}
    digest = env.get(IMAGE_DIGEST_ENV)
    if image.sha256 is None and digest:
        update["sha256"] = str(Digest.parse(digest))
    revision = env.get(IMAGE_FLAKE_REVISION_ENV)
    if image.flake_revision is None and revision:
        update["flake_revision"] = revision
    if not update:
        return image
    try:  # validated again, so a malformed value is refused like one from the file
        return ReceiptImage.model_validate({**image.model_dump(), **update})
    except ValueError as exc:
        raise UsageError(f"the image named by the node agent is malformed: {exc}") from exc


def host_identity(
    image_file: Path = IMAGE_FILE, current_system: Path = CURRENT_SYSTEM
) -> ReceiptImage | None:
    """The okai image this node runs, measured; None on an unregistered host."""
    data = read_document_if_exists(image_file, "json")
    if data is None:
        return None
    nixos = data.get("nixos")
    if not isinstance(nixos, dict):
        nixos = data
    # /run/current-system links straight to the running toplevel's store path.
    running = os.readlink(current_system) if current_system.is_symlink() else None
    toplevel = str(running) if running is not None else nixos.get("systemToplevel")
    if not isinstance(toplevel, str):
        raise DocumentError(
            image_file, "systemToplevel", f"missing, and {current_system} does not exist"
        )
    try:
        image = ReceiptImage(
            sha256=data.get("sha256"),
            system_toplevel=toplevel,
            nixpkgs_revision=nixos.get("nixpkgsRevision"),
            flake_revision=nixos.get("flakeRevision"),
        )
    except ValidationError as exc:
        raise document_error(exc, image_file) from exc
    return image
