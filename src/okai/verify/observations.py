"""What a verifier has observed: the inputs of the check rules, and what they still need.

The rules (`okai.verify.rules`) are pure functions of these values; the driver
(`okai.verify.driver`) fills them in by reading the chain and Walrus, or a test fills
them in from a shared vector.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from okai.chain.records import ImageRecord, ModelRecord
from okai.digest import Digest
from okai.verify.checks import Options

NeedKind = Literal["attestation", "dataset-manifest", "image-manifest", "data"]
"""What a needed blob is: how its bytes are checked, and which size limit bounds it."""
QUILT_PATCH_KEY = "by-quilt-patch-id/"
"""Blob keys of quilt patches: the aggregator path that reads them, as the page names them."""
QUILT_FILE_KEY = "by-quilt-id/"
"""Blob keys of quilt files: `by-quilt-id/<quilt ID>/<identifier>`, the identifier unescaped."""


def quilt_file_key(quilt_id: str, identifier: str) -> str:
    """The blob key of the file `identifier` of quilt `quilt_id` (a published image)."""
    return f"{QUILT_FILE_KEY}{quilt_id}/{identifier}"


def parse_quilt_file_key(key: str) -> tuple[str, str] | None:
    """(quilt ID, identifier) of a quilt file's blob key; None for any other key.

    A quilt ID is a blob ID, which holds no `/`: the identifier is all after the first.
    """
    if not key.startswith(QUILT_FILE_KEY):
        return None
    quilt_id, _, identifier = key.removeprefix(QUILT_FILE_KEY).partition("/")
    return (quilt_id, identifier) if quilt_id and identifier else None


@dataclass(frozen=True)
class NetworkId:
    """The selected network: its name and the chain ID its RPC must serve."""

    name: str
    chain_id: int


@dataclass(frozen=True)
class ModelInput:
    """Exactly one of: the digest computed from a file, a pasted digest, or a read error."""

    digest: Digest | None = None
    given: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class ChainAnswer:
    """The registry's answer: `record` None when the model is not recorded."""

    chain_id: int
    record: ModelRecord | None
    image: ImageRecord | None = None
    """The record's image, or None for an unregistered host (or an unregistered image)."""
    witnesses: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChainFailure:
    """The registry could not be read."""

    error: str


@dataclass(frozen=True)
class BlobRead:
    """A blob as read: its SHA-256 and size, and its bytes when the rules asked to keep them.

    A reader that verified the bytes against the expected digest while streaming and
    found another one reports that digest with no bytes: a mismatch needs nothing more.
    """

    digest: Digest
    size: int | None
    data: bytes | None = None
    source: str | None = None
    """The aggregator that served bytes with another digest than the expected one."""


@dataclass(frozen=True)
class BlobFailure:
    """A blob could not be read (not found, unreachable, too large)."""

    error: str
    unavailable: bool = True
    """True when the endpoints failed (retry later); False for a definitive bad answer."""


BlobObservation = BlobRead | BlobFailure


@dataclass(frozen=True)
class Need:
    """A blob the rules want read next."""

    key: str
    """A blob ID, `by-quilt-patch-id/<patch ID>`, or `by-quilt-id/<quilt ID>/<identifier>`."""
    keep: bool
    """Whether the rules need the bytes (documents), or only their digest and size (data)."""
    max_bytes: int | None
    """Refuse more than this; None when only the expected size bounds it."""
    label: str
    expected: Digest | None = None
    """What the rules will compare the bytes to, so a reader can check each answer before it
    takes it: the bytes' SHA-256 (kinds "attestation", "image-manifest" and "data": the image
    claim holds its manifest's SHA-256), or the SHA-256 of the canonical form of the JSON
    ("dataset-manifest")."""
    size: int | None = None
    """The size the rules expect, when a manifest gives it."""
    kind: NeedKind = "data"


@dataclass(frozen=True)
class Reproduction:
    """The outcome of re-running the job: the new model's digest, or why there is none."""

    digest: Digest | None = None
    error: str | None = None
    """Training was attempted and failed."""
    skipped: str | None = None
    """Training was not attempted, and why (no job to run)."""


@dataclass(frozen=True)
class Inputs:
    """Everything observed so far; None means "not read yet"."""

    options: Options
    network: NetworkId
    model: ModelInput | None = None
    chain: ChainAnswer | ChainFailure | None = None
    blobs: Mapping[str, BlobObservation] = field(default_factory=dict)
    reproduction: Reproduction | None = None
