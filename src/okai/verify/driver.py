"""The verification driver: read what the rules need from the chain and Walrus, then judge.

Shallow verification costs two RPC calls (the chain-ID check and one `getProvenance`
view call) and two small Walrus reads (the attestation and the image manifest).
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
from typing import Protocol

from okai.chain.client import RegistryClient
from okai.chain.errors import ChainError, ModelNotRecorded, WitnessIsSubmitter, WrongChainError
from okai.chain.records import Transaction
from okai.digest import CHUNK_SIZE, Digest
from okai.errors import IntegrityError, OkaiError, UsageError
from okai.verify.bounds import Bounds, OverReadLimit, VerifyTimeout
from okai.verify.checks import PASSED, Options
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
from okai.verify.report import VerifyReport, WitnessOutcome
from okai.verify.reproduce import Reproducer
from okai.verify.rules import Evaluation, evaluate, parse_digest
from okai.walrus.client import WalrusClient
from okai.walrus.errors import BlobBlocked, BlobNotFound, WalrusProtocolError

MAX_ROUNDS = 6
"""attestation + image manifest, dataset manifests, shards + image: three in practice."""
READ_WORKERS = 4

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
    registry: RegistryClient,
    walrus: WalrusClient,
    reproducer: Reproducer | None = None,
    witness: bool = False,
    workdir: Path | None = None,
    progress: Progress | None = None,
    bounds: Bounds | None = None,
) -> VerifyReport:
    """Run the requested checks on `target`; with `witness`, record a reproduction on chain.

    `reproducer` is required with `options.reproduce`; `witness` needs it and a signing
    registry client. `workdir` keeps the reproduction's run directory (else a temporary
    one is removed). `bounds`: the deadline and read limit (defaults: `okai.verify.bounds`).
    """
    ui = progress or Silent()
    bounds = bounds or Bounds()
    if witness and not options.reproduce:
        raise UsageError("--attest records a reproduction, so it needs --reproduce")
    if options.reproduce and reproducer is None:
        raise UsageError("re-training was asked for, but no way to re-train was given")
    network = NetworkId(registry.network.name, registry.network.chain_id)
    model = _model_input(target, ui)
    digest = evaluate(Inputs(options, network, model)).facts.model_digest
    bounds.check("hashing the model")
    chain = None if digest is None else _read_chain(registry, digest)
    bounds.check("reading the registry")
    if witness and isinstance(chain, ChainAnswer) and chain.record is not None:
        _check_may_witness(registry, chain.record.submitter, chain.record.model_digest)
    inputs, evaluation = _read_blobs(Inputs(options, network, model, chain), walrus, ui, bounds)
    if options.reproduce:
        reproduction = _reproduce(evaluation, reproducer, workdir, ui)
        inputs = replace(inputs, reproduction=reproduction)
        evaluation = evaluate(inputs)
    outcome = None
    if witness:
        outcome = _witness(registry, evaluation)
        if outcome.transaction is not None and isinstance(chain, ChainAnswer) and digest:
            witnesses = registry.get_witnesses(digest)
            inputs = replace(inputs, chain=replace(chain, witnesses=witnesses))
            evaluation = evaluate(inputs)
    return VerifyReport(target.describe(), network, options, evaluation, outcome)


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


def _read_chain(registry: RegistryClient, digest: Digest) -> ChainAnswer | ChainFailure:
    """The chain-ID check and one `getProvenance` call: two RPC requests."""
    # web3's validation middleware asks for eth_chainId before and after every eth_call;
    # an endpoint's chain ID does not change, so let web3 cache it (2 requests, not 4).
    # No validation threshold: it would cost one more eth_chainId to pick one.
    registry.provider.cache_allowed_requests = True
    registry.provider.request_cache_validation_threshold = None
    try:
        registry.check_chain()
    except WrongChainError as exc:
        return ChainAnswer(exc.actual, None)
    except ChainError as exc:
        return ChainFailure(exc.message)
    chain_id = registry.network.chain_id
    try:
        provenance = registry.get_provenance(digest)
    except ModelNotRecorded:
        return ChainAnswer(chain_id, None)
    except ChainError as exc:
        return ChainFailure(exc.message)
    return ChainAnswer(chain_id, provenance.model, provenance.image, provenance.witnesses)


def _check_may_witness(registry: RegistryClient, submitter: str, digest: Digest) -> None:
    """Refuse before re-training what the registry would refuse after it."""
    signer = registry.signer
    if signer is None:
        raise UsageError("--attest sends a transaction but no signing key was loaded")
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
            counted = bounds.reading(what, need.size is not None, locked)
            observation = read_blob(walrus, need, scratch, counted)
            bounds.check(what)  # and after it, naming the read that took the time
            return need.key, observation

        with ThreadPoolExecutor(min(READ_WORKERS, len(needs))) as pool:
            return dict(pool.map(read, needs))


def _ignore(n: int) -> None:
    return None


def read_blob(walrus: WalrusClient, need: Need, scratch: Path, advance: Advance) -> BlobObservation:
    """One blob as an observation: its digest (and bytes when kept), or why it failed.

    Reads with an expected digest are checked while streaming; bytes that hash to
    anything else are reported with that digest, so the rules can name it.
    """
    try:
        if need.keep:
            data = walrus.read_bytes(
                need.key, need.expected, max_size=need.max_bytes or 1 << 20, verify_blob_id=False
            )
            return BlobRead(Digest.of_bytes(data), len(data), data)
        quilt_file = parse_quilt_file_key(need.key)
        if quilt_file is not None:
            return _check_quilt_file(walrus, need, *quilt_file, advance)
        with tempfile.NamedTemporaryFile(dir=scratch, delete=False) as handle:
            dest = Path(handle.name)
        try:
            if need.key.startswith(QUILT_PATCH_KEY):
                digest = walrus.read_quilt_patch_to_file(
                    need.key.removeprefix(QUILT_PATCH_KEY),
                    need.expected,
                    dest,
                    on_progress=advance,
                )
            else:
                digest = walrus.read_to_file(
                    need.key,
                    need.expected,
                    dest,
                    expected_size=need.size,
                    verify_blob_id=False,
                    on_progress=advance,
                )
            return BlobRead(digest, dest.stat().st_size)
        finally:
            dest.unlink(missing_ok=True)
    except IntegrityError as exc:
        return BlobRead(Digest.parse(exc.actual), None)
    except VerifyTimeout:
        raise
    except (OverReadLimit, BlobNotFound, BlobBlocked, WalrusProtocolError) as exc:
        return BlobFailure(exc.message, unavailable=False)
    except OkaiError as exc:
        return BlobFailure(exc.message)


def _check_quilt_file(
    walrus: WalrusClient, need: Need, quilt_id: str, identifier: str, advance: Advance
) -> BlobRead:
    """A quilt file (a published image) streamed and hashed against `need.expected`.

    Nothing is kept, not even on disk: a match is all the rules ask of gigabytes.
    A mismatch raises `IntegrityError`, which `read_blob` reports with the digest found.
    """
    if need.expected is None:
        raise OkaiError(f"reading {need.label} from a quilt needs its expected SHA-256")
    walrus.check_quilt_file(
        quilt_id, identifier, need.expected, expected_size=need.size, on_progress=advance
    )
    return BlobRead(need.expected, None)  # the digest is the registered one; size unread


# ---------------------------------------------------------------- re-training


def _reproduce(
    evaluation: Evaluation, reproducer: Reproducer | None, workdir: Path | None, ui: Progress
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


def _witness(registry: RegistryClient, evaluation: Evaluation) -> WitnessOutcome:
    """Record this account's reproduction witness, once the reproduction passed."""
    check = evaluation.checks["reproduce"]
    digest = evaluation.facts.model_digest
    if check.status != PASSED or digest is None:
        return WitnessOutcome("not recorded", f"the reproduction did not pass: {check.reason}")
    signer = registry.signer
    assert signer is not None  # checked before re-training
    mine = signer.address.lower()
    if any(account.lower() == mine for account in evaluation.facts.witnesses):
        return WitnessOutcome("already witnessed", f"{signer.address} witnessed it before")
    transaction: Transaction = registry.attest_reproduction(digest)
    return WitnessOutcome("recorded", f"{signer.address} witnessed it", transaction)
