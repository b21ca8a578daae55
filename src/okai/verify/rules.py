"""The check rules of docs/verification.md as pure functions: no network, no clock.

`evaluate(inputs)` turns what has been observed so far into a status and a reason code
for every check, the facts to show, and the blobs it still needs. The driver loops:
read what is needed, evaluate again. `RULES` lists one function per check, in the
report's order. web/src/rules.js is the same algorithm for the page, function for
function; tests/vectors/verify and the differential test (tests/test_verdict_differential.py)
hold both to the same status and code on every input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from operator import attrgetter

from okai import collector
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
from okai.strict_json import ParsedJson, parse_json_document
from okai.verify.checks import (
    CHECK_IDS,
    FAILED,
    PASSED,
    PENDING,
    Check,
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


Shards = tuple[tuple[str, Digest, int | None, str], ...]
"""Shards as the rules compare them: (blob key, SHA-256, size or None, path or kind)."""


@dataclass(frozen=True)
class CheckedManifest:
    """A dataset manifest whose bytes are the recorded manifest, and its shards."""

    manifest: DatasetManifest
    shards: Shards


@dataclass
class DatasetFact:
    """A dataset for display, with its manifest once that checked out."""

    index: int
    kind: str
    locator: str
    digest: Digest
    manifest: DatasetManifest | None = None
    shards: Shards = ()
    """The manifest's shards, once it checked out."""


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
    forged: bool = False
    """The bytes served are not the manifest whose SHA-256 the image claim holds."""


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
    """The reads still needed, each key once (a set: a manifest may list 100,000 shards)."""

    def __init__(self, blobs: dict[str, BlobObservation]) -> None:
        self.blobs = blobs
        self.list: list[Need] = []
        self._keys: set[str] = set()

    def __call__(self, need: Need) -> None:
        if need.key not in self.blobs and need.key not in self._keys:
            self._keys.add(need.key)
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


def parse_json(data: bytes | None) -> ParsedJson:
    """The value, or why there is none: see okai.strict_json."""
    if data is None:
        raise ValueError("the rules read only blobs they asked to keep")
    return parse_json_document(data)


def parse_digest(text: str) -> Digest | None:
    try:
        return Digest.parse(text)
    except DigestFormatError:
        return None


@dataclass
class Run:
    """One evaluation: the inputs, what the checks so far established, the reads needed."""

    inputs: Inputs
    blobs: dict[str, BlobObservation]
    need: _Needs
    facts: Facts = field(default_factory=Facts)
    statement: BlobRead | None = None
    """The attestation blob, once its digest is the recorded one."""
    matches: bool = False
    """Whether the attestation names the recorded inputs."""
    manifests: Check | None = None


def evaluate(inputs: Inputs) -> Evaluation:
    """Every check's status for what has been observed so far (see the module docstring)."""
    # An evaluation builds up to millions of objects (a manifest's values and shards, the
    # reads it needs), none in a cycle; each pass of the collector would scan them all again
    # (for 100,000 shards, a quarter to a third of the time).
    with collector.paused():
        blobs = dict(inputs.blobs)
        run = Run(inputs, blobs, _Needs(blobs))
        checks = {check_id: rule(run) for check_id, rule in RULES}
        return Evaluation(checks, run.facts, run.need.list, verdict(checks, inputs.options))


def model_digest(run: Run) -> Check:
    check_id = "model.digest"
    model = run.inputs.model
    if model is None:
        return pending(check_id, "hashing", "hashing the model file")
    if model.error is not None:
        return failed(
            check_id,
            "unreadable",
            f"cannot read the model file: {model.error}",
            unavailable=True,
        )
    if model.digest is not None:
        run.facts.model_digest = model.digest
        return passed(check_id, "computed", "SHA-256 of the model file, computed here")
    run.facts.model_digest = parse_digest(model.given or "")
    if run.facts.model_digest is None:
        return failed(check_id, "malformed", "not a SHA-256 digest (want sha256:<64 hex>)")
    return passed(check_id, "given", "digest given, not computed from a file")


