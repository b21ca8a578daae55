"""`okai verify`'s engine against a real anvil (registry deployed) and the local Walrus server.

Each kind of tampering is made for real (bytes changed on the storage node, the server
corrupting reads, records written by hand) and must be caught and named by check id.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from chain_support import account, blob_id
from okai.chain import RegistryClient
from okai.chain.dev import dev_network
from okai.chain.errors import WitnessIsSubmitter
from okai.config import Network
from okai.digest import Digest
from okai.errors import ConfigError, ExitCode, UsageError
from okai.manifest import JobSpec
from okai.provenance import software
from okai.provenance.record import load_run, record_run
from okai.tls import tls_context
from okai.verify import CHECK_IDS, ModelTarget, Options, TrustPolicy, VerifyReport, verify_model
from okai.verify.bounds import Bounds, VerifyTimeout
from okai.verify.driver import READ_WORKERS, read_blob
from okai.verify.limits import ReadLimits
from okai.verify.observations import BlobFailure, Need
from okai.walrus.client import WalrusClient
from okai.walrus.pacing import ReadPacing
from okai.walrus.server import WalrusServer
from provenance_support import (
    FAST_WALRUS_RETRY,
    OTHER_TOPLEVEL,
    Inputs,
    Stack,
    job_for,
    publish_inputs,
    safetensors_bytes,
    write_run,
)
from provenance_support import inputs_fixture as inputs_fixture
from provenance_support import stack_fixture as stack_fixture

TRUSTED = TrustPolicy(trainers=(account(0).address,), publishers=(account(0).address,))
"""The honest trainer and publisher of these tests: anvil's account 0."""


def recorded(stack: Stack, run_dir: Path, inputs: Inputs, **run: object) -> Path:
    """Write and record a run; returns its model file."""
    write_run(run_dir, inputs, **run)  # type: ignore[arg-type]
    with stack.walrus_client() as walrus:
        record_run(run_dir, registry=stack.registry(), walrus=walrus)
    return run_dir / "model.safetensors"


def verify(
    stack: Stack,
    target: Path | str,
    options: Options | None = None,
    *,
    registry: RegistryClient | None = None,
    **extra: object,
) -> VerifyReport:
    model = ModelTarget(path=target) if isinstance(target, Path) else ModelTarget(given=target)
    extra.setdefault("policy", TRUSTED)
    with stack.walrus_client() as walrus:
        report = verify_model(
            model,
            options or Options(),
            registry=registry or stack.registry(signer=None),
            walrus=walrus,
            **extra,  # type: ignore[arg-type]
        )
    # A finished verification has read everything it needed: nothing may stay pending.
    assert "pending" not in statuses(report).values(), statuses(report)
    assert report.verdict != "pending"
    return report


def statuses(report: VerifyReport) -> dict[str, str]:
    return {check.id: check.status for check in report.checks}


def reason(report: VerifyReport, check_id: str) -> str:
    return report.main.checks[check_id].reason


class Retrainer:
    """Stands in for okai.train at the `Reproducer` seam: writes `values` as the new model."""

    def __init__(self, values: list[float]) -> None:
        self.values = values
        self.jobs: list[JobSpec] = []

    def __call__(self, job: JobSpec, workdir: Path) -> Digest:
        self.jobs.append(job)
        model = workdir / "run" / "model.safetensors"
        model.parent.mkdir(parents=True)
        model.write_bytes(safetensors_bytes(self.values))
        return Digest.of_file(model)


def test_shallow_verification_costs_four_rpc_calls(
    stack: Stack, inputs: Inputs, tmp_path: Path
) -> None:
    model = recorded(stack, tmp_path / "run", inputs, values=[1.0])
    registry = stack.registry(signer=None)
    stack.proxy.reset()

    report = verify(stack, model, registry=registry)

    assert report.verdict == "verified", [c.reason for c in report.checks]
    # The chain ID, the registry's code, a page of claimants, the trusted trainer's claim.
    assert dict(stack.proxy.calls) == {"eth_chainId": 1, "eth_getCode": 1, "eth_call": 2}
    shallow = {"datasets.manifests", "datasets.shards", "image.bytes", "reproduce", "witnesses"}
    assert {s for k, s in statuses(report).items() if k not in shallow} == {"passed"}
    assert {statuses(report)[k] for k in shallow} == {"not checked"}


