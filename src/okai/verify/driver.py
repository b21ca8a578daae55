"""The verification driver: read what the rules need from the chain and Walrus, then judge.

Shallow verification under a trust policy costs a fixed number of RPC calls (the chain
ID, the registry's code, a page of submitters, one `getProvenance` per trusted trainer),
whatever others wrote, and two small Walrus reads (the attestation and the image manifest).
`--deep` adds every dataset manifest and shard, streamed to a scratch file, hashed
and deleted, and with `--image` the image's quilt file, hashed as it streams;
`--reproduce` re-runs the job.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from okai.chain.errors import ChainError, ModelNotRecorded, WitnessIsSubmitter, WrongChainError
from okai.chain.reader import RegistryReader
from okai.chain.records import ImageRecord, Transaction
from okai.digest import CHUNK_SIZE, Digest
from okai.errors import IntegrityError, OkaiError, UsageError
from okai.provenance.software import before_reproduction
from okai.verify.bounds import Bounds, VerifyTimeout
from okai.verify.checks import PASSED, Options, failed
from okai.verify.limits import ReadLimits
from okai.verify.observations import (
    QUILT_PATCH_KEY,
    BlobFailure,
    BlobObservation,
    BlobRead,
    ChainAnswer,
    ChainFailure,
    Inputs,
    ModelInput,
    Need,
    NetworkId,
    Reproduction,
    parse_quilt_file_key,
)
from okai.verify.policy import ClaimContext, TrustPolicy, apply_policy
from okai.verify.report import ClaimReport, Origin, VerifyReport, WitnessOutcome
from okai.verify.reproduce import Reproducer
from okai.verify.rules import Evaluation, evaluate, parse_digest, parse_json
from okai.walrus.client import Acceptor, WalrusClient
from okai.walrus.errors import (
    AnswerRefused,
    BlobBlocked,
    BlobNotFound,
    ReadLimitExceeded,
    WalrusProtocolError,
)

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from okai.chain.client import RegistryClient

MAX_ROUNDS = 6
"""attestation + image manifest, dataset manifests, shards + image: three in practice."""
READ_WORKERS = 4
SHOWN_CLAIMS = 10
"""Claims, publishers and witnesses listed per page when no policy names them."""
UNPINNED_CLAIMS = 3
"""Claims judged, each on its own, when no trainer is trusted."""

Advance = Callable[[int], None]


class Progress(Protocol):
    """Where progress goes (the CLI's output state fits)."""

    def transfer(self, description: str, total: int | None) -> AbstractContextManager[Advance]: ...

    def info(self, message: str) -> None: ...


class Silent:
    """No progress output (library use, tests)."""

    def transfer(self, description: str, total: int | None) -> AbstractContextManager[Advance]:
        return nullcontext(lambda n: None)

    def info(self, message: str) -> None:
        return None


@dataclass(frozen=True)
class ModelTarget:
    """What to verify: a model file, or a digest someone gave."""

    path: Path | None = None
    given: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelTarget:
        """A path to an existing file, else a SHA-256 digest; anything else is a usage error."""
        path = Path(text)
        if path.is_file():
            return cls(path=path)
        if path.exists():
            raise UsageError(f"{text} is not a regular file", hint="give a model file or digest")
        if parse_digest(text) is None:
            raise UsageError(
                f"{text[:100]!r} is neither an existing file nor a SHA-256 digest",
                hint="pass the model file, or its digest as sha256:<64 hex>",
            )
        return cls(given=text)

    def describe(self) -> str:
        return str(self.path) if self.path is not None else str(self.given)


def verify_model(
    target: ModelTarget,
    options: Options,
    *,
    registry: RegistryReader,
    walrus: WalrusClient,
    policy: TrustPolicy | None = None,
    reproducer: Reproducer | None = None,
    witness: bool = False,
    workdir: Path | None = None,
    progress: Progress | None = None,
    overridden: tuple[str, ...] = (),
    bounds: Bounds | None = None,
) -> VerifyReport:
    """Run the requested checks on `target` under `policy`; with `witness`, record a
    reproduction of the judged claim on chain.

    Without a policy (or one that trusts no trainer) at most `UNPINNED_CLAIMS` claims are
    judged, each on its own, and none can be "verified". `reproducer` is required with
    `options.reproduce`; `witness` needs it and a signing registry client. `workdir` keeps
    the reproduction's run directory (else a temporary one is removed). `overridden` names
    the settings that local files changed on a public network, for the report. `bounds`:
    the deadline and the read limits (default: `Bounds()`, limits from `OKAI_VERIFY_MAX_*`).
    """
    ui = progress or Silent()
    policy = policy or TrustPolicy()
    bounds = bounds or Bounds()
    if witness and not options.reproduce:
        raise UsageError("--attest records a reproduction, so it needs --reproduce")
    if options.reproduce and reproducer is None:
        raise UsageError("re-training was asked for, but no way to re-train was given")
    if witness:
        _signing(registry)  # refuse before anything is read
    network = NetworkId(registry.network.name, registry.network.chain_id)
    origin = Origin.of(registry, overridden)
    model = _model_input(target, ui)
    digest = evaluate(Inputs(options, network, model)).facts.model_digest
    bounds.check("hashing the model")
    chain = None if digest is None else read_claims(registry, digest, policy)
    bounds.check("reading the registry")
    claims: list[Claim] = [(None, ClaimContext((), 0), ())] if chain is None else chain.claims
    problem = None if chain is None else chain.code_problem
    judged = [
        _judge(
            answer,
            context,
            images,
            problem,
            registry,
            walrus,
            policy,
            options,
            network,
            model,
            reproducer,
            witness,
            workdir,
            ui,
            bounds,
        )
        for answer, context, images in claims
    ]
    return VerifyReport(target.describe(), network, options, judged, policy, origin)


def _judge(
    answer: ChainAnswer | ChainFailure | None,
    context: ClaimContext,
    images: tuple[ImageRecord, ...],
    code_problem: str | None,
    registry: RegistryReader,
    walrus: WalrusClient,
    policy: TrustPolicy,
    options: Options,
    network: NetworkId,
    model: ModelInput,
    reproducer: Reproducer | None,
    witness: bool,
    workdir: Path | None,
    ui: Progress,
    bounds: Bounds,
) -> ClaimReport:
    """One claim: read what its checks need, re-train if asked, apply the policy."""
    if witness and isinstance(answer, ChainAnswer) and answer.record is not None:
        _check_may_witness(registry, answer.record.submitter, answer.record.model_digest)
    inputs, evaluation = _read_blobs(Inputs(options, network, model, answer), walrus, ui, bounds)
    if isinstance(answer, ChainAnswer) and answer.image is not None:
        # Several image claims (trusted publishers, or anyone's when unpinned): judge the
        # first whose system is the one the node ran, so no squatter decides which counts.
        for image in images:
            if evaluation.checks["image.registered"].status == PASSED:
                break
            if image == answer.image:
                continue
            inputs, evaluation = _read_blobs(
                Inputs(options, network, model, replace(answer, image=image)), walrus, ui, bounds
            )
            context = replace(context, image_publishers=(image.registrant,))
    if options.reproduce:
        reproduction = _reproduce(evaluation, reproducer, workdir, ui, network.name)
        inputs = replace(inputs, reproduction=reproduction)
        evaluation = evaluate(inputs)
    outcome = None
    if witness:
        outcome = _witness(registry, evaluation)
        if outcome.transaction is not None and isinstance(answer, ChainAnswer):
            witnesses = (*answer.witnesses, _signing(registry)[1].address)
            context = replace(context, witness_count=context.witness_count + 1)
            inputs = replace(inputs, chain=replace(answer, witnesses=witnesses))
            evaluation = evaluate(inputs)
    record = evaluation.facts.record
    checks, verdict = apply_policy(
        evaluation.checks,
        options,
        policy,
        context,
        submitter=None if record is None else record.submitter,
        image_digest=None if record is None else record.image_digest,
        witnesses=evaluation.facts.witnesses,
    )
    if code_problem is not None:
        checks["record.exists"] = failed("record.exists", "other-code", code_problem)
        verdict = "not verified"
    return ClaimReport(evaluation, checks, verdict, context, outcome)


# ---------------------------------------------------------------- the model


def _model_input(target: ModelTarget, ui: Progress) -> ModelInput:
    if target.path is None:
        return ModelInput(given=target.given)
    try:
        size = target.path.stat().st_size
        with (
            open(target.path, "rb") as stream,
            ui.transfer(f"hash {target.path.name}", size) as advance,
        ):

            def chunks() -> Iterator[bytes]:
                while chunk := stream.read(CHUNK_SIZE):
                    advance(len(chunk))
                    yield chunk

            return ModelInput(digest=Digest.of_chunks(chunks()))
    except OSError as exc:
        return ModelInput(error=exc.strerror or str(exc))


# ---------------------------------------------------------------- the chain


Claim = tuple[ChainAnswer | ChainFailure | None, ClaimContext, tuple[ImageRecord, ...]]
"""One claim to judge (None: no model digest to look up), what surrounds it, and the
claims about its image that were read."""


@dataclass
class ClaimsRead:
    """What the registry said: the claims to judge, each with the context of the others."""

    claims: list[Claim]
    code_problem: str | None = None


def read_claims(registry: RegistryReader, digest: Digest, policy: TrustPolicy) -> ClaimsRead:
    """The claims on `digest` to judge under `policy`, in a bounded number of RPC calls.

    Always: the chain ID, the registry's code, one page of submitters. Pinned: one
    `getProvenance` per trusted trainer, naming the trusted publishers and witnesses.
    Unpinned: for each of the first `UNPINNED_CLAIMS` claims, its record, a page of its
    image's publishers and a page of its witnesses. Witness or claim spam adds nothing.
    """
    empty = ClaimContext((), 0)
    try:
        registry.check_chain()
    except WrongChainError as exc:
        return ClaimsRead([(ChainAnswer(exc.actual, None), empty, ())])
    except ChainError as exc:
        return ClaimsRead([(ChainFailure(exc.message), empty, ())])
    chain_id = registry.network.chain_id
    try:
        if not registry.has_registry_code():
            problem = (
                f"the code at {registry.address} on chain {chain_id} is not this okai's "
                "ProvenanceRegistry (record format 2): its answers prove nothing"
            )
            return ClaimsRead([(ChainAnswer(chain_id, None), empty, ())], problem)
        submitters, total = registry.model_submitters(digest, None, SHOWN_CLAIMS)
        context = ClaimContext(submitters, total)
        candidates = policy.trainers if policy.pinned else submitters[:UNPINNED_CLAIMS]
        claims = [_claim(registry, digest, submitter, policy, context) for submitter in candidates]
    except ChainError as exc:
        return ClaimsRead([(ChainFailure(exc.message), empty, ())])
    found = [claim for claim in claims if claim is not None]
    return ClaimsRead(found or [(ChainAnswer(chain_id, None), context, ())])


def _claim(
    registry: RegistryReader,
    digest: Digest,
    submitter: str,
    policy: TrustPolicy,
    context: ClaimContext,
) -> Claim | None:
    """One account's claim as the rules read it, or None if it made none."""
    chain_id = registry.network.chain_id
    try:
        if policy.pinned:
            provenance = registry.get_provenance(
                digest, submitter, policy.publishers, policy.witnesses
            )
            witnesses = provenance.witnesses
        else:
            provenance = registry.get_provenance(digest, submitter)
            image = provenance.model.image_digest
            if not provenance.model.unregistered_host:
                publishers, _ = registry.image_publishers(image, 0, SHOWN_CLAIMS)
                provenance = registry.get_provenance(digest, submitter, publishers)
            witnesses, _ = registry.get_witnesses(digest, submitter, 0, SHOWN_CLAIMS)
    except ModelNotRecorded:
        return None
    images = provenance.images
    answer = ChainAnswer(chain_id, provenance.model, images[0] if images else None, witnesses)
    publishers = tuple(image.registrant for image in images)
    return (
        answer,
        replace(context, image_publishers=publishers, witness_count=provenance.witness_count),
        images,
    )


def _signing(registry: RegistryReader) -> tuple[RegistryClient, LocalAccount]:
    """The registry as a client that signs: a witness is a transaction (web3, imported
    only then)."""
    from okai.chain.client import RegistryClient

    if not isinstance(registry, RegistryClient) or registry.signer is None:
        raise UsageError("--attest sends a transaction but no signing key was loaded")
    return registry, registry.signer


def _check_may_witness(registry: RegistryReader, submitter: str, digest: Digest) -> None:
    """Refuse before re-training what the registry would refuse after it."""
    _, signer = _signing(registry)
    if signer.address.lower() == submitter.lower():
        raise WitnessIsSubmitter(digest, signer.address)


# ---------------------------------------------------------------- Walrus


def _read_blobs(
    inputs: Inputs, walrus: WalrusClient, ui: Progress, bounds: Bounds
) -> tuple[Inputs, Evaluation]:
    """Evaluate, read what the rules need, repeat (at most MAX_ROUNDS times).

    Returns the inputs with every blob read, and their evaluation.
    """
    blobs: dict[str, BlobObservation] = dict(inputs.blobs)
    with tempfile.TemporaryDirectory(prefix="okai-verify-") as scratch:
        for _ in range(MAX_ROUNDS):
            current = replace(inputs, blobs=dict(blobs))
            evaluation = evaluate(current)
            if not evaluation.needs:
                return current, evaluation
            blobs.update(_read_all(walrus, evaluation.needs, Path(scratch), ui, bounds))
    raise OkaiError(f"verification still needed blobs after {MAX_ROUNDS} rounds of reads")


def _read_all(
    walrus: WalrusClient, needs: list[Need], scratch: Path, ui: Progress, bounds: Bounds
) -> dict[str, BlobObservation]:
    data = [n for n in needs if not n.keep]
    # Raw blobs okai never pushed have no size on record: then the bar counts bytes only.
    sizes = [n.size for n in data]
    total = None if None in sizes else sum(s for s in sizes if s is not None)
    bar = ui.transfer(f"read {len(data)} blobs", total) if data else nullcontext(_ignore)
    lock = threading.Lock()
    with bar as advance:

        def locked(n: int) -> None:
            with lock:
                advance(n)

        def read(need: Need) -> tuple[str, BlobObservation]:
            what = f"reading {need.label} (blob {need.key})"
            bounds.check(what)  # before a read that may never send a byte
            counted = bounds.reading(what, locked)
            observation = read_blob(walrus, need, scratch, counted, bounds.limits)
            bounds.check(what)  # and after it, naming the read that took the time
            return need.key, observation

        with ThreadPoolExecutor(min(READ_WORKERS, len(needs))) as pool:
            return dict(pool.map(read, needs))


def _ignore(n: int) -> None:
    return None


def read_blob(
    walrus: WalrusClient,
    need: Need,
    scratch: Path,
    advance: Advance,
    limits: ReadLimits,
) -> BlobObservation:
    """One blob as an observation: its digest (and bytes when kept), or why it failed.

    Every answer is checked before it is taken (its digest, or for a manifest what the
    rules will hold it to), so a wrong answer makes way for the next aggregator; when
    none is right, the last answer is reported (its digest, or its bytes for a document)
    so the rules can name what was wrong. Each read is bounded by `limits`.
    """
    limit = limits.of(need)
    try:
        if need.keep:
            return _read_document(walrus, need, limit)
        quilt_file = parse_quilt_file_key(need.key)
        if quilt_file is not None:
            return _check_quilt_file(walrus, need, *quilt_file, advance, limit)
        with tempfile.NamedTemporaryFile(dir=scratch, delete=False) as handle:
            dest = Path(handle.name)
        try:
            if need.key.startswith(QUILT_PATCH_KEY):
                digest = walrus.read_quilt_patch_to_file(
                    need.key.removeprefix(QUILT_PATCH_KEY),
                    need.expected,
                    dest,
                    max_bytes=limit,
                    on_progress=advance,
                )
            else:
                digest = walrus.read_to_file(
                    need.key,
                    need.expected,
                    dest,
                    expected_size=need.size,
                    max_bytes=limit,
                    verify_blob_id=False,
                    on_progress=advance,
                )
            return BlobRead(digest, dest.stat().st_size)
        finally:
            dest.unlink(missing_ok=True)
    except IntegrityError as exc:
        return BlobRead(Digest.parse(exc.actual), None, source=exc.source)
    except VerifyTimeout:
        raise
    except (BlobNotFound, BlobBlocked, WalrusProtocolError, ReadLimitExceeded) as exc:
        return BlobFailure(exc.message, unavailable=False)
    except OkaiError as exc:
        return BlobFailure(exc.message)


def _read_document(walrus: WalrusClient, need: Need, limit: int) -> BlobRead:
    """A document the rules parse: the first answer that passes its check, else the last."""
    accept = _acceptor(need)
    try:
        data = walrus.read_bytes(
            need.key,
            need.expected if accept is None else None,
            max_bytes=limit,
            verify_blob_id=False,
            accept=accept,
        )
    except AnswerRefused as refused:
        data = refused.data
    return BlobRead(Digest.of_bytes(data), len(data), data)


def _acceptor(need: Need) -> Acceptor | None:
    """How a manifest's answer is checked before it is taken (None: by its SHA-256)."""
    expected = need.expected
    if expected is None:
        return None
    if need.kind == "dataset-manifest":

        def canonical(data: bytes) -> str | None:
            # okai stores the canonical form, so the bytes' own digest is the quick check.
            if Digest.of_bytes(data) == expected:
                return None
            parsed = parse_json(data)
            if parsed.problem is not None:
                return f"the manifest is {parsed.problem.text}"
            try:
                digest = Digest.of_bytes(parsed.canonical())
            except OkaiError as exc:
                return f"the manifest has no canonical form: {exc.message}"
            return None if digest == expected else f"the manifest hashes to {digest}"

        return canonical
    return None


def _check_quilt_file(
    walrus: WalrusClient,
    need: Need,
    quilt_id: str,
    identifier: str,
    advance: Advance,
    limit: int,
) -> BlobRead:
    """A quilt file (a published image) streamed and hashed against `need.expected`.

    Nothing is kept, not even on disk: a match is all the rules ask of gigabytes.
    A mismatch raises `IntegrityError`, which `read_blob` reports with the digest found.
    """
    if need.expected is None:
        raise OkaiError(f"reading {need.label} from a quilt needs its expected SHA-256")
    walrus.check_quilt_file(
        quilt_id,
        identifier,
        need.expected,
        expected_size=need.size,
        max_bytes=limit,
        on_progress=advance,
    )
    return BlobRead(need.expected, None)  # the digest is the registered one; size unread


# ---------------------------------------------------------------- re-training


def _reproduce(
    evaluation: Evaluation,
    reproducer: Reproducer | None,
    workdir: Path | None,
    ui: Progress,
    network: str,
) -> Reproduction:
    attested = evaluation.facts.attested
    if attested is None or evaluation.checks["attestation.matches-record"].status != PASSED:
        return Reproduction(skipped="needs the recorded attestation, matching the record")
    if not attested.job.deterministic:
        return Reproduction(
            skipped="the job is not deterministic (deterministic: false), so re-training "
            "cannot reproduce it bit for bit"
        )
    assert reproducer is not None
    recorded = attested.attestation
    digest = str(evaluation.facts.model_digest)
    for line in before_reproduction(recorded.libraries, recorded.flake_revision, digest, network):
        ui.info(line)
    ui.info(f"re-training job {attested.job.name!r} to compare the model bytes")
    try:
        if workdir is not None:
            workdir.mkdir(parents=True, exist_ok=True)
            return Reproduction(digest=reproducer(attested.job, workdir))
        with tempfile.TemporaryDirectory(prefix="okai-reproduce-") as scratch:
            return Reproduction(digest=reproducer(attested.job, Path(scratch)))
    except (UsageError, VerifyTimeout):
        raise
    except OkaiError as exc:
        return Reproduction(error=exc.message)


# ---------------------------------------------------------------- witnesses


def _witness(registry: RegistryReader, evaluation: Evaluation) -> WitnessOutcome:
    """Record this account's reproduction witness, once the reproduction passed."""
    check = evaluation.checks["reproduce"]
    digest = evaluation.facts.model_digest
    if check.status != PASSED or digest is None:
        return WitnessOutcome("not recorded", f"the reproduction did not pass: {check.reason}")
    client, signer = _signing(registry)
    mine = signer.address.lower()
    if any(account.lower() == mine for account in evaluation.facts.witnesses):
        return WitnessOutcome("already witnessed", f"{signer.address} witnessed it before")
    record = evaluation.facts.record
    assert record is not None  # the reproduction passed, so there was a claim
    transaction: Transaction = client.attest_reproduction(digest, record.submitter)
    return WitnessOutcome("recorded", f"{signer.address} witnessed it", transaction)
