"""The check rules of docs/verification.md as one pure function: no network, no clock.

`evaluate(inputs)` turns what has been observed so far into a status for every check,
the facts to show, and the blobs it still needs. The driver loops: read what is
needed, evaluate again. web/src/rules.js is the same algorithm for the page, and
tests/vectors/verify pins both to the same statuses.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from okai.chain.records import ImageRecord, ModelRecord
from okai.digest import ZERO_DIGEST, Digest, DigestFormatError
from okai.errors import OkaiError
from okai.manifest import (
    UNREGISTERED_HOST,
    BlobRef,
    DatasetManifest,
    ImageManifest,
    JobSpec,
    ManifestRef,
    QuiltPatchRef,
)
from okai.provenance.attestation import MAX_ATTESTATION_BYTES, Attestation
from okai.provenance.receipt import system_toplevel_digest
from okai.verify.checks import (
    FAILED,
    PASSED,
    PENDING,
    Check,
    Options,
    Verdict,
    failed,
    not_checked,
    passed,
    pending,
    verdict,
)
from okai.verify.observations import (
    QUILT_PATCH_KEY,
    BlobFailure,
    BlobObservation,
    BlobRead,
    ChainAnswer,
    ChainFailure,
    Inputs,
    Need,
    quilt_file_key,
)

MAX_MANIFEST_BYTES = 32 << 20
"""The most bytes of a dataset or image manifest held in memory to parse."""


@dataclass(frozen=True)
class AttestedDataset:
    """One dataset as the attestation names it."""

    index: int
    kind: str
    """manifest, blob or quiltPatch."""
    locator: str
    key: str
    """The blob key that reads it (see `Need.key`)."""
    digest: Digest


@dataclass(frozen=True)
class Attested:
    """What a well-formed recorded attestation says, as the rules compare it."""

    attestation: Attestation
    job: JobSpec
    job_digest: Digest
    """SHA-256 of the canonical job exactly as the attestation carries it."""
    datasets: tuple[AttestedDataset, ...]
    image_digest: Digest
    """The image dependency's digest, or the zero digest when the run names no image."""
    system_toplevel: str | None
    """The host identity read on the node: a store path, or None for an unregistered host."""


@dataclass
class DatasetFact:
    """A dataset for display, with its manifest once that checked out."""

    index: int
    kind: str
    locator: str
    digest: Digest
    manifest: DatasetManifest | None = None


@dataclass(frozen=True)
class ImageManifestFact:
    """The image manifest read from Walrus (display, and the locator of the image bytes)."""

    state: str
    """ok, pending or error."""
    error: str | None = None
    manifest: ImageManifest | None = None
    consistent: bool = False
    """Whether it describes the registered image (digest and system toplevel)."""
    unavailable: bool = False


@dataclass
class Facts:
    """What the checks established or read, for the report."""

    model_digest: Digest | None = None
    record: ModelRecord | None = None
    image: ImageRecord | None = None
    witnesses: tuple[str, ...] = ()
    attested: Attested | None = None
    datasets: list[DatasetFact] = field(default_factory=list)
    image_manifest: ImageManifestFact | None = None


@dataclass
class Evaluation:
    """The checks (every id), the facts, the reads still needed, and the verdict."""

    checks: dict[str, Check]
    facts: Facts
    needs: list[Need]
    verdict: Verdict


class _Needs:
    def __init__(self, blobs: dict[str, BlobObservation]) -> None:
        self.blobs = blobs
        self.list: list[Need] = []

    def __call__(self, need: Need) -> None:
        if need.key not in self.blobs and all(n.key != need.key for n in self.list):
            self.list.append(need)


def _state(blobs: dict[str, BlobObservation], key: str) -> str:
    blob = blobs.get(key)
    if blob is None:
        return "pending"
    return "error" if isinstance(blob, BlobFailure) else "ok"


def _read(blobs: dict[str, BlobObservation], key: str) -> BlobRead:
    blob = blobs[key]
    assert isinstance(blob, BlobRead)
    return blob


def _failure(blobs: dict[str, BlobObservation], key: str) -> BlobFailure:
    blob = blobs[key]
    assert isinstance(blob, BlobFailure)
    return blob


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(data: bytes | None) -> tuple[Any, str | None]:
    """(value, None) or (None, why not): strict UTF-8 and strict JSON (no NaN, as browsers)."""
    if data is None:
        return None, "not available"
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_no_constants), None
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except ValueError:
        return None, "not valid JSON"