def test_a_digest_verifies_like_its_file(stack: Stack, inputs: Inputs, tmp_path: Path) -> None:
    model = recorded(stack, tmp_path / "run", inputs, values=[1.5])
    digest = Digest.of_file(model)

    report = verify(stack, " " + digest.upper().replace("SHA256", "sha256") + " ")

    assert report.verdict == "verified"
    assert reason(report, "model.digest") == "digest given, not computed from a file"
    assert report.evaluation.facts.model_digest == digest


def test_a_tampered_model_file_has_no_record(stack: Stack, inputs: Inputs, tmp_path: Path) -> None:
    model = recorded(stack, tmp_path / "run", inputs, values=[2.0])
    model.write_bytes(model.read_bytes()[:-1] + b"\x7f")

    report = verify(stack, model)

    assert statuses(report)["record.exists"] == "failed"
    assert reason(report, "record.exists") == "the registry holds no record of this model"
    assert report.exit_code == ExitCode.VERIFICATION_FAILED


def test_an_attestation_served_corrupted_is_caught(
    stack: Stack, inputs: Inputs, tmp_path: Path
) -> None:
    model = recorded(stack, tmp_path / "run", inputs, values=[3.0])
    stack.walrus.faults.set(corrupt=-1)
    try:
        report = verify(stack, model)
    finally:
        stack.walrus.faults.reset()

    got = statuses(report)
    assert got["attestation.digest"] == "failed"
    assert "the record says" in reason(report, "attestation.digest")
    assert got["attestation.statement"] == "not checked"
    assert report.exit_code == ExitCode.VERIFICATION_FAILED


def verify_by_hand(
    stack: Stack, inputs: Inputs, run_dir: Path, value: float, attestation_blob_id: str
) -> VerifyReport:
    """Write a run, record it by hand with `attestation_blob_id`, and verify it."""
    write_run(run_dir, inputs, values=[value])
    run = load_run(run_dir)
    stack.registry().record_model(
        model_digest=run.model_digest,
        image_digest=run.receipt.chain_image_digest(),
        dataset_digests=[Digest(d.sha256) for d in run.receipt.datasets],
        job_digest=Digest(run.receipt.job_sha256),
        attestation_digest=run.attestation.digest(),
        attestation_blob_id=attestation_blob_id,
    )
    return verify(stack, run.model_path)


def test_a_record_pointing_at_another_blob_is_caught(
    stack: Stack, inputs: Inputs, tmp_path: Path
) -> None:
    real_bytes_not_the_attestation = inputs.raw_ref.blob_id
    report = verify_by_hand(stack, inputs, tmp_path / "run", 4.0, real_bytes_not_the_attestation)

    assert statuses(report)["attestation.digest"] == "failed"
    assert str(Digest.of_bytes(inputs.shard_bytes[inputs.raw_ref.blob_id])) in reason(
        report, "attestation.digest"
    )


def test_an_attestation_blob_that_is_gone_is_named(
    stack: Stack, inputs: Inputs, tmp_path: Path
) -> None:
    report = verify_by_hand(stack, inputs, tmp_path / "run", 4.5, blob_id("never stored"))

    assert statuses(report)["attestation.digest"] == "failed"
    assert "cannot read the attestation blob" in reason(report, "attestation.digest")
    assert report.exit_code == ExitCode.VERIFICATION_FAILED  # a definite 404, not an outage


