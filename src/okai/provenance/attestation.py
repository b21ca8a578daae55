"""The run attestation: an in-toto Statement v1 with a SLSA Provenance v1 predicate.

Built from a run's `Receipt`; stored on Walrus as its canonical (RFC 8785) bytes, so the
SHA-256 of the blob is the attestation digest that goes on chain (`Digest.of_json`).

    {
      "_type": "https://in-toto.io/Statement/v1",
      "subject": [{"name": "<model file>", "digest": {"sha256": "<hex>"}}],
      "predicateType": "https://slsa.dev/provenance/v1",
      "predicate": {
        "buildDefinition": {
          "buildType": "https://okai.dev/provenance/training/v1",
          "externalParameters": {"job": <okai.job/v1 document>},
          "internalParameters": {"libraries": {...}, "worldSize": N, "nodes": N},
          "resolvedDependencies": [
            {"name": "image", "uri": "walrus://<manifest blob ID>", "digest": {"sha256": …},
             "annotations": {"systemToplevel", "systemToplevelDigest", "nixpkgsRevision",
                             "flakeRevision"}},          # only for a known image
            {"name": "dataset:0", "uri": "walrus://<blob ID>", "digest": {"sha256": …},
             "annotations": {"ref": "manifest" | "blob" | "quiltPatch"}}, …
            {"name": "code", "uri"?: "walrus://<entrypoint blob ID>", "digest": {…},
             "annotations": {"description": …}}
          ]
        },
        "runDetails": {
          "builder": {"id": "https://okai.dev/builders/<provider>/v1"},
          "metadata": {"invocationId": <run ID>, "startedOn": …, "finishedOn": …},
          "byproducts": [
            {"name": "metrics", "digest": {"sha256": <of canonical metrics>},
             "annotations": {<final metrics>}},
            {"name": "host", "annotations": {"identity": <store path> | "unregistered host"},
             "digest"?: {"sha256": <SHA-256 of the store path>}}
          ]
        }
      }
    }

Quilt patches use the URI `walrus-quilt-patch://<patch ID>`.
"""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AwareDatetime,
    BeforeValidator,
    Field,
    JsonValue,
    ValidationError,
    model_validator,
)

from okai.digest import ZERO_DIGEST, Digest, canonical_json
from okai.documents import document_error, require_object
from okai.errors import DocumentError, IntegrityError
from okai.manifest import (
    UNREGISTERED_HOST,
    EntrypointModel,
    JobSpec,
    JsonInt,
    Model,
)
from okai.provenance.receipt import (
    STORE_PATH_PATTERN,
    Receipt,
    check_datasets_match_job,
    system_toplevel_digest,
)
from okai.strict_json import parse_json_text

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://okai.dev/provenance/training/v1"
BUILDER_PREFIX = "https://okai.dev/builders/"
MAX_ATTESTATION_BYTES = 4 * 1024 * 1024
"""Larger blobs are refused before parsing: a job document is kilobytes."""

_DATASET_SCHEMES = {
    "manifest": "walrus://",
    "blob": "walrus://",
    "quiltPatch": "walrus-quilt-patch://",
}

Hex64 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]

MOMENT_PATTERN = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})", re.ASCII
)
"""RFC 3339 with a zone, one spelling: `T` and `Z` upper case, at most microseconds (the
page reads the same; pydantic alone also takes numbers, spaces and nanoseconds)."""


def _moment(value: Any) -> Any:
    if not isinstance(value, str) or not MOMENT_PATTERN.fullmatch(value):
        raise ValueError("not an RFC 3339 time such as 2026-01-01T12:00:00Z")
    return value


Moment = Annotated[AwareDatetime, BeforeValidator(_moment)]


class DigestSet(Model):
    sha256: Hex64


class ResourceDescriptor(Model):
    """An in-toto ResourceDescriptor (the subset okai writes)."""

    name: str = Field(min_length=1, max_length=200)
    uri: str | None = Field(default=None, max_length=500)
    digest: DigestSet | None = None
    annotations: dict[str, JsonValue] | None = None

    @model_validator(mode="after")
    def _locatable(self) -> Self:
        if self.uri is None and self.digest is None and not self.annotations:
            raise ValueError("a resource descriptor needs a uri, a digest or annotations")
        return self

    def sha256(self) -> Digest | None:
        return None if self.digest is None else Digest.parse(self.digest.sha256)


