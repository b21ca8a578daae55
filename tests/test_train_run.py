"""Real distributed runs: torchrun, 2 gloo processes, data from a blob store.

The data comes through `data_source`, a local blob store laid out like Walrus;
a Walrus-backed fixture yielding the same (SourceSpec, ManifestRef) pair drops
in without touching the tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster_helpers import json_results, two_netns_hosts
from conftest import REPO, run_okai
from okai.digest import Digest
from okai.errors import IntegrityError
from okai.manifest import EntrypointModel, JobSpec, ManifestRef
from okai.train import (
    LaunchOptions,
    LocalShardSource,
    Receipt,
    RunResult,
    SourceSpec,
    digits_files,
    digits_job,
    job_to_toml,
    launch,
)
from train_helpers import RUN_TIMEOUT, kill_after_first_checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_source(tmp_path_factory: pytest.TempPathFactory) -> tuple[SourceSpec, ManifestRef]:
    """The digits dataset in a store, as `okai data push` would leave it."""
    root = tmp_path_factory.mktemp("store")
    ref, _ = LocalShardSource(root).put_dataset("digits", digits_files())
    return SourceSpec.local(root), ref


@pytest.fixture(scope="module")
def job(data_source: tuple[SourceSpec, ManifestRef]) -> JobSpec:
    """The demo job with a checkpoint every 20 steps (12 epochs of 22 steps)."""
    return digits_job((data_source[1],), checkpoint_every=20)


@pytest.fixture(scope="module")
def reference(
    job: JobSpec,
    data_source: tuple[SourceSpec, ManifestRef],
    tmp_path_factory: pytest.TempPathFactory,
) -> RunResult:
    """One uninterrupted run through the Python launcher; other runs are compared with it."""
    run_dir = tmp_path_factory.mktemp("runs") / "reference"
    return launch(job, LaunchOptions(source=data_source[0], run_dir=run_dir))


def receipt_of(result: RunResult) -> Receipt:
    assert result.receipt is not None
    return result.receipt


def test_the_demo_reaches_95_percent_and_leaves_a_complete_run_directory(
    reference: RunResult, job: JobSpec
) -> None:
    receipt = receipt_of(reference)
    run = reference.run_dir
    assert float(receipt.metrics["testAccuracy"]) >= 0.95
    assert receipt.model_sha256 == Digest.of_file(run / "model.safetensors")
    assert receipt.job_sha256 == job.digest() == Digest.of_file(run / "job.json")
    assert receipt.job == job
    assert (receipt.world_size, receipt.nodes, receipt.job.procs_per_node) == (2, 1, 2)
    assert receipt.datasets[0].manifest_blob_id == job.datasets[0].manifest_blob_id  # type: ignore[union-attr]
    assert receipt.host == "unregistered host" and receipt.image is None
    assert receipt.libraries["torch"].startswith("2.") and receipt.started_at <= receipt.finished_at
    assert (run / "training-curve.png").read_bytes().startswith(b"\x89PNG")
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert events[0]["event"] == "start" and events[0]["stepsPerEpoch"] == 22
    assert sum(e["event"] == "step" for e in events) == 12 * 22
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == list(range(12))
    logs = list((run / "logs").rglob("stderr.log"))
    assert len(logs) == 2 and all("4 training files" in p.read_text() for p in logs)


def test_the_same_job_trains_the_same_model_bytes(
    reference: RunResult, job: JobSpec, data_source: tuple[SourceSpec, ManifestRef], okai_home: Path
) -> None:
    """Run again, through the CLI this time: bit-identical model file."""
    (okai_home / "job.toml").write_text(job_to_toml(job), encoding="utf-8")
    result = run_okai(
        "--json", "train", "job.toml", "--data", data_source[0].location, timeout=RUN_TIMEOUT
    )
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["receipt"]["modelSha256"] == receipt_of(reference).model_sha256
    assert Path(output["runDir"]).parent == Path("runs")
    assert output["runId"].startswith("digits-cnn-")


def test_a_worker_killed_mid_run_is_restarted_and_the_model_is_unchanged(
    reference: RunResult, job: JobSpec, data_source: tuple[SourceSpec, ManifestRef], tmp_path: Path
) -> None:
    run_dir = tmp_path / "killed"
    killer, killed = kill_after_first_checkpoint(run_dir)
    result = launch(job, LaunchOptions(source=data_source[0], run_dir=run_dir))
    killer.join(timeout=5)
    assert killed, "the run finished before a checkpoint could be followed by a kill"
    assert receipt_of(result).model_sha256 == receipt_of(reference).model_sha256
    attempts = {p.name for p in (run_dir / "logs").glob("*/attempt_*")}
    assert attempts == {"attempt_0", "attempt_1"}
    starts = [
        json.loads(line)
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
        if '"start"' in line
    ]
    assert starts[0]["resumedFromStep"] is None
    assert starts[1]["resumedFromStep"] == int(killed[0].removeprefix("step-"))
    steps = [
        json.loads(line)["step"]
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
        if '"step"' in line and '"event": "step"' in line
    ]
    assert steps == list(range(1, 12 * 22 + 1))  # cut back to the checkpoint, then continued


def corrupt(blob: Path) -> bytes:
    """Flip one bit in the middle of a stored blob; returns the original bytes."""
    original = blob.read_bytes()
    data = bytearray(original)
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))
    return original


def test_a_corrupted_shard_stops_the_run_with_exit_3_naming_it(
    job: JobSpec, data_source: tuple[SourceSpec, ManifestRef], tmp_path: Path, okai_home: Path
) -> None:
    store = tmp_path / "store"
    subprocess.run(["cp", "-r", data_source[0].location, str(store)], check=True)
    manifest = LocalShardSource(store).manifest(job.datasets[0])  # type: ignore[arg-type]
    shard = next(s for s in manifest.shards if s.path == "train/digits-005.safetensors")
    corrupt(store / "blobs" / shard.blob_id)
    (okai_home / "job.toml").write_text(job_to_toml(job), encoding="utf-8")

    result = run_okai(
        "train", "job.toml", "--data", str(store), "--run-dir", "runs/bad", timeout=RUN_TIMEOUT
    )
    assert result.returncode == 3, result.stderr
    assert "integrity check failed for shard train/digits-005.safetensors" in result.stderr
    assert shard.blob_id in result.stderr and shard.sha256 in result.stderr
    run = okai_home / "runs" / "bad"
    assert not (run / "model.safetensors").exists() and not (run / "receipt.json").exists()
    fatal = json.loads((run / "errors" / "fatal.json").read_text())
    assert (fatal["type"], fatal["rank"]) == ("IntegrityError", 1)  # file 5 is rank 1's


def test_data_spoiled_mid_run_stops_it_and_a_fixed_source_resumes_to_the_same_model(
    reference: RunResult, job: JobSpec, data_source: tuple[SourceSpec, ManifestRef], tmp_path: Path
) -> None:
    """Streaming meets bad bytes only when it reaches them: exit 3, then a restart resumes."""
    store = tmp_path / "store"
    subprocess.run(["cp", "-r", data_source[0].location, str(store)], check=True)
    manifest = LocalShardSource(store).manifest(job.datasets[0])  # type: ignore[arg-type]
    shard = next(s for s in manifest.shards if s.path == "train/digits-005.safetensors")
    blob = store / "blobs" / shard.blob_id
    run_dir = tmp_path / "run"
    original: list[bytes] = []

    def spoil_after_the_first_checkpoint() -> None:
        deadline = time.monotonic() + RUN_TIMEOUT
        while time.monotonic() < deadline and not original:
            if (run_dir / "checkpoints" / "latest").exists():
                original.append(corrupt(blob))
            time.sleep(0.02)

    spoiler = threading.Thread(target=spoil_after_the_first_checkpoint, daemon=True)
    spoiler.start()
    # Each epoch fetches its files through the source again (a bounded cache may have
    # evicted them), so the source's shard check or the file's own check catches it.
    with pytest.raises(IntegrityError, match=r"(data file|shard) train/digits-005\.safetensors"):
        launch(job, LaunchOptions(source=SourceSpec.local(store), run_dir=run_dir))
    spoiler.join(timeout=5)
    assert not (run_dir / "receipt.json").exists()

    blob.write_bytes(original[0])  # the source is fixed; the same command runs again
    result = launch(job, LaunchOptions(source=SourceSpec.local(store), run_dir=run_dir))
    assert receipt_of(result).model_sha256 == receipt_of(reference).model_sha256
    starts = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    resumed = [line["resumedFromStep"] for line in starts if line["event"] == "start"]
    assert resumed[0] is None and resumed[-1] is not None and resumed[-1] >= 20


def test_a_user_entry_point_trains_from_its_verified_blob(
    data_source: tuple[SourceSpec, ManifestRef], tmp_path: Path
) -> None:
    code = (REPO / "examples" / "digits_mlp.py").read_bytes()
    blob_id = LocalShardSource(data_source[0].location).put(code)
    job = JobSpec(
        name="digits-mlp",
        model=EntrypointModel(entrypoint_blob_id=blob_id, sha256=Digest.of_bytes(code)),
        hyperparameters={"epochs": 8, "lr": 0.05},
        datasets=(data_source[1],),
        procs_per_node=2,
    )
    result = launch(job, LaunchOptions(source=data_source[0], run_dir=tmp_path / "mlp"))
    receipt = receipt_of(result)
    assert receipt.code.sha256 == Digest.of_bytes(code)
    assert blob_id in receipt.code.description
    assert float(receipt.metrics["testAccuracy"]) >= 0.9


@pytest.fixture
def two_hosts() -> Iterator[tuple[str, str]]:
    """Two network namespaces joined by a veth pair: hosts 10.77.0.1 and 10.77.0.2."""
    with two_netns_hosts(("10.77.0.1", "10.77.0.2")) as hosts:
        yield hosts


def test_two_hosts_meet_by_c10d_rendezvous_and_train_the_same_model(
    two_hosts: tuple[str, str],
    reference: RunResult,
    job: JobSpec,
    data_source: tuple[SourceSpec, ManifestRef],
    tmp_path: Path,
) -> None:
    """Two nodes of one process each: world size 2, as the 2-process reference run."""
    job_file = tmp_path / "two-nodes.toml"
    job_file.write_text(job_to_toml(job.model_copy(update={"nodes": 2, "procs_per_node": 1})))
    # Inside fresh namespaces every port is free; the endpoint is node A's address.
    endpoint = "10.77.0.1:29400"
    nodes = []
    for host, address in zip(two_hosts, ("10.77.0.1", "10.77.0.2"), strict=True):
        command = [
            "ip", "netns", "exec", host, sys.executable, "-m", "okai", "--json", "train",
            str(job_file), "--rdzv-endpoint", endpoint, "--rdzv-id", "two-hosts",
            "--local-addr", address, "--run-dir", str(tmp_path / host),
            "--data", data_source[0].location,
        ]  # fmt: skip
        nodes.append(
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    outputs = json_results(nodes, RUN_TIMEOUT)
    receipts = [out["receipt"] for out in outputs if out["receipt"] is not None]
    assert len(receipts) == 1, "exactly one node hosts rank 0 and writes the receipt"
    receipt = receipts[0]
    assert (receipt["worldSize"], receipt["nodes"], receipt["job"]["procsPerNode"]) == (2, 2, 1)
    assert receipt["modelSha256"] == receipt_of(reference).model_sha256
    assert {out["runId"] for out in outputs} == {"two-hosts"}