def record_exists(run: Run) -> Check:
    check_id = "record.exists"
    chain = run.inputs.chain
    network = run.inputs.network
    if run.facts.model_digest is None:
        return not_checked(check_id, "no-model-digest", "no model digest")
    if chain is None:
        return pending(check_id, "reading", "reading the registry")
    if isinstance(chain, ChainFailure):
        return failed(check_id, "unreachable", chain.error, unavailable=True)
    if chain.chain_id != network.chain_id:
        return failed(
            check_id,
            "wrong-chain",
            f"the RPC endpoint is on chain {chain.chain_id}, but {network.name} is "
            f"chain {network.chain_id}",
            unavailable=True,
        )
    if chain.record is None:
        return failed(check_id, "not-recorded", "the registry holds no record of this model")
    if not chain.record.dataset_digests:
        return failed(
            check_id, "malformed-record", "the registry answered a malformed record: no datasets"
        )
    run.facts.record = chain.record
    run.facts.image = chain.image
    run.facts.witnesses = chain.witnesses
    return passed(check_id, "recorded", "recorded")


def attestation_digest(run: Run) -> Check:
    check_id = "attestation.digest"
    record = run.facts.record
    if record is None:
        return not_checked(check_id, "no-record", "no record")
    key = record.attestation_blob_id
    run.need(
        Need(
            key,
            True,
            MAX_ATTESTATION_BYTES,
            "attestation",
            expected=record.attestation_digest,
            kind="attestation",
        )
    )
    state = _state(run.blobs, key)
    if state == "pending":
        return pending(check_id, "reading", "reading the attestation from Walrus")
    if state == "error":
        failure = _failure(run.blobs, key)
        return failed(
            check_id,
            "unreadable",
            f"cannot read the attestation blob: {failure.error}",
            unavailable=failure.unavailable,
        )
    blob = _read(run.blobs, key)
    if blob.digest != record.attestation_digest:
        return failed(
            check_id,
            "mismatch",
            f"the attestation blob hashes to {blob.digest}, the record says "
            f"{record.attestation_digest}",
        )
    run.statement = blob
    return passed(check_id, "matches", "its SHA-256 is the recorded attestation digest")


def attestation_statement(run: Run) -> Check:
    check_id = "attestation.statement"
    if run.statement is None:
        if run.facts.record is None:
            return not_checked(check_id, "no-record", "no record")
        return not_checked(check_id, "no-attestation", "no recorded attestation to read")
    assert run.facts.model_digest is not None
    result = read_attested(run.statement.data, run.facts.model_digest)
    if isinstance(result, Problem):
        return failed(check_id, result.code, result.text)
    run.facts.attested = result
    return passed(
        check_id, "well-formed", "in-toto Statement v1, SLSA Provenance v1, about this model"
    )


def attestation_matches_record(run: Run) -> Check:
    check_id = "attestation.matches-record"
    attested, record = run.facts.attested, run.facts.record
    if attested is None or record is None:
        return not_checked(check_id, "no-attestation", "no well-formed recorded attestation")
    problem = _mismatch(attested, record)
    if problem is not None:
        return failed(check_id, problem.code, problem.text)
    run.matches = True
    return passed(check_id, "matches", "job, datasets and image are those recorded")


def image_registered(run: Run) -> Check:
    check_id = "image.registered"
    record, image, attested = run.facts.record, run.facts.image, run.facts.attested
    if record is None:
        return not_checked(check_id, "no-record", "no record")
    if image is not None:
        run.need(
            Need(
                image.manifest_blob_id,
                True,
                MAX_MANIFEST_BYTES,
                "image manifest",
                expected=image.manifest_sha256,
                kind="image-manifest",
            )
        )
        run.facts.image_manifest = _image_manifest(run.blobs, image, record)
        if run.facts.image_manifest.forged:  # wrong bytes for the claim: nothing of them is shown
            return failed(check_id, "forged-manifest", str(run.facts.image_manifest.error))
    if record.image_digest == ZERO_DIGEST:
        return failed(
            check_id,
            "unregistered-host",
            "unregistered host: the model was trained on no registered image",
        )
    if image is None:
        return failed(
            check_id, "not-registered", f"the image {record.image_digest} is not registered"
        )
    if attested is None:
        return not_checked(
            check_id,
            "no-attestation",
            "needs the recorded, well-formed attestation for the system it ran",
        )
    if attested.system_toplevel is None:
        return failed(
            check_id, "no-image-ran", "the attestation says the node ran no registered image"
        )
    ran = system_toplevel_digest(attested.system_toplevel)
    if ran != image.system_toplevel:
        return failed(
            check_id,
            "other-system",
            f"the node ran a system whose toplevel hashes to {ran}, the registered image's is "
            f"{image.system_toplevel}",
        )
    return passed(check_id, "registered", "registered, and the node ran its system")