def test_a_tampered_shard_is_caught_by_deep_verification(stack: Stack, tmp_path: Path) -> None:
    own = publish_inputs(stack, register_image=False, salt=1)  # its own shards, to spoil
    own.image_digest, own.image_manifest_blob = None, None
    model = recorded(stack, tmp_path / "run", own, values=[5.0], host=None)
    shard = own.manifest.shards[1]
    stored = stack.walrus.storage.blob_path(shard.blob_id)
    assert stored is not None
    stored.write_bytes(stored.read_bytes()[:-1] + b"!")

    shallow = verify(stack, model)
    deep = verify(stack, model, Options(deep=True))

    assert statuses(shallow)["datasets.shards"] == "not checked"
    assert statuses(deep)["datasets.manifests"] == "passed"
    assert statuses(deep)["datasets.shards"] == "failed"
    assert "dataset 1, shard 2 (digits.csv)" in reason(deep, "datasets.shards")
    assert deep.exit_code == ExitCode.VERIFICATION_FAILED


def test_deep_verification_reads_every_shard_and_the_image(
    stack: Stack, inputs: Inputs, tmp_path: Path
) -> None:
    model = recorded(stack, tmp_path / "run", inputs, values=[5.5])
    before = stack.walrus.faults.counts()

    report = verify(stack, model, Options(deep=True, image=True))

    assert report.verdict == "verified", [c.reason for c in report.checks]
    assert reason(report, "datasets.shards") == "all 4 shards match their manifests"
    assert reason(report, "image.bytes") == "the image bytes are the registered ones"
    after = stack.walrus.faults.counts()
    # attestation, image manifest, dataset manifest, 3 shards, the raw blob
    assert after["GET blob"] - before.get("GET blob", 0) == 7
    # the image: the file of its quilt, as okai image publish stores it
    assert after["GET by-quilt-id"] - before.get("GET by-quilt-id", 0) == 1
    data = report.to_json()
    assert data["datasets"][0]["manifest"] == {
        "name": "digits",
        "files": 1,
        "shards": 3,
        "bytes": 768,
    }
    assert data["image"]["manifest"]["describesRegisteredImage"] is True
    python = data["image"]["manifest"]["python"]  # the image's Python, as okai image build read it
    assert python["version"] == "3.11.14" and python["extraPackages"] == ["einops"]


def test_a_swapped_image_is_caught(stack: Stack, inputs: Inputs, tmp_path: Path) -> None:
    # The node ran another system than the registered image's toplevel.
    model = recorded(stack, tmp_path / "run", inputs, values=[6.0], host=OTHER_TOPLEVEL)

    report = verify(stack, model)

    assert statuses(report)["image.registered"] == "failed"
    assert "the registered image's is" in reason(report, "image.registered")
    assert statuses(report)["attestation.matches-record"] == "passed"


def test_an_unregistered_host_is_shown_as_such(
    stack: Stack, inputs: Inputs, tmp_path: Path
) -> None:
    model = recorded(stack, tmp_path / "run", inputs, values=[7.0], host=None)

    report = verify(stack, model)

    assert statuses(report)["image.registered"] == "failed"
    assert reason(report, "image.registered").startswith("unregistered host")
    assert report.to_json()["record"]["host"] == "unregistered host"
    assert report.to_json()["image"] is None
    assert report.exit_code == ExitCode.VERIFICATION_FAILED

    # A policy that accepts unregistered hosts (local runs, the demo) verifies it, and says
    # what that leaves unproven.
    accepting = replace(TRUSTED, allow_unregistered_host=True)
    local = verify(stack, model, Options(deep=True), policy=accepting)
    assert local.verdict == "verified" and local.exit_code == ExitCode.OK
    assert statuses(local)["image.registered"] == "passed"
    assert reason(local, "image.registered") == (
        "unregistered host, accepted by the trust policy: the software environment "
        "(image, system) was not attested"
    )


