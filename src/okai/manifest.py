"""The okai documents: dataset, image and job manifests.

Every document is JSON with a `schema` field `okai.<kind>/v<version>`, field
names in camelCase (as on the Walrus wire), and is identified by the SHA-256
of its canonical (RFC 8785) form. Loading checks the kind and version first,
then every field, and names the file and field of the first problem.
"""

from __future__ import annotations

import base64
import json
import re
from operator import attrgetter
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from okai.digest import Digest, DigestFormatError, canonical_json
from okai.documents import document_error, parse_document, read_document, require_object
from okai.errors import DocumentError

UNREGISTERED_HOST = "unregistered host"
"""The host identity of a run on a machine that booted no registered okai image."""

BLOB_ID_PATTERN = r"^[A-Za-z0-9_-]{43}$"
"""A Walrus blob ID: 32 bytes as URL-safe base64 without padding."""


def blob_id_to_bytes32(blob_id: str) -> bytes:
    """A Walrus blob ID as the 32 raw bytes stored on chain."""
    if not re.fullmatch(BLOB_ID_PATTERN, blob_id):
        raise ValueError(f"not a Walrus blob ID: {blob_id[:60]!r}")
    raw = base64.urlsafe_b64decode(blob_id + "=")
    if len(raw) != 32:
        raise ValueError(f"not a Walrus blob ID: {blob_id[:60]!r}")
    return raw


def blob_id_from_bytes32(raw: bytes) -> str:
    """The URL-safe base64 (unpadded) form of 32 raw blob-ID bytes."""
    if len(raw) != 32:
        raise ValueError(f"a blob ID has 32 bytes, got {len(raw)}")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


_CANONICAL_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def _digest(value: str) -> Digest:
    """A digest as documents write it: exactly `sha256:<64 lowercase hex>`.

    Documents are read by others (the verification page compares the text as it is), so
    no other spelling is normalised into this one.
    """
    if _CANONICAL_DIGEST.fullmatch(value):  # the common case, quickly
        return Digest(value)
    try:
        digest = Digest.parse(value)
    except DigestFormatError as exc:  # pydantic reports ValueError with the field's location
        raise ValueError(exc.message) from exc
    if digest != value:
        raise ValueError(f"{value[:80]!r} is not written sha256:<64 lowercase hex>")
    return digest


def _json_integer(value: Any) -> Any:
    """An integer as JSON carries it: a number with no fraction (5.0 is 5, as in JavaScript).

    Strings, booleans and fractions are refused rather than converted.
    """
    if type(value) is int:  # the common case first: a manifest has 100,000s of these
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("not an integer")
    return value


def _json_number(value: Any) -> Any:
    """A number as JSON carries it: strings and booleans are refused rather than converted."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("not a number")
    return value


DigestField = Annotated[str, AfterValidator(_digest)]
BlobId = Annotated[str, Field(pattern=BLOB_ID_PATTERN)]
JsonInt = Annotated[int, BeforeValidator(_json_integer)]
JsonNumber = Annotated[float, BeforeValidator(_json_number)]
RelativePath = Annotated[str, Field(min_length=1, max_length=4096)]
_SCHEMA_RE = re.compile(r"^okai\.(?P<kind>[a-z]+)/v(?P<version>[0-9]+)$")


_NO_SEGMENT = frozenset(("", ".", ".."))


def _safe_relative_path(value: str) -> str:
    """Reject paths that could escape the folder they are restored into, or that have
    another spelling (`a//b`, `./a`, `a/`): the page compares paths as written."""
    if not _NO_SEGMENT.isdisjoint(value.split("/")) or "\\" in value or "\x00" in value:
        raise ValueError(f"path must be relative and stay inside the dataset: {value!r}")
    return value


SafePath = Annotated[RelativePath, AfterValidator(_safe_relative_path)]


class Model(BaseModel):
    """Base of all okai documents: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Document(Model):
    """A top-level document with a versioned `schema` field."""

    KIND: ClassVar[str]
    VERSION: ClassVar[int] = 1

    schema_: str = Field(alias="schema")

    @classmethod
    def schema_id(cls) -> str:
        return f"okai.{cls.KIND}/v{cls.VERSION}"

    @model_validator(mode="before")
    @classmethod
    def _default_schema(cls, data: Any) -> Any:
        if isinstance(data, dict) and "schema" not in data and "schema_" not in data:
            return {"schema": cls.schema_id(), **data}
        return data

    def canonical_bytes(self) -> bytes:
        return canonical_json(self.to_json())

    def digest(self) -> Digest:
        return Digest.of_bytes(self.canonical_bytes())

    @classmethod
    def from_json_bytes(cls, raw: bytes, source: str | Path) -> Self:
        """Parse and validate; errors name `source` and the field at fault."""
        return cls.from_data(parse_document(raw, source, "json"), source)

    @classmethod
    def from_data(cls, data: Any, source: str | Path) -> Self:
        check_schema(require_object(data, source), cls.KIND, cls.VERSION, source)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise document_error(exc, source) from exc

    @classmethod
    def load(cls, path: str | Path) -> Self:
        return cls.from_data(read_document(path, "json"), path)

    def write(self, path: str | Path) -> None:
        """Write human-readable JSON; the digest is of the canonical form anyway."""
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")