class Subject(Model):
    name: str = Field(min_length=1, max_length=4096)
    digest: DigestSet


class InternalParameters(Model):
    libraries: dict[str, str]
    world_size: JsonInt = Field(ge=1)
    nodes: JsonInt = Field(ge=1)


class ExternalParameters(Model):
    job: dict[str, JsonValue]


class BuildDefinition(Model):
    build_type: Literal["https://okai.dev/provenance/training/v1"]
    external_parameters: ExternalParameters
    internal_parameters: InternalParameters
    resolved_dependencies: tuple[ResourceDescriptor, ...]


class Builder(Model):
    id: str = Field(pattern=r"^https://okai\.dev/builders/[a-z][a-z0-9-]{0,31}/v1$")


class BuildMetadata(Model):
    invocation_id: str = Field(min_length=1, max_length=128)
    started_on: Moment
    finished_on: Moment


class RunDetails(Model):
    builder: Builder
    metadata: BuildMetadata
    byproducts: tuple[ResourceDescriptor, ...]


class Predicate(Model):
    build_definition: BuildDefinition
    run_details: RunDetails


class Statement(Model):
    """The statement exactly as serialised; `Attestation` adds meaning and checks."""

    type_: Literal["https://in-toto.io/Statement/v1"] = Field(alias="_type")
    subject: tuple[Subject, ...] = Field(min_length=1, max_length=1)
    predicate_type: Literal["https://slsa.dev/provenance/v1"]
    predicate: Predicate


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _descriptor(
    name: str,
    *,
    uri: str | None = None,
    digest: Digest | None = None,
    annotations: dict[str, Any] | None = None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name}
    if uri is not None:
        entry["uri"] = uri
    if digest is not None:
        entry["digest"] = {"sha256": digest.hex}
    if annotations:
        entry["annotations"] = annotations
    return entry


def _dependencies(receipt: Receipt) -> list[dict[str, Any]]:
    dependencies = []
    image = receipt.image
    if image is not None and image.sha256 is not None:
        annotations: dict[str, Any] = {}
        if image.system_toplevel is not None:
            annotations["systemToplevel"] = image.system_toplevel
            annotations["systemToplevelDigest"] = system_toplevel_digest(image.system_toplevel)
        if image.nixpkgs_revision is not None:
            annotations["nixpkgsRevision"] = image.nixpkgs_revision
        if image.flake_revision is not None:
            annotations["flakeRevision"] = image.flake_revision
        uri = None if image.manifest_blob_id is None else f"walrus://{image.manifest_blob_id}"
        dependencies.append(
            _descriptor("image", uri=uri, digest=Digest(image.sha256), annotations=annotations)
        )
    for index, dataset in enumerate(receipt.datasets):
        dependencies.append(
            _descriptor(
                f"dataset:{index}",
                uri=_DATASET_SCHEMES[dataset.ref] + dataset.locator,
                digest=Digest(dataset.sha256),
                annotations={"ref": dataset.ref},
            )
        )
    model = receipt.job.model
    code_uri = (
        f"walrus://{model.entrypoint_blob_id}" if isinstance(model, EntrypointModel) else None
    )
    dependencies.append(
        _descriptor(
            "code",
            uri=code_uri,
            digest=Digest(receipt.code.sha256),
            annotations={"description": receipt.code.description},
        )
    )
    return dependencies


def build_attestation(receipt: Receipt) -> Attestation:
    """The attestation of the run `receipt` describes (checked by parsing it back)."""
    identity = receipt.host_identity()
    host = _descriptor(
        "host",
        digest=None if identity == UNREGISTERED_HOST else system_toplevel_digest(identity),
        annotations={"identity": identity},
    )
    metrics = _descriptor(
        "metrics", digest=Digest.of_json(receipt.metrics), annotations=dict(receipt.metrics)
    )
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": receipt.model_file, "digest": {"sha256": receipt.model_sha256[7:]}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {"job": receipt.job.to_json()},
                "internalParameters": {
                    "libraries": dict(receipt.libraries),
                    "worldSize": receipt.world_size,
                    "nodes": receipt.nodes,
                },
                "resolvedDependencies": _dependencies(receipt),
            },
            "runDetails": {
                "builder": {"id": f"{BUILDER_PREFIX}{receipt.provider}/v1"},
                "metadata": {
                    "invocationId": receipt.run_id,
                    "startedOn": _utc(receipt.started_at),
                    "finishedOn": _utc(receipt.finished_at),
                },
                "byproducts": [metrics, host],
            },
        },
    }
    return Attestation.from_data(statement, f"attestation of run {receipt.run_id}")