def datasets_manifests(run: Run) -> Check:
    """Each dataset manifest, read by the locator the attestation gives, hashed canonically."""
    check_id = "datasets.manifests"
    record, attested = run.facts.record, run.facts.attested
    if record is not None and attested is not None:
        run.facts.datasets = [
            DatasetFact(d.index, d.kind, d.locator, d.digest) for d in attested.datasets
        ]
    blocked = _data_blocked(run, check_id)
    if blocked is not None:
        return blocked
    count = len(run.facts.datasets)
    result = passed(
        check_id, "match", f"{count} manifest{'' if count == 1 else 's'} match the record"
    )
    for dataset in run.facts.datasets:
        if dataset.kind != "manifest":
            continue  # raw data: no manifest, its bytes are its one shard
        label = f"dataset {dataset.index + 1}"
        key = dataset.locator
        run.need(
            Need(
                key,
                True,
                MAX_MANIFEST_BYTES,
                f"{label} manifest",
                expected=dataset.digest,
                kind="dataset-manifest",
            )
        )
        state = _state(run.blobs, key)
        if state == "pending":
            if result.status == PASSED:
                result = pending(check_id, "reading", "reading dataset manifests")
            continue
        if result.status == FAILED:
            continue
        if state == "error":
            failure = _failure(run.blobs, key)
            result = failed(
                check_id,
                "unreadable",
                f"{label}: cannot read its manifest: {failure.error}",
                unavailable=failure.unavailable,
            )
            continue
        problem = _manifest_problem(_read(run.blobs, key), dataset)
        if problem is not None:
            result = failed(check_id, problem.code, f"{label}: {problem.text}")
    run.manifests = result
    return result


def datasets_shards(run: Run) -> Check:
    """Every shard (a raw dataset is its one shard) re-downloaded and hashed while streaming."""
    check_id = "datasets.shards"
    blocked = _data_blocked(run, check_id)
    if blocked is not None:
        return blocked
    assert run.manifests is not None
    if run.manifests.status == PENDING:
        return pending(check_id, "waiting", "waiting for the manifests")
    if run.manifests.status != PASSED:
        return not_checked(check_id, "manifests-failed", "the manifests did not check out")
    result: Check | None = None
    total = waiting = 0
    blobs = run.blobs
    for dataset in run.facts.datasets:
        label = f"dataset {dataset.index + 1}"
        shards = dataset.shards
        if dataset.manifest is None:
            key = dataset.locator
            if dataset.kind == "quiltPatch":
                key = QUILT_PATCH_KEY + dataset.locator
            shards = ((key, dataset.digest, None, f"({dataset.kind})"),)
        total += len(shards)
        # A manifest may list 100,000 shards: those not read yet are found in one pass.
        missing = [index for index, shard in enumerate(shards) if shard[0] not in blobs]
        waiting += len(missing)
        for index in missing:
            key, sha256, size, _ = shards[index]
            run.need(Need(key, False, size, f"{label} shard {index + 1}", sha256, size))
        if result is None and len(missing) < len(shards):
            result = _shard_mismatch(check_id, label, shards, blobs)
    if result is not None:
        return result
    if waiting:
        return pending(check_id, "reading", f"{total - waiting} of {total} shards checked")
    return passed(
        check_id, "match", f"all {total} shard{'' if total == 1 else 's'} match their manifests"
    )


def _shard_mismatch(
    check_id: str, label: str, shards: Shards, blobs: dict[str, BlobObservation]
) -> Check | None:
    """The first shard read that is not the one its manifest lists (None: all those read are)."""
    for index, (key, sha256, size, path) in enumerate(shards):
        blob = blobs.get(key)
        if blob is None:
            continue
        if isinstance(blob, BlobRead) and blob.digest == sha256 and size in (None, blob.size):
            continue  # the common case, kept short
        where = f"{label}, shard {index + 1} ({path})"
        if isinstance(blob, BlobFailure):
            return failed(
                check_id,
                "unreadable",
                f"{where}: cannot read it: {blob.error}",
                unavailable=blob.unavailable,
            )
        if blob.digest != sha256:
            return failed(
                check_id,
                "mismatch",
                f"{where}: its bytes hash to {blob.digest}, the manifest says {sha256}",
            )
        return failed(
            check_id, "size-mismatch", f"{where}: {blob.size} bytes, the manifest says {size}"
        )
    return None