def check_schema(data: dict[str, Any], kind: str, version: int, source: str | Path) -> None:
    declared = data.get("schema")
    if declared is None:
        raise DocumentError(source, "schema", f"missing; expected 'okai.{kind}/v{version}'")
    match = _SCHEMA_RE.match(declared) if isinstance(declared, str) else None
    if match is None:
        raise DocumentError(source, "schema", f"{declared!r} is not an okai schema identifier")
    if match["kind"] != kind:
        raise DocumentError(
            source, "schema", f"this is an okai.{match['kind']} document, expected okai.{kind}"
        )
    if int(match["version"]) != version:
        raise DocumentError(
            source,
            "schema",
            f"version v{match['version']} of okai.{kind} is not supported; "
            f"this okai reads v{version}",
        )
    if declared != f"okai.{kind}/v{version}":  # one spelling: no v01, no trailing newline
        raise DocumentError(source, "schema", f"{declared!r} is not 'okai.{kind}/v{version}'")


# ---------------------------------------------------------------- dataset


DataFormat = Literal["safetensors", "jsonl", "text", "parquet", "webdataset", "file"]
"""How a dataset file holds samples (see okai.formats and docs/data.md)."""


class DatasetShard(Model):
    """One stored blob: the bytes [offset, offset+size) of file `path`."""

    path: SafePath
    offset: JsonInt = Field(ge=0)
    size: JsonInt = Field(ge=0)
    sha256: DigestField
    blob_id: BlobId
    media_type: str = "application/octet-stream"
    first_sample: JsonInt | None = Field(
        default=None,
        ge=0,
        description="formats whose samples can span shards (jsonl, text, webdataset): "
        "the index in the file of the first sample that starts in this shard",
    )


class DatasetFile(Model):
    """One file of the dataset, reassembled from its shards in offset order."""

    path: SafePath
    size: JsonInt = Field(ge=0)
    sha256: DigestField
    media_type: str = "application/octet-stream"
    format: DataFormat | None = Field(
        default=None, description="recorded at push time; absent in manifests of older okai"
    )
    samples: JsonInt | None = Field(default=None, ge=0, description="samples in the file")


class DatasetTotals(Model):
    files: JsonInt = Field(ge=0)
    shards: JsonInt = Field(ge=0)
    bytes: JsonInt = Field(ge=0)


class DatasetManifest(Document):
    """`okai.dataset/v1`: a named set of files stored on Walrus as shards."""

    KIND: ClassVar[str] = "dataset"

    name: str = Field(min_length=1, max_length=200)
    # Stop at the first bad entry: a hostile manifest of 100,000 bad shards is refused in
    # the time of one, not of 100,000 error reports (the message names only the first).
    files: tuple[DatasetFile, ...] = Field(fail_fast=True)
    shards: tuple[DatasetShard, ...] = Field(fail_fast=True)
    totals: DatasetTotals

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        by_path: dict[str, list[DatasetShard]] = {}
        for shard in self.shards:
            by_path.setdefault(shard.path, []).append(shard)
        for file in self.files:
            if (file.format is None) != (file.samples is None):
                raise ValueError(f"file {file.path!r} has a format or a sample count, not both")
            pieces = sorted(by_path.pop(file.path, []), key=attrgetter("offset"))
            expected_offset = 0
            for shard in pieces:
                if shard.offset != expected_offset:
                    raise ValueError(
                        f"shards of {file.path!r} leave a gap or overlap at {expected_offset}"
                    )
                expected_offset += shard.size
            if expected_offset != file.size:
                raise ValueError(
                    f"shards of {file.path!r} add up to {expected_offset} bytes, not {file.size}"
                )
        if by_path:
            raise ValueError(f"shards refer to files not listed: {sorted(by_path)[:3]}")
        actual = DatasetTotals(
            files=len(self.files), shards=len(self.shards), bytes=sum(f.size for f in self.files)
        )
        if actual != self.totals:
            raise ValueError(
                f"totals do not match the files and shards: expected {actual.to_json()}"
            )
        return self


# ---------------------------------------------------------------- image


class NixosIdentity(Model):
    """What the Nix build says the image is."""

    system_toplevel: str = Field(pattern=r"^/nix/store/[0-9a-z]{32}-[^/]+$")
    nixpkgs_revision: str = Field(pattern=r"^[0-9a-f]{40}$")
    flake_revision: str = Field(min_length=1, description="git revision, or 'dirty-<narHash>'")


class PythonPackage(Model):
    """One Python package of the image: the locked wheel it was installed from."""

    name: str = Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=200)
    """As the lock writes it (PEP 503: lowercase, `-` between words)."""
    version: str = Field(min_length=1, max_length=100)
    sha256: DigestField
    """Of the wheel file (nix/python-packages.json, requirements.lock)."""