def test_witnesses_are_recorded_once_per_account_and_listed(
    stack: Stack, inputs: Inputs, tmp_path: Path
) -> None:
    model = recorded(stack, tmp_path / "run", inputs, values=[8.0])
    retrainer = Retrainer([8.0])
    witness = stack.registry(signer=account(1))
    reads = stack.walrus.faults.counts().get("GET blob", 0)
    policy = replace(TRUSTED, witnesses=(account(1).address, account(2).address))

    first = verify(
        stack,
        model,
        Options(reproduce=True),
        registry=witness,
        reproducer=retrainer,
        witness=True,
        policy=policy,
    )

    assert statuses(first)["reproduce"] == "passed"
    assert first.verdict == "verified", [c.reason for c in first.checks]
    # The attestation and the image manifest, each read once, re-training or not.
    assert stack.walrus.faults.counts()["GET blob"] - reads == 2
    assert first.witness is not None and first.witness.status == "recorded"
    assert first.witness.transaction is not None
    assert first.evaluation.facts.witnesses == (account(1).address,)
    assert first.main.checks["witnesses"].reason == (
        f"trusted witnesses reproduced it bit for bit: {account(1).address} (1 witness in all)"
    )
    assert retrainer.jobs == [job_for(inputs)]

    sent = stack.proxy.calls["eth_sendRawTransaction"]
    again = verify(
        stack,
        model,
        Options(reproduce=True),
        registry=stack.registry(signer=account(1)),
        reproducer=retrainer,
        witness=True,
        policy=policy,
    )
    assert again.witness is not None and again.witness.status == "already witnessed"
    assert stack.proxy.calls["eth_sendRawTransaction"] == sent

    other = verify(
        stack,
        model,
        Options(reproduce=True),
        registry=stack.registry(signer=account(2)),
        reproducer=Retrainer([8.0]),
        witness=True,
        policy=policy,
    )
    assert other.evaluation.facts.witnesses == (account(1).address, account(2).address)
    listed = verify(stack, model, policy=policy).to_json()
    assert listed["witnesses"] == [account(1).address, account(2).address]
    assert listed["witnessCount"] == 2
    # Witnesses nobody trusts are counted, never named as proof, and never decide the verdict.
    untrusted = verify(stack, model)
    assert untrusted.verdict == "verified"
    assert untrusted.main.checks["witnesses"].status == "not checked"
    assert "2 accounts recorded a reproduction, none of them trusted" in (
        untrusted.main.checks["witnesses"].reason
    )


def test_the_submitter_cannot_witness_and_is_told_before_retraining(
    stack: Stack, inputs: Inputs, tmp_path: Path
) -> None:
    model = recorded(stack, tmp_path / "run", inputs, values=[9.0])
    retrainer = Retrainer([9.0])

    with pytest.raises(WitnessIsSubmitter) as refused:
        verify(
            stack,
            model,
            Options(reproduce=True),
            registry=stack.registry(signer=account(0)),
            reproducer=retrainer,
            witness=True,
        )

    assert refused.value.exit_code == ExitCode.USAGE_ERROR
    assert retrainer.jobs == []