def parse_digest(text: str) -> Digest | None:
    try:
        return Digest.parse(text)
    except DigestFormatError:
        return None


def evaluate(inputs: Inputs) -> Evaluation:
    """Every check's status for what has been observed so far (see the module docstring)."""
    options = inputs.options
    blobs = dict(inputs.blobs)
    checks: dict[str, Check] = {}
    facts = Facts()
    need = _Needs(blobs)

    # model.digest
    model_digest: Digest | None = None
    model = inputs.model
    if model is None:
        checks["model.digest"] = pending("model.digest", "hashing the model file")
    elif model.error is not None:
        checks["model.digest"] = failed(
            "model.digest", f"cannot read the model file: {model.error}", unavailable=True
        )
    elif model.digest is not None:
        model_digest = model.digest
        checks["model.digest"] = passed("model.digest", "SHA-256 of the model file, computed here")
    else:
        model_digest = parse_digest(model.given or "")
        checks["model.digest"] = (
            passed("model.digest", "digest given, not computed from a file")
            if model_digest is not None
            else failed("model.digest", "not a SHA-256 digest (want sha256:<64 hex>)")
        )
    facts.model_digest = model_digest

    # record.exists
    record: ModelRecord | None = None
    chain = inputs.chain
    check_id = "record.exists"
    if model_digest is None:
        checks[check_id] = not_checked(check_id, "no model digest")
    elif chain is None:
        checks[check_id] = pending(check_id, "reading the registry")
    elif isinstance(chain, ChainFailure):
        checks[check_id] = failed(check_id, chain.error, unavailable=True)
    elif chain.chain_id != inputs.network.chain_id:
        checks[check_id] = failed(
            check_id,
            f"the RPC endpoint is on chain {chain.chain_id}, but {inputs.network.name} is "
            f"chain {inputs.network.chain_id}",
            unavailable=True,
        )
    elif chain.record is None:
        checks[check_id] = failed(check_id, "the registry holds no record of this model")
    elif not chain.record.dataset_digests:
        checks[check_id] = failed(check_id, "the registry answered a malformed record: no datasets")
    else:
        record = chain.record
        checks[check_id] = passed(check_id, "recorded")
    if record is not None and isinstance(chain, ChainAnswer):
        facts.record = record
        facts.image = chain.image
        facts.witnesses = chain.witnesses

    # attestation.digest
    statement: BlobRead | None = None
    check_id = "attestation.digest"
    if record is None:
        checks[check_id] = not_checked(check_id, "no record")
    else:
        key = record.attestation_blob_id
        need(
            Need(
                key,
                True,
                MAX_ATTESTATION_BYTES,
                "attestation",
                expected=record.attestation_digest,
                kind="attestation",
            )
        )
        state = _state(blobs, key)
        if state == "pending":
            checks[check_id] = pending(check_id, "reading the attestation from Walrus")
        elif state == "error":
            failure = _failure(blobs, key)
            checks[check_id] = failed(
                check_id,
                f"cannot read the attestation blob: {failure.error}",
                unavailable=failure.unavailable,
            )
        elif _read(blobs, key).digest != record.attestation_digest:
            checks[check_id] = failed(
                check_id,
                f"the attestation blob hashes to {_read(blobs, key).digest}, the record says "
                f"{record.attestation_digest}",
            )
        else:
            checks[check_id] = passed(check_id, "its SHA-256 is the recorded attestation digest")
            statement = _read(blobs, key)

    # attestation.statement
    attested: Attested | None = None
    check_id = "attestation.statement"
    if statement is None:
        checks[check_id] = not_checked(
            check_id, "no record" if record is None else "no recorded attestation to read"
        )
    else:
        assert model_digest is not None
        result = read_attested(statement.data, model_digest)
        if isinstance(result, str):
            checks[check_id] = failed(check_id, result)
        else:
            attested = result
            checks[check_id] = passed(
                check_id, "in-toto Statement v1, SLSA Provenance v1, about this model"
            )
    facts.attested = attested

    # attestation.matches-record
    matches = False
    check_id = "attestation.matches-record"
    if attested is None or record is None:
        checks[check_id] = not_checked(check_id, "no well-formed recorded attestation")
    else:
        problem = _mismatch(attested, record)
        if problem is not None:
            checks[check_id] = failed(check_id, problem)
        else:
            matches = True
            checks[check_id] = passed(check_id, "job, datasets and image are those recorded")

    # image.registered
    checks["image.registered"] = _image_registered(record, facts.image, attested)
    if record is not None and facts.image is not None:
        need(
            Need(
                facts.image.manifest_blob_id,
                True,
                MAX_MANIFEST_BYTES,
                "image manifest",
                expected=record.image_digest,
                kind="image-manifest",
            ),
        )
        facts.image_manifest = _image_manifest(blobs, facts.image, record)

    # datasets.manifests and datasets.shards
    manifests, shards, facts.datasets = _dataset_checks(
        options, record, attested, matches, blobs, need
    )
    checks["datasets.manifests"] = manifests
    checks["datasets.shards"] = shards

    checks["image.bytes"] = _image_bytes(
        options, record, facts.image, facts.image_manifest, blobs, need
    )
    checks["reproduce"] = _reproduce(inputs, record, model_digest)

    # witnesses: informational, listed, never failed
    check_id = "witnesses"
    if record is None:
        checks[check_id] = not_checked(check_id, "no record")
    else:
        count = len(facts.witnesses)
        checks[check_id] = passed(
            check_id,
            "nobody has recorded a reproduction yet"
            if count == 0
            else f"{count} account{'' if count == 1 else 's'} recorded a bit-for-bit reproduction",
        )

    return Evaluation(checks, facts, need.list, verdict(checks, options))