def _data_blocked(run: Run, check_id: str) -> Check | None:
    """Why the data checks cannot run (not asked for, nothing to locate the data by)."""
    if not run.inputs.options.deep:
        return not_checked(
            check_id, "not-requested", "not requested (Verify data, or okai verify --deep)"
        )
    if run.facts.record is None:
        return not_checked(check_id, "no-record", "no record")
    if not run.matches:
        return not_checked(
            check_id,
            "no-attestation",
            "needs the recorded attestation, matching the record, to locate the data",
        )
    return None


def image_bytes(run: Run) -> Check:
    check_id = "image.bytes"
    record, image, manifest = run.facts.record, run.facts.image, run.facts.image_manifest
    options = run.inputs.options
    if not (options.deep and options.image):
        return not_checked(check_id, "not-requested", "not requested (okai verify --deep --image)")
    if record is None:
        return not_checked(check_id, "no-record", "no record")
    if record.image_digest == ZERO_DIGEST or image is None or manifest is None:
        return not_checked(check_id, "no-image", "no registered image")
    if manifest.state == "pending":
        return pending(check_id, "reading-manifest", "reading the image manifest")
    if manifest.state == "error" or manifest.manifest is None:
        return failed(
            check_id,
            "manifest-unusable",
            f"cannot use the image manifest: {manifest.error}",
            unavailable=manifest.unavailable,
        )
    if not manifest.consistent:
        return failed(
            check_id,
            "manifest-inconsistent",
            "the image manifest does not describe the registered image",
        )
    quilt_id = manifest.manifest.blob_id
    if quilt_id is None:
        return failed(check_id, "no-quilt-id", "the image manifest gives no quilt ID for the image")
    # okai image publish stores the image as the file `fileName` of a one-file quilt:
    # the manifest's blob ID is the quilt's, and the image bytes are that file.
    key = quilt_file_key(quilt_id, manifest.manifest.file_name)
    size = manifest.manifest.size
    run.need(Need(key, False, size, "image", record.image_digest, size))
    state = _state(run.blobs, key)
    if state == "pending":
        return pending(check_id, "reading", "downloading the image")
    if state == "error":
        failure = _failure(run.blobs, key)
        return failed(
            check_id,
            "unreadable",
            f"cannot read the image: {failure.error}",
            unavailable=failure.unavailable,
        )
    blob = _read(run.blobs, key)
    if blob.digest != record.image_digest:
        return failed(
            check_id,
            "mismatch",
            f"the image bytes hash to {blob.digest}, the registry says {record.image_digest}",
        )
    return passed(check_id, "matches", "the image bytes are the registered ones")


def reproduce(run: Run) -> Check:
    check_id = "reproduce"
    if not run.inputs.options.reproduce:
        return not_checked(
            check_id, "not-requested", "not requested (okai verify --reproduce, CLI only)"
        )
    if run.facts.record is None:
        return not_checked(check_id, "no-record", "no record")
    reproduction = run.inputs.reproduction
    if reproduction is None:
        return pending(check_id, "running", "re-training")
    if reproduction.error is not None:
        return failed(
            check_id, "error", f"re-training failed: {reproduction.error}", unavailable=True
        )
    if reproduction.digest is None:
        return not_checked(check_id, "skipped", reproduction.skipped or "not run")
    if reproduction.digest != run.facts.model_digest:
        return failed(check_id, "mismatch", f"re-training produced {reproduction.digest}")
    return passed(check_id, "reproduced", "re-training produced the same bytes")


def witnesses(run: Run) -> Check:
    """Informational: listed, never failed."""
    check_id = "witnesses"
    if run.facts.record is None:
        return not_checked(check_id, "no-record", "no record")
    count = len(run.facts.witnesses)
    if count == 0:
        return passed(check_id, "none", "nobody has recorded a reproduction yet")
    return passed(
        check_id,
        "listed",
        f"{count} account{'' if count == 1 else 's'} recorded a bit-for-bit reproduction",
    )


RULES: tuple[tuple[str, Callable[[Run], Check]], ...] = (
    ("model.digest", model_digest),
    ("record.exists", record_exists),
    ("attestation.digest", attestation_digest),
    ("attestation.statement", attestation_statement),
    ("attestation.matches-record", attestation_matches_record),
    ("image.registered", image_registered),
    ("datasets.manifests", datasets_manifests),
    ("datasets.shards", datasets_shards),
    ("image.bytes", image_bytes),
    ("reproduce", reproduce),
    ("witnesses", witnesses),
)
"""One rule per check, in the report's order: the list reads as the specification."""
assert tuple(check_id for check_id, _ in RULES) == CHECK_IDS