class Said:
    """Keeps what the verification tells the user."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def transfer(self, description: str, total: int | None) -> AbstractContextManager[object]:
        return nullcontext(lambda n: None)

    def info(self, message: str) -> None:
        self.lines.append(message)


def test_reproduce_first_says_whether_the_software_is_the_recorded_one(
    stack: Stack, inputs: Inputs, tmp_path: Path
) -> None:
    here = software.measure()
    same = recorded(stack, tmp_path / "same", inputs, values=[21.0], libraries=here)
    said = Said()
    verify(stack, same, Options(reproduce=True), reproducer=Retrainer([21.0]), progress=said)
    assert said.lines[0] == "same software: bitwise equality expected"
    assert said.lines[1].startswith("re-training job")

    elsewhere = {**here, "torch": "2.9.0", "numpy.blas": "openblas 0.3.20"}
    other = recorded(stack, tmp_path / "other", inputs, values=[22.0], libraries=elsewhere)
    said = Said()
    verify(stack, other, Options(reproduce=True), reproducer=Retrainer([22.0]), progress=said)
    assert said.lines[0] == (
        "different software, so the model bytes may differ: "
        f"torch: recorded 2.9.0, here {here['torch']}; "
        f"numpy.blas: recorded openblas 0.3.20, here {here['numpy.blas']}"
    )
    # The run names its image's okai revision: the next line says how to get that software.
    assert "image's software" in said.lines[1]


def test_a_reproduction_with_other_bytes_fails_and_is_not_witnessed(
    stack: Stack, inputs: Inputs, tmp_path: Path
) -> None:
    model = recorded(stack, tmp_path / "run", inputs, values=[10.0])

    report = verify(
        stack,
        model,
        Options(reproduce=True),
        registry=stack.registry(signer=account(3)),
        reproducer=Retrainer([10.0, 0.0]),
        witness=True,
    )

    assert statuses(report)["reproduce"] == "failed"
    assert report.witness is not None and report.witness.status == "not recorded"
    assert report.evaluation.facts.witnesses == ()
    assert report.exit_code == ExitCode.VERIFICATION_FAILED


def test_a_job_that_is_not_deterministic_is_not_retrained(
    stack: Stack, inputs: Inputs, tmp_path: Path
) -> None:
    job = job_for(inputs, deterministic=False)
    model = recorded(stack, tmp_path / "run", inputs, values=[11.0], job=job)
    retrainer = Retrainer([11.0])

    report = verify(stack, model, Options(reproduce=True), reproducer=retrainer)

    assert statuses(report)["reproduce"] == "not checked"
    assert "not deterministic" in reason(report, "reproduce")
    assert retrainer.jobs == []
    assert report.exit_code == ExitCode.VERIFICATION_FAILED


def test_a_dead_rpc_is_an_operational_failure(stack: Stack, inputs: Inputs, tmp_path: Path) -> None:
    model = recorded(stack, tmp_path / "run", inputs, values=[12.0])
    stack.proxy.dead = True
    try:
        report = verify(stack, model)
    finally:
        stack.proxy.dead = False

    assert statuses(report)["record.exists"] == "failed"
    assert {statuses(report)[c] for c in CHECK_IDS[2:]} == {"not checked"}
    assert report.exit_code == ExitCode.OPERATIONAL_FAILURE


def test_a_dead_walrus_is_an_operational_failure(
    stack: Stack, inputs: Inputs, tmp_path: Path
) -> None:
    model = recorded(stack, tmp_path / "run", inputs, values=[13.0])
    stack.walrus.faults.set(fail=-1, fail_status=503, fail_scope="read")
    try:
        report = verify(stack, model)
    finally:
        stack.walrus.faults.reset()

    assert statuses(report)["attestation.digest"] == "failed"
    assert report.exit_code == ExitCode.OPERATIONAL_FAILURE


def test_an_rpc_on_another_chain_is_caught(stack: Stack, inputs: Inputs, tmp_path: Path) -> None:
    model = recorded(stack, tmp_path / "run", inputs, values=[14.0])
    other = Network.model_validate(
        {**dev_network(stack.proxy.url).model_dump(), "name": "coston2", "chain_id": 114}
    )
    registry = RegistryClient(other, address=stack.registry_address)

    report = verify(stack, model, registry=registry)

    assert statuses(report)["record.exists"] == "failed"
    assert "on chain 31337, but coston2 is chain 114" in reason(report, "record.exists")


def test_attest_needs_reproduce(stack: Stack, inputs: Inputs, tmp_path: Path) -> None:
    model = recorded(stack, tmp_path / "run", inputs, values=[15.0])
    with pytest.raises(UsageError, match="needs --reproduce"):
        verify(stack, model, witness=True)


def test_the_json_report_keeps_its_shape(stack: Stack, inputs: Inputs, tmp_path: Path) -> None:
    model = recorded(stack, tmp_path / "run", inputs, values=[16.0])

    data = verify(stack, model, Options(deep=True)).to_json()

    assert set(data) == {
        "schema",
        "target",
        "modelDigest",
        "network",
        "source",
        "policy",
        "options",
        "verdict",
        "checks",
        "claims",
        "submitters",
        "record",
        "image",
        "attestation",
        "datasets",
        "witnesses",
        "witnessCount",
        "witness",
    }
    assert data["schema"] == "okai.verify-report/v2"
    assert data["source"] == {
        "chainId": 31337,
        "registry": stack.registry_address,
        "rpc": stack.proxy.url,
        "rpcHost": stack.proxy.url.removeprefix("http://"),
        "overridden": [],
    }
    assert data["policy"]["trainers"] == [account(0).address]
    assert [c["submitter"] for c in data["claims"]] == [account(0).address]
    assert [c["id"] for c in data["checks"]] == list(CHECK_IDS)
    assert all(set(c) == {"id", "question", "status", "code", "reason"} for c in data["checks"])
    assert set(data["record"]) == {
        "modelDigest",
        "imageDigest",
        "host",
        "datasetDigests",
        "jobDigest",
        "attestationDigest",
        "attestationBlobId",
        "submitter",
        "recordedAt",
    }
    assert set(data["attestation"]) == {
        "runId",
        "builder",
        "modelFile",
        "startedOn",
        "finishedOn",
        "job",
        "codeDigest",
        "imageDigest",
        "host",
        "libraries",
        "metrics",
    }
    assert set(data["datasets"][1]) == {"index", "kind", "locator", "digest", "manifest"}


# ---------------------------------------------------------------- aggregators as adversaries


@contextmanager
def second_aggregator(stack: Stack, **faults: object) -> Iterator[WalrusServer]:
    """Another aggregator over the stack's store, misbehaving as `faults` say."""
    with WalrusServer(stack.walrus_dir, fake_blob_ids=True).start() as other:
        other.faults.set(**faults)
        yield other