def read_attested(data: bytes | None, model_digest: Digest) -> Attested | str:
    """What a recorded attestation says about `model_digest`, or why it says nothing usable."""
    value, problem = parse_json(data)
    if problem is not None:
        return f"the attestation is {problem}"
    try:
        attestation = Attestation.from_data(value, "the attestation")
    except OkaiError as exc:
        return f"the attestation is malformed: {exc.message}"
    if attestation.model_digest != model_digest:
        return f"subject: it is about {attestation.model_digest}, not this model"
    raw_job = attestation.to_json()["predicate"]["buildDefinition"]["externalParameters"]["job"]
    try:
        job_digest = Digest.of_json(raw_job)
    except OkaiError as exc:
        return f"the attestation is malformed: job: no canonical form ({exc.message})"
    datasets = []
    for index, (ref, digest) in enumerate(
        zip(attestation.job.datasets, attestation.dataset_digests, strict=True)
    ):
        if isinstance(ref, ManifestRef):
            kind, locator, key = "manifest", ref.manifest_blob_id, ref.manifest_blob_id
        elif isinstance(ref, BlobRef):
            kind, locator, key = "blob", ref.blob_id, ref.blob_id
        elif isinstance(ref, QuiltPatchRef):
            kind, locator = "quiltPatch", ref.quilt_patch_id
            key = QUILT_PATCH_KEY + ref.quilt_patch_id
        datasets.append(AttestedDataset(index, kind, locator, key, digest))
    identity = attestation.host_identity
    return Attested(
        attestation=attestation,
        job=attestation.job,
        job_digest=job_digest,
        datasets=tuple(datasets),
        image_digest=attestation.chain_image_digest,
        system_toplevel=None if identity == UNREGISTERED_HOST else identity,
    )


def _mismatch(attested: Attested, record: ModelRecord) -> str | None:
    if attested.job_digest != record.job_digest:
        return (
            f"the attestation's job hashes to {attested.job_digest}, the record says "
            f"{record.job_digest}"
        )
    want = record.dataset_digests
    got = [d.digest for d in attested.datasets]
    if len(got) != len(want):
        return f"the attestation names {len(got)} datasets, the record {len(want)}"
    for index, (mine, theirs) in enumerate(zip(got, want, strict=True)):
        if mine != theirs:
            return f"dataset {index + 1}: the attestation names {mine}, the record {theirs}"
    if attested.image_digest != record.image_digest:
        return (
            f"the attestation names image {attested.image_digest}, the record {record.image_digest}"
        )
    return None


def _image_registered(
    record: ModelRecord | None, image: ImageRecord | None, attested: Attested | None
) -> Check:
    check_id = "image.registered"
    if record is None:
        return not_checked(check_id, "no record")
    if record.image_digest == ZERO_DIGEST:
        return failed(check_id, "unregistered host: the model was trained on no registered image")
    if image is None:
        return failed(check_id, f"the image {record.image_digest} is not registered")
    if attested is None:
        return not_checked(
            check_id, "needs the recorded, well-formed attestation for the system it ran"
        )
    if attested.system_toplevel is None:
        return failed(check_id, "the attestation says the node ran no registered image")
    ran = system_toplevel_digest(attested.system_toplevel)
    if ran != image.system_toplevel:
        return failed(
            check_id,
            f"the node ran a system whose toplevel hashes to {ran}, the registered image's is "
            f"{image.system_toplevel}",
        )
    return passed(check_id, "registered, and the node ran its system")