class Attestation:
    """A validated run attestation: the statement plus what it says, as okai values."""

    def __init__(self, data: dict[str, Any], statement: Statement, job: JobSpec) -> None:
        self._data = data
        self.statement = statement
        self.job = job
        dependencies = {
            d.name: d for d in statement.predicate.build_definition.resolved_dependencies
        }
        self._dependencies = dependencies
        self._byproducts = {b.name: b for b in statement.predicate.run_details.byproducts}

    # -------------------------------------------------------------- construction

    @classmethod
    def from_data(cls, data: Any, source: str | Path) -> Attestation:
        """Validate a parsed JSON statement; errors name `source` and the field at fault."""
        try:
            statement = Statement.model_validate(require_object(data, source))
        except ValidationError as exc:
            raise document_error(exc, source) from exc
        build = statement.predicate.build_definition
        job = JobSpec.from_data(build.external_parameters.job, f"{source} (job)")
        attestation = cls(data, statement, job)
        attestation._check(source)
        return attestation

    def _check(self, source: str | Path) -> None:
        def fail(field: str, problem: str) -> DocumentError:
            return DocumentError(source, field, problem)

        build = self.statement.predicate.build_definition
        run = self.statement.predicate.run_details
        names = [d.name for d in build.resolved_dependencies]
        expected = (["image"] if "image" in names else []) + [
            f"dataset:{i}" for i in range(len(self.job.datasets))
        ]
        if names != [*expected, "code"]:
            raise fail(
                "predicate.buildDefinition.resolvedDependencies",
                f"expected {[*expected, 'code']}, got {names}",
            )
        for name in names:
            if self._dependencies[name].digest is None:
                raise fail(f"predicate.buildDefinition.resolvedDependencies.{name}", "no digest")
        used = []
        for index in range(len(self.job.datasets)):
            entry = self._dependencies[f"dataset:{index}"]
            ref = str((entry.annotations or {}).get("ref"))
            scheme = _DATASET_SCHEMES.get(ref, "?")
            uri = entry.uri or ""
            if not uri.startswith(scheme):
                raise fail(
                    f"predicate.buildDefinition.resolvedDependencies.dataset:{index}",
                    f"bad ref/uri {ref} {uri}",
                )
            used.append((ref, uri.removeprefix(scheme), str(entry.sha256())))
        try:
            check_datasets_match_job(self.job, used)
        except ValueError as exc:
            raise fail("predicate.buildDefinition.resolvedDependencies", str(exc)) from None
        if (
            isinstance(self.job.model, EntrypointModel)
            and self.code_digest != self.job.model.sha256
        ):
            raise fail(
                "predicate.buildDefinition.resolvedDependencies.code",
                "digest differs from the job's entrypoint",
            )
        image = self._dependencies.get("image")
        if image is not None and image.annotations and "systemToplevel" in image.annotations:
            toplevel = str(image.annotations["systemToplevel"])
            if image.annotations.get("systemToplevelDigest") != system_toplevel_digest(toplevel):
                raise fail(
                    "predicate.buildDefinition.resolvedDependencies.image",
                    "systemToplevelDigest does not match",
                )
        params = build.internal_parameters
        if (params.nodes, params.world_size) != (self.job.nodes, self.job.world_size):
            raise fail("predicate.buildDefinition.internalParameters", "differs from the job")
        if run.metadata.finished_on < run.metadata.started_on:
            raise fail("predicate.runDetails.metadata", "finishedOn is before startedOn")
        if sorted(b.name for b in run.byproducts) != ["host", "metrics"]:  # each once
            raise fail("predicate.runDetails.byproducts", "expected exactly 'metrics' and 'host'")
        metrics = self._byproducts["metrics"]
        try:
            measured: Digest | None = Digest.of_json(metrics.annotations or {})
        except Exception:  # NaN or out-of-range numbers have no canonical form
            measured = None
        if measured is None or metrics.sha256() != measured:
            raise fail("predicate.runDetails.byproducts.metrics", "digest does not match")
        host = self._byproducts["host"]
        identity = (host.annotations or {}).get("identity")
        if identity == UNREGISTERED_HOST:
            if host.digest is not None:
                raise fail("predicate.runDetails.byproducts.host", "unregistered host has a digest")
        elif not isinstance(identity, str) or not _is_store_path(identity):
            raise fail("predicate.runDetails.byproducts.host", f"bad identity {identity!r}")
        elif host.sha256() != system_toplevel_digest(identity):
            raise fail("predicate.runDetails.byproducts.host", "digest does not match identity")

    # -------------------------------------------------------------- serialisation

    def to_json(self) -> dict[str, Any]:
        return self._data

    def canonical_bytes(self) -> bytes:
        """The bytes stored on Walrus; their SHA-256 is `digest()`."""
        return canonical_json(self._data)

    def digest(self) -> Digest:
        return Digest.of_bytes(self.canonical_bytes())

    # -------------------------------------------------------------- what it says

    @property
    def model_file(self) -> str:
        return self.statement.subject[0].name

    @property
    def model_digest(self) -> Digest:
        return Digest.parse(self.statement.subject[0].digest.sha256)

    @property
    def job_digest(self) -> Digest:
        return self.job.digest()

    @property
    def dataset_digests(self) -> tuple[Digest, ...]:
        return tuple(
            Digest.parse(self._dependencies[f"dataset:{i}"].digest.sha256)  # type: ignore[union-attr]
            for i in range(len(self.job.datasets))
        )

    @property
    def image_digest(self) -> Digest | None:
        """The image's digest, or None when the run used no known image."""
        image = self._dependencies.get("image")
        return None if image is None else image.sha256()

    @property
    def chain_image_digest(self) -> Digest:
        """The image digest the registry record must hold (zero: unregistered host)."""
        return self.image_digest or ZERO_DIGEST

    @property
    def flake_revision(self) -> str | None:
        """The okai flake revision the image was built from, when the run names an image."""
        image = self._dependencies.get("image")
        revision = (image.annotations or {}).get("flakeRevision") if image else None
        return revision if isinstance(revision, str) else None

    @property
    def libraries(self) -> dict[str, str]:
        """The software identity measured on the node (`okai.provenance.software`)."""
        return dict(self.statement.predicate.build_definition.internal_parameters.libraries)

    @property
    def code_digest(self) -> Digest:
        code = self._dependencies["code"].sha256()
        assert code is not None
        return code

    @property
    def host_identity(self) -> str:
        """The system toplevel read on the node at run time, or 'unregistered host'."""
        return str((self._byproducts["host"].annotations or {})["identity"])

    @property
    def system_toplevel_digest(self) -> Digest | None:
        """SHA-256 of the host's toplevel store path (None for an unregistered host)."""
        return self._byproducts["host"].sha256()

    @property
    def metrics(self) -> dict[str, JsonValue]:
        return dict(self._byproducts["metrics"].annotations or {})

    @property
    def run_id(self) -> str:
        return self.statement.predicate.run_details.metadata.invocation_id

    @property
    def builder_id(self) -> str:
        return self.statement.predicate.run_details.builder.id


def _is_store_path(text: str) -> bool:
    return re.fullmatch(STORE_PATH_PATTERN, text) is not None


def parse_attestation(
    raw: bytes, source: str | Path, *, expected_digest: Digest | None = None
) -> Attestation:
    """Parse and validate stored attestation bytes.

    With `expected_digest` (the one on chain), bytes whose canonical form hashes to
    anything else raise `IntegrityError` before any field is trusted.
    """
    if len(raw) > MAX_ATTESTATION_BYTES:
        raise DocumentError(source, None, f"{len(raw)} bytes is too large for an attestation")
    data, problem = parse_json_text(raw)  # as the verifiers read it (okai.strict_json)
    if problem is not None:
        raise DocumentError(source, None, problem.text)
    if expected_digest is not None:
        actual = Digest.of_bytes(raw)
        if actual != expected_digest:
            # The same statement serialised differently still counts; uncanonicalisable
            # JSON (NaN, huge floats) keeps the digest of its raw bytes.
            with contextlib.suppress(Exception):
                actual = Digest.of_json(data)
            if actual != expected_digest:
                raise IntegrityError(f"attestation {source}", expected_digest, actual)
    return Attestation.from_data(data, source)