def verify_through(
    stack: Stack, aggregators: list[str], model: Path, options: Options
) -> tuple[VerifyReport, WalrusClient]:
    """Verify with a client reading from `aggregators`, in that order."""
    with WalrusClient(
        aggregators,
        stack.walrus.url,
        retry=FAST_WALRUS_RETRY,
        compute_blob_ids_up_to=0,
        read_pacing=FAST_PACING,
    ) as client:
        report = verify_model(
            ModelTarget(path=model),
            options,
            registry=stack.registry(signer=None),
            walrus=client,
            policy=TRUSTED,
        )
    return report, client


FAST_PACING = ReadPacing(first_byte=3.0, hedge_after=0.3, throughput_window=1.0)


def test_a_lying_aggregator_listed_first_does_not_defeat_deep_verification(
    stack: Stack, inputs: Inputs, tmp_path: Path
) -> None:
    model = recorded(stack, tmp_path / "run", inputs, values=[17.0])
    with second_aggregator(stack, corrupt=-1) as liar:
        report, client = verify_through(
            stack, [liar.url, stack.walrus.url], model, Options(deep=True, image=True)
        )

    assert report.verdict == "verified", [c.reason for c in report.checks]
    book = client.book.report()
    assert list(book["demoted"]) == [liar.url]
    assert "wrong bytes from " + liar.url in book["demoted"][liar.url]
    assert any(e["event"] == "fallback" for e in book["events"])
    # Two documents were asked of it before its first lie was seen; after that, nothing.
    assert liar.faults.counts().get("GET blob", 0) <= READ_WORKERS


def test_a_stalling_aggregator_listed_first_costs_a_hedge_not_a_timeout_per_blob(
    stack: Stack, inputs: Inputs, tmp_path: Path
) -> None:
    model = recorded(stack, tmp_path / "run", inputs, values=[18.0])
    with second_aggregator(stack, stall=-1) as stalled:
        report, client = verify_through(
            stack, [stalled.url, stack.walrus.url], model, Options(deep=True, image=True)
        )

    assert report.verdict == "verified", [c.reason for c in report.checks]
    demotions = [e for e in client.book.events() if e.kind == "demotion"]
    assert [e.aggregator for e in demotions] == [stalled.url]
    # Of the 8 reads, only those of the first round reached it.
    counts = stalled.faults.counts()
    assert counts.get("GET blob", 0) + counts.get("GET by-quilt-id", 0) <= 2