def _image_manifest(
    blobs: dict[str, BlobObservation], image: ImageRecord, record: ModelRecord
) -> ImageManifestFact:
    key = image.manifest_blob_id
    state = _state(blobs, key)
    if state == "pending":
        return ImageManifestFact("pending")
    if state == "error":
        failure = _failure(blobs, key)
        return ImageManifestFact("error", failure.error, unavailable=failure.unavailable)
    value, problem = parse_json(_read(blobs, key).data)
    if problem is not None:
        return ImageManifestFact("error", f"the image manifest is {problem}")
    try:
        manifest = ImageManifest.from_data(value, "the image manifest")
    except OkaiError as exc:
        return ImageManifestFact("error", exc.message)
    consistent = (
        manifest.sha256 == record.image_digest
        and system_toplevel_digest(manifest.nixos.system_toplevel) == image.system_toplevel
    )
    return ImageManifestFact("ok", manifest=manifest, consistent=consistent)


def _dataset_checks(
    options: Options,
    record: ModelRecord | None,
    attested: Attested | None,
    matches: bool,
    blobs: dict[str, BlobObservation],
    need: Callable[[Need], None],
) -> tuple[Check, Check, list[DatasetFact]]:
    datasets: list[DatasetFact] = []
    if record is not None and attested is not None:
        datasets = [DatasetFact(d.index, d.kind, d.locator, d.digest) for d in attested.datasets]
    m_id, s_id = "datasets.manifests", "datasets.shards"
    if not options.deep:
        reason = "not requested (Verify data, or okai verify --deep)"
        return not_checked(m_id, reason), not_checked(s_id, reason), datasets
    if record is None:
        return not_checked(m_id, "no record"), not_checked(s_id, "no record"), datasets
    if not matches or attested is None:
        reason = "needs the recorded attestation, matching the record, to locate the data"
        return not_checked(m_id, reason), not_checked(s_id, reason), datasets

    # Manifests: each read by the locator the attestation gives, hashed canonically.
    count = len(datasets)
    manifests = passed(m_id, f"{count} manifest{'' if count == 1 else 's'} match the record")
    for dataset in datasets:
        if dataset.kind != "manifest":
            continue  # raw data: no manifest, its bytes are its one shard
        label = f"dataset {dataset.index + 1}"
        key = dataset.locator
        need(
            Need(
                key,
                True,
                MAX_MANIFEST_BYTES,
                f"{label} manifest",
                expected=dataset.digest,
                kind="dataset-manifest",
            )
        )
        state = _state(blobs, key)
        if state == "pending":
            if manifests.status == PASSED:
                manifests = pending(m_id, "reading dataset manifests")
            continue
        unavailable = state == "error" and _failure(blobs, key).unavailable
        problem = (
            f"cannot read its manifest: {_failure(blobs, key).error}"
            if state == "error"
            else _manifest_problem(_read(blobs, key), dataset)
        )
        if problem is not None and manifests.status != FAILED:
            manifests = failed(m_id, f"{label}: {problem}", unavailable=unavailable)
    if manifests.status != PASSED:
        shards = (
            pending(s_id, "waiting for the manifests")
            if manifests.status == PENDING
            else not_checked(s_id, "the manifests did not check out")
        )
        return manifests, shards, datasets

    # Shards: every one re-downloaded and hashed while streaming.
    result: Check | None = None
    total = waiting = 0
    for dataset in datasets:
        label = f"dataset {dataset.index + 1}"
        key = dataset.locator
        if dataset.kind == "quiltPatch":
            key = QUILT_PATCH_KEY + dataset.locator
        pieces: list[tuple[str, str, int | None, str]]
        if dataset.manifest is not None:
            pieces = [(s.blob_id, s.sha256, s.size, s.path) for s in dataset.manifest.shards]
        else:
            pieces = [(key, dataset.digest, None, f"({dataset.kind})")]
        for index, (blob_key, sha256, size, path) in enumerate(pieces):
            total += 1
            where = f"{label}, shard {index + 1} ({path})"
            need(Need(blob_key, False, size, f"{label} shard {index + 1}", Digest(sha256), size))
            state = _state(blobs, blob_key)
            if state == "pending":
                waiting += 1
                continue
            if result is not None:
                continue
            if state == "error":
                failure = _failure(blobs, blob_key)
                result = failed(
                    s_id,
                    f"{where}: cannot read it: {failure.error}",
                    unavailable=failure.unavailable,
                )
                continue
            blob = _read(blobs, blob_key)
            if blob.digest != sha256:
                result = failed(
                    s_id, f"{where}: its bytes hash to {blob.digest}, the manifest says {sha256}"
                )
            elif size is not None and blob.size != size:
                result = failed(s_id, f"{where}: {blob.size} bytes, the manifest says {size}")
    if result is None:
        result = (
            pending(s_id, f"{total - waiting} of {total} shards checked")
            if waiting
            else passed(s_id, f"all {total} shard{'' if total == 1 else 's'} match their manifests")
        )
    return manifests, result, datasets