@dataclass(frozen=True)
class Problem:
    """Why a document is unusable: the check's reason code and its words."""

    code: str
    text: str


# The driver evaluates once per round of reads, each time with the same bytes: the parsed
# documents of the last few are kept (a handful of blobs, each under its size cap).
@lru_cache(maxsize=4)
def read_attested(data: bytes | None, model_digest: Digest) -> Attested | Problem:
    """What a recorded attestation says about `model_digest`, or why it says nothing usable."""
    parsed = parse_json(data)
    if parsed.problem is not None:
        return Problem(parsed.problem.code, f"the attestation is {parsed.problem.text}")
    try:
        attestation = Attestation.from_data(parsed.value, "the attestation")
    except OkaiError as exc:
        return Problem("malformed", f"the attestation is malformed: {exc.message}")
    if attestation.model_digest != model_digest:
        return Problem(
            "other-model", f"subject: it is about {attestation.model_digest}, not this model"
        )
    raw_job = attestation.to_json()["predicate"]["buildDefinition"]["externalParameters"]["job"]
    try:
        job_digest = Digest.of_json(raw_job)
    except OkaiError as exc:
        return Problem(
            "malformed", f"the attestation is malformed: job: no canonical form ({exc.message})"
        )
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


def _mismatch(attested: Attested, record: ModelRecord) -> Problem | None:
    if attested.job_digest != record.job_digest:
        return Problem(
            "job-mismatch",
            f"the attestation's job hashes to {attested.job_digest}, the record says "
            f"{record.job_digest}",
        )
    want = record.dataset_digests
    got = [d.digest for d in attested.datasets]
    if len(got) != len(want):
        return Problem(
            "dataset-count", f"the attestation names {len(got)} datasets, the record {len(want)}"
        )
    for index, (mine, theirs) in enumerate(zip(got, want, strict=True)):
        if mine != theirs:
            return Problem(
                "dataset-mismatch",
                f"dataset {index + 1}: the attestation names {mine}, the record {theirs}",
            )
    if attested.image_digest != record.image_digest:
        return Problem(
            "image-mismatch",
            f"the attestation names image {attested.image_digest}, the record "
            f"{record.image_digest}",
        )
    return None


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
    blob = _read(blobs, key)
    if blob.digest != image.manifest_sha256:
        served = "" if blob.source is None else f" served by {blob.source}"
        return ImageManifestFact(
            "error",
            f"the image manifest{served} hashes to {blob.digest}, but the image claim of "
            f"{image.registrant} says {image.manifest_sha256}",
            forged=True,
        )
    parsed = parse_json(blob.data)
    if parsed.problem is not None:
        return ImageManifestFact("error", f"the image manifest is {parsed.problem.text}")
    try:
        manifest = ImageManifest.from_data(parsed.value, "the image manifest")
    except OkaiError as exc:
        return ImageManifestFact("error", exc.message)
    consistent = (
        manifest.sha256 == record.image_digest
        and system_toplevel_digest(manifest.nixos.system_toplevel) == image.system_toplevel
    )
    return ImageManifestFact("ok", manifest=manifest, consistent=consistent)


def _manifest_problem(blob: BlobRead, dataset: DatasetFact) -> Problem | None:
    """Why a dataset manifest's bytes are not the recorded manifest (None: they are)."""
    result = _read_manifest(blob.data, dataset.digest)
    if isinstance(result, Problem):
        return result
    dataset.manifest, dataset.shards = result.manifest, result.shards
    return None


@lru_cache(maxsize=8)
def _read_manifest(data: bytes | None, digest: Digest) -> CheckedManifest | Problem:
    parsed = parse_json(data)
    if parsed.problem is not None:
        return Problem(parsed.problem.code, f"its manifest is {parsed.problem.text}")
    try:
        actual = Digest.of_bytes(parsed.canonical())
    except OkaiError as exc:
        return Problem("no-canonical-form", f"its manifest has no canonical form: {exc.message}")
    if actual != digest:
        return Problem("mismatch", f"its manifest hashes to {actual}, the record says {digest}")
    try:
        manifest = DatasetManifest.from_data(parsed.value, "its manifest")
    except OkaiError as exc:
        return Problem("malformed", exc.message)
    return CheckedManifest(manifest, tuple(map(_SHARD_FIELDS, manifest.shards)))


_SHARD_FIELDS = attrgetter("blob_id", "sha256", "size", "path")
"""A DatasetShard as the rules compare it (its sha256 is a Digest: see okai.manifest)."""