def test_deep_verification_through_the_cli_reports_the_fall_over(
    stack: Stack, inputs: Inputs, tmp_path: Path, okai_home: Path
) -> None:
    model = recorded(stack, tmp_path / "run", inputs, values=[19.0])
    env = {**os.environ, **stack.env()}
    with second_aggregator(stack, corrupt=-1) as liar:
        env["OKAI_WALRUS_AGGREGATORS"] = f"{liar.url},{stack.walrus.url}"
        done = subprocess.run(
            [
                *(sys.executable, "-m", "okai", "verify", "--deep", "--json", str(model)),
                *("--trainer", account(0).address, "--publisher", account(0).address),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(done.stdout)
    assert data["verdict"] == "verified"
    assert list(data["aggregators"]["demoted"]) == [liar.url]
    assert {e["event"] for e in data["aggregators"]["events"]} >= {"failure", "fallback"}


def test_every_read_is_bounded(stack: Stack, inputs: Inputs, tmp_path: Path) -> None:
    model = recorded(stack, tmp_path / "run", inputs, values=[20.0])

    tight = verify(stack, model, Options(deep=True), bounds=Bounds(limits=ReadLimits(blob=200)))
    assert statuses(tight)["datasets.shards"] == "failed"
    assert "too large" in reason(tight, "datasets.shards")
    assert "200 bytes allowed" in reason(tight, "datasets.shards")
    assert tight.exit_code == ExitCode.VERIFICATION_FAILED

    small = verify(stack, model, Options(deep=True), bounds=Bounds(limits=ReadLimits(manifest=100)))
    assert statuses(small)["datasets.manifests"] == "failed"
    assert "too large" in reason(small, "datasets.manifests")

    # A raw blob has no manifest to give its size: the limit alone bounds it.
    raw = Need(inputs.raw_ref.blob_id, False, None, "raw", Digest(inputs.raw_ref.sha256))
    with stack.walrus_client() as walrus:
        seen = read_blob(walrus, raw, tmp_path, lambda n: None, ReadLimits(blob=8))
    assert isinstance(seen, BlobFailure) and not seen.unavailable
    assert "too large" in seen.error


def test_read_limits_come_from_the_environment() -> None:
    limits = ReadLimits.from_env({"OKAI_VERIFY_MAX_BLOB_BYTES": "1000"})
    assert limits == ReadLimits(blob=1000)
    with pytest.raises(ConfigError, match="OKAI_VERIFY_MAX_MANIFEST_BYTES"):
        ReadLimits.from_env({"OKAI_VERIFY_MAX_MANIFEST_BYTES": "-1"})


class SlowAggregator:
    """An aggregator in front of the stack's Walrus server that waits before each answer."""

    def __init__(self, upstream: str, delay: float) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return None

            def do_GET(self) -> None:
                time.sleep(delay)
                reply = httpx.get(upstream + self.path, timeout=30, verify=tls_context())
                self.send_response(reply.status_code)
                self.send_header("Content-Length", str(len(reply.content)))
                self.end_headers()
                self.wfile.write(reply.content)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_running_out_of_time_names_the_slow_read(
    stack: Stack, inputs: Inputs, tmp_path: Path
) -> None:
    model = recorded(stack, tmp_path / "run", inputs, values=[31.0])
    slow = SlowAggregator(stack.walrus.url, delay=6.0)
    try:
        walrus = stack.walrus_client()
        walrus_slow = WalrusClient([slow.url], stack.walrus.url, retry=walrus.retry, timeout=10.0)
        with walrus_slow, pytest.raises(VerifyTimeout) as stopped:
            verify_model(
                ModelTarget(path=model),
                Options(),
                registry=stack.registry(signer=None),
                walrus=walrus_slow,
                bounds=Bounds(timeout_s=4),
            )
    finally:
        slow.close()
    assert re.search(
        r"ran past its 4 s while reading (attestation|image manifest)", str(stopped.value)
    )
    assert "--timeout" in (stopped.value.hint or "")