class ImagePython(Model):
    """The Python software of the image's okai (nix/package.nix's `pythonIdentity`)."""

    version: str = Field(min_length=1, max_length=100, description="interpreter version")
    packages: tuple[PythonPackage, ...] = Field(min_length=1, max_length=10_000)
    extra_packages: tuple[str, ...] = Field(
        default=(), max_length=10_000, description="those the image asked for besides okai's own"
    )

    @model_validator(mode="after")
    def _extras_are_packages(self) -> Self:
        names = [package.name for package in self.packages]
        if len(set(names)) != len(names):
            raise ValueError("a package is listed twice")
        missing = sorted(set(self.extra_packages) - set(names))
        if missing:
            raise ValueError(f"extra packages not among the packages: {missing[:3]}")
        return self


class ImageManifest(Document):
    """`okai.image/v1`: a worker VM image file and its NixOS identity."""

    KIND: ClassVar[str] = "image"

    file_name: str = Field(min_length=1, max_length=255)
    format: Literal["qcow2", "raw"]
    variant: Literal["qemu", "raw", "qemu-efi", "raw-efi"]
    size: JsonInt = Field(ge=0)
    sha256: DigestField
    blob_id: BlobId | None = None
    nixos: NixosIdentity
    python: ImagePython | None = None
    """Absent from manifests written before okai recorded it."""


# ---------------------------------------------------------------- job


class ManifestRef(Model):
    """A dataset pushed by okai: its manifest blob and the digest we trust."""

    manifest_blob_id: BlobId
    sha256: DigestField


class BlobRef(Model):
    """Data already on Walrus that okai never pushed: one raw blob."""

    blob_id: BlobId
    sha256: DigestField | None = None
    path: SafePath = "data.bin"


class QuiltPatchRef(Model):
    """Data already on Walrus that okai never pushed: one file of a quilt."""

    quilt_patch_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,128}$")
    sha256: DigestField | None = None
    path: SafePath = "data.bin"


DatasetRef = ManifestRef | BlobRef | QuiltPatchRef


class BuiltinModel(Model):
    builtin: str = Field(min_length=1)


class EntrypointModel(Model):
    """User training code stored on Walrus, pinned by digest."""

    entrypoint_blob_id: BlobId
    sha256: DigestField
    kind: Literal["file", "package"] = "file"
    function: str = Field(default="train", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    module: str | None = Field(
        default=None,
        max_length=200,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$",
        description="a package (a tar of a source tree): the module that defines `function`",
    )

    @model_validator(mode="after")
    def _module_for_packages(self) -> Self:
        if (self.kind == "package") != (self.module is not None):
            raise ValueError("a package entry point names its module; a file entry point does not")
        return self


class DdpSync(Model):
    """Gradients averaged over all ranks every step (PyTorch DDP): the default."""

    strategy: Literal["ddp"]


class DilocoSync(Model):
    """DiLoCo (Douillard et al. 2023): `inner_steps` local optimizer steps on each rank, then
    the ranks average their parameter change and an outer Nesterov SGD applies it."""

    strategy: Literal["diloco"]
    inner_steps: JsonInt = Field(default=100, ge=1, le=1_000_000)
    outer_lr: JsonNumber = Field(default=0.7, gt=0, le=10)
    outer_momentum: JsonNumber = Field(default=0.9, ge=0, lt=1)
    compression: Literal["none", "fp16", "bf16"] = "none"
    """The type the parameter changes travel in; `none` sends float32."""


class JobSpec(Document):
    """`okai.job/v1`: one serialisable description of a training run."""

    KIND: ClassVar[str] = "job"

    name: str = Field(min_length=1, max_length=200)
    model: BuiltinModel | EntrypointModel
    hyperparameters: dict[str, int | float | str | bool] = Field(default_factory=dict)
    # RFC 8785 numbers are IEEE doubles: larger integers have no canonical form.
    seed: JsonInt = Field(default=0, ge=0, le=2**53 - 1)
    deterministic: StrictBool = True
    datasets: tuple[DatasetRef, ...] = Field(min_length=1)
    nodes: JsonInt = Field(default=1, ge=1, le=1024)
    procs_per_node: JsonInt = Field(default=1, ge=1, le=256)
    checkpoint_every: JsonInt = Field(
        default=0, ge=0, description="steps between checkpoints; 0 = each epoch"
    )
    output_format: Literal["safetensors"] = "safetensors"
    sync: DdpSync | DilocoSync | None = None
    """How ranks synchronise; None is DDP (see `_ddp_is_the_default`)."""

    @field_validator("sync")
    @classmethod
    def _ddp_is_the_default(cls, sync: DdpSync | DilocoSync | None) -> DilocoSync | None:
        # Written out or not, DDP is one job: the canonical document (and so the digest
        # of every job made before `sync` existed) never names it.
        return None if isinstance(sync, DdpSync) else sync

    @property
    def world_size(self) -> int:
        return self.nodes * self.procs_per_node


DOCUMENT_TYPES: tuple[type[Document], ...] = (DatasetManifest, ImageManifest, JobSpec)