def _manifest_problem(blob: BlobRead, dataset: DatasetFact) -> str | None:
    """Why a dataset manifest's bytes are not the recorded manifest (None: they are)."""
    value, problem = parse_json(blob.data)
    if problem is not None:
        return f"its manifest is {problem}"
    try:
        digest = Digest.of_json(value)
    except OkaiError as exc:
        return f"its manifest has no canonical form: {exc.message}"
    if digest != dataset.digest:
        return f"its manifest hashes to {digest}, the record says {dataset.digest}"
    try:
        dataset.manifest = DatasetManifest.from_data(value, "its manifest")
    except OkaiError as exc:
        return exc.message
    return None


def _image_bytes(
    options: Options,
    record: ModelRecord | None,
    image: ImageRecord | None,
    manifest: ImageManifestFact | None,
    blobs: dict[str, BlobObservation],
    need: Callable[[Need], None],
) -> Check:
    check_id = "image.bytes"
    if not (options.deep and options.image):
        return not_checked(check_id, "not requested (okai verify --deep --image)")
    if record is None:
        return not_checked(check_id, "no record")
    if record.image_digest == ZERO_DIGEST or image is None or manifest is None:
        return not_checked(check_id, "no registered image")
    if manifest.state == "pending":
        return pending(check_id, "reading the image manifest")
    if manifest.state == "error" or manifest.manifest is None:
        return failed(
            check_id,
            f"cannot use the image manifest: {manifest.error}",
            unavailable=manifest.unavailable,
        )
    if not manifest.consistent:
        return failed(check_id, "the image manifest does not describe the registered image")
    quilt_id = manifest.manifest.blob_id
    if quilt_id is None:
        return failed(check_id, "the image manifest gives no quilt ID for the image")
    # okai image publish stores the image as the file `fileName` of a one-file quilt:
    # the manifest's blob ID is the quilt's, and the image bytes are that file.
    key = quilt_file_key(quilt_id, manifest.manifest.file_name)
    size = manifest.manifest.size
    need(Need(key, False, size, "image", record.image_digest, size))
    state = _state(blobs, key)
    if state == "pending":
        return pending(check_id, "downloading the image")
    if state == "error":
        failure = _failure(blobs, key)
        return failed(
            check_id, f"cannot read the image: {failure.error}", unavailable=failure.unavailable
        )
    blob = _read(blobs, key)
    if blob.digest != record.image_digest:
        return failed(
            check_id,
            f"the image bytes hash to {blob.digest}, the registry says {record.image_digest}",
        )
    return passed(check_id, "the image bytes are the registered ones")


def _reproduce(inputs: Inputs, record: ModelRecord | None, model_digest: Digest | None) -> Check:
    check_id = "reproduce"
    if not inputs.options.reproduce:
        return not_checked(check_id, "not requested (okai verify --reproduce, CLI only)")
    if record is None:
        return not_checked(check_id, "no record")
    reproduction = inputs.reproduction
    if reproduction is None:
        return pending(check_id, "re-training")
    if reproduction.error is not None:
        return failed(check_id, f"re-training failed: {reproduction.error}", unavailable=True)
    if reproduction.digest is None:
        return not_checked(check_id, reproduction.skipped or "not run")
    if reproduction.digest != model_digest:
        return failed(check_id, f"re-training produced {reproduction.digest}")
    return passed(check_id, "re-training produced the same bytes")
