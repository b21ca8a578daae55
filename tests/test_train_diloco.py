"""The `sync` strategy of a job: DDP (default, unchanged digests) and DiLoCo.

The DiLoCo runs are real: torchrun, 2 gloo processes, data from a blob store.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from cluster_helpers import digits_stack
from conftest import call_okai, run_okai
from okai.digest import Digest
from okai.errors import DocumentError, UsageError
from okai.manifest import DilocoSync, JobSpec, ManifestRef
from okai.provenance.attestation import Attestation, build_attestation
from okai.train import (
    LaunchOptions,
    LocalShardSource,
    Receipt,
    RunResult,
    SourceSpec,
    digits_files,
    digits_job,
    job_from_toml,
    job_to_toml,
    launch,
)
from okai.train.advice import LinkMeasure, ddp_advice, ddp_network_seconds, ring_bytes
from okai.train.launch import _MetricsFollower
from okai.train.models.digits_cnn import DigitsCNN
from okai.train.sync import Diloco
from okai.verify.report import _attested_json
from okai.verify.rules import Attested
from test_train_job import GOOD
from train_helpers import worker_pid

RUN_TIMEOUT = 300
INNER_STEPS = 50
CHECKPOINT_EVERY = 7
"""Never a multiple of INNER_STEPS within the run: every checkpoint is mid-phase."""
EPOCHS = 8  # 22 steps an epoch: 176 steps, outer steps after 50, 100, 150 and 176

DILOCO = """
[sync]
strategy = "diloco"
inner_steps = 50
outer_lr = 0.7
outer_momentum = 0.9
compression = "bf16"
"""


# ------------------------------------------------------------------ the job document


def test_a_job_that_names_ddp_is_the_job_that_does_not() -> None:
    plain = job_from_toml(GOOD, "job.toml")
    named = job_from_toml(GOOD + '\n[sync]\nstrategy = "ddp"\n', "job.toml")
    assert named == plain and named.sync is None
    assert named.digest() == plain.digest()
    assert "sync" not in plain.to_json()


def test_diloco_settings_are_part_of_the_job_and_its_digest() -> None:
    job = job_from_toml(GOOD + DILOCO, "job.toml")
    assert job.to_json()["sync"] == {
        "strategy": "diloco",
        "innerSteps": 50,
        "outerLr": 0.7,
        "outerMomentum": 0.9,
        "compression": "bf16",
    }
    assert job_from_toml(job_to_toml(job), "again.toml") == job
    assert JobSpec.from_json_bytes(job.canonical_bytes(), "job.json") == job
    other = job_from_toml(GOOD + DILOCO.replace("inner_steps = 50", "inner_steps = 51"), "j")
    assert len({job.digest(), other.digest(), job_from_toml(GOOD, "j").digest()}) == 3


@pytest.mark.parametrize(
    ("old", "new", "field", "problem"),
    [
        ("inner_steps = 50", "inner_steps = 0", "sync.inner_steps", "greater than or equal to 1"),
        ("outer_lr = 0.7", "outer_lr = -0.1", "sync.outer_lr", "greater than 0"),
        ("outer_momentum = 0.9", "outer_momentum = 1.0", "sync.outer_momentum", "less than 1"),
        ('compression = "bf16"', 'compression = "int4"', "sync.compression", "'fp16'"),
        ("inner_steps = 50", "inner_step = 50", "sync.inner_step", "unknown field"),
        ('strategy = "diloco"', 'strategy = "gossip"', "sync.strategy", "'diloco'"),
    ],
)
def test_bad_sync_settings_are_field_errors(old: str, new: str, field: str, problem: str) -> None:
    with pytest.raises(DocumentError) as caught:
        job_from_toml(GOOD + DILOCO.replace(old, new), "bad.toml")
    assert (caught.value.source, caught.value.field) == ("bad.toml", field)
    assert problem in caught.value.problem


def test_okai_train_refuses_a_bad_sync_setting_with_exit_2(okai_home: Path) -> None:
    (okai_home / "bad.toml").write_text(GOOD + DILOCO.replace("= 50", "= 0"), encoding="utf-8")
    result = call_okai("train", "bad.toml", "--data", str(okai_home))
    assert result.returncode == 2, result.stderr
    assert "bad.toml: field 'sync.inner_steps'" in result.stderr


# ------------------------------------------------------------------ the algorithm, one process


def test_one_rank_outer_lr_1_without_momentum_is_plain_local_training() -> None:
    """The outer step applies the averaged change; alone and undamped it changes nothing."""
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    twin = nn.Linear(4, 3)
    twin.load_state_dict(model.state_dict())
    spec = DilocoSync(strategy="diloco", inner_steps=3, outer_lr=1.0, outer_momentum=0.0)
    diloco = Diloco(spec, world_size=1)
    diloco.wrap(model)
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.1) for m in (model, twin)]
    for step in range(1, 8):
        x = torch.randn(5, 4)
        for m, optimizer in zip((model, twin), optimizers, strict=True):
            optimizer.zero_grad()
            m(x).square().sum().backward()
            optimizer.step()
        figures = diloco.after_step(model, step, final_step=7)
        assert figures == {
            "innerStep": (step - 1) % 3 + 1,
            "outerStep": [0, 0, 1, 1, 1, 2, 3][step - 1],
        }
    for ours, theirs in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    assert diloco.bytes_sent == 0  # nothing to send without a process group


def test_outer_momentum_moves_the_reference_past_the_local_change() -> None:
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    spec = DilocoSync(strategy="diloco", inner_steps=1, outer_lr=0.5, outer_momentum=0.9)
    diloco = Diloco(spec, world_size=1)
    diloco.wrap(model)
    with torch.no_grad():
        model.weight.fill_(0.0)  # the inner phase moved every weight by -1: delta = 1
    diloco.after_step(model, 1, final_step=10)
    # Nesterov SGD: buffer = 1, update = grad + 0.9 * buffer = 1.9, times lr 0.5.
    torch.testing.assert_close(model.weight, torch.full((1, 2), 1.0 - 0.95))


def test_ring_bytes_is_the_share_one_rank_sends() -> None:
    assert ring_bytes(1000, 1) == 0
    assert ring_bytes(1000, 2) == 1000
    assert ring_bytes(1000, 4) == 1500


# ------------------------------------------------------------------ real 2-process runs


@pytest.fixture(scope="module")
def data_source(tmp_path_factory: pytest.TempPathFactory) -> tuple[SourceSpec, ManifestRef]:
    root = tmp_path_factory.mktemp("store")
    ref, _ = LocalShardSource(root).put_dataset("digits", digits_files())
    return SourceSpec.local(root), ref


@pytest.fixture(scope="module")
def job(data_source: tuple[SourceSpec, ManifestRef]) -> JobSpec:
    base = digits_job((data_source[1],), epochs=EPOCHS, checkpoint_every=CHECKPOINT_EVERY)
    sync = DilocoSync(strategy="diloco", inner_steps=INNER_STEPS, outer_lr=0.7, compression="bf16")
    return base.model_copy(update={"sync": sync})


@pytest.fixture(scope="module")
def reference(
    job: JobSpec,
    data_source: tuple[SourceSpec, ManifestRef],
    tmp_path_factory: pytest.TempPathFactory,
) -> RunResult:
    run_dir = tmp_path_factory.mktemp("runs") / "diloco"
    return launch(job, LaunchOptions(source=data_source[0], run_dir=run_dir))


def events(run_dir: Path, kind: str) -> list[dict[str, object]]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == kind]


@pytest.mark.slow
def test_diloco_trains_and_its_metrics_show_inner_and_outer_steps_and_bytes(
    reference: RunResult, job: JobSpec
) -> None:
    assert reference.receipt is not None
    assert reference.receipt.job == job and reference.receipt.job_sha256 == job.digest()
    assert float(reference.receipt.metrics["testAccuracy"]) >= 0.9
    steps = events(reference.run_dir, "step")
    assert [s["innerStep"] for s in steps[:3]] == [1, 2, 3]
    assert [s["outerStep"] for s in steps if s["innerStep"] == 1][:4] == [0, 1, 2, 3]
    assert (steps[49]["innerStep"], steps[49]["outerStep"]) == (50, 1)
    assert (steps[-1]["step"], steps[-1]["innerStep"], steps[-1]["outerStep"]) == (176, 26, 4)
    last = events(reference.run_dir, "epoch")[-1]
    parameters = sum(p.numel() for p in DigitsCNN().parameters())
    # 4 outer steps of bf16 deltas, this rank's share of a ring all-reduce of two
    assert (last["outerSteps"], last["bytesSent"]) == (4, 4 * ring_bytes(2 * parameters, 2))
    assert events(reference.run_dir, "start")[0]["sync"] == "diloco"
    # The attestation names the strategy and its settings, in the job it carries.
    attestation = build_attestation(reference.receipt)
    parsed = Attestation.from_data(json.loads(attestation.canonical_bytes()), "attestation")
    assert parsed.job == job and parsed.job_digest == job.digest()
    assert parsed.to_json()["predicate"]["buildDefinition"]["externalParameters"]["job"][
        "sync"
    ] == {**job.sync.to_json()}  # type: ignore[union-attr]
    # and `okai verify`'s report shows it (DDP reports stay as they were: no `sync`)
    attested = Attested(
        attestation=parsed,
        job=parsed.job,
        job_digest=parsed.job_digest,
        datasets=(),
        image_digest=Digest("sha256:" + "0" * 64),
        system_toplevel=None,
    )
    assert _attested_json(attested)["job"]["sync"]["innerSteps"] == INNER_STEPS


@pytest.mark.slow
def test_the_same_diloco_job_trains_the_same_model_bytes(
    reference: RunResult, job: JobSpec, data_source: tuple[SourceSpec, ManifestRef], okai_home: Path
) -> None:
    (okai_home / "job.toml").write_text(job_to_toml(job), encoding="utf-8")
    result = run_okai(
        "--json", "train", "job.toml", "--data", data_source[0].location, timeout=RUN_TIMEOUT
    )
    assert result.returncode == 0, result.stderr
    receipt = json.loads(result.stdout)["receipt"]
    assert reference.receipt is not None
    assert receipt["modelSha256"] == reference.receipt.model_sha256
    assert receipt["job"]["sync"]["strategy"] == "diloco"
    # and the strategy matters: the DDP job of the same settings trains other bytes
    ddp = Path(okai_home / "ddp.toml")
    ddp.write_text(job_to_toml(job.model_copy(update={"sync": None, "checkpoint_every": 0})))
    result = run_okai(
        "--json", "train", "ddp.toml", "--data", data_source[0].location, timeout=RUN_TIMEOUT
    )
    assert result.returncode == 0, result.stderr
    ddp_run = Path(json.loads(result.stdout)["runDir"])
    assert json.loads(result.stdout)["receipt"]["modelSha256"] != reference.receipt.model_sha256
    ddp_bytes = events(okai_home / ddp_run, "epoch")[-1]["bytesSent"]
    assert ddp_bytes == 176 * ring_bytes(4 * sum(p.numel() for p in DigitsCNN().parameters()), 2)


@pytest.mark.slow
def test_a_rank_killed_mid_inner_phase_resumes_to_the_same_model_bytes(
    reference: RunResult, job: JobSpec, data_source: tuple[SourceSpec, ManifestRef], tmp_path: Path
) -> None:
    """Killed after a checkpoint past the first outer step: the outer momentum, the reference
    and both ranks' own parameters and Adam states must all come back."""
    run_dir = tmp_path / "killed"
    killed: list[int] = []

    def kill_rank_1_after_an_outer_step() -> None:
        deadline = time.monotonic() + RUN_TIMEOUT
        latest = run_dir / "checkpoints" / "latest"
        while time.monotonic() < deadline and not (run_dir / "receipt.json").exists():
            try:
                step = int(latest.read_text().strip().removeprefix("step-"))
            except (FileNotFoundError, ValueError):
                step = 0
            pid = worker_pid(run_dir, 1) if step > INNER_STEPS else None
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                killed.append(step)
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_rank_1_after_an_outer_step, daemon=True)
    killer.start()
    result = launch(job, LaunchOptions(source=data_source[0], run_dir=run_dir))
    killer.join(timeout=5)
    assert killed, "the run finished before a checkpoint could be followed by a kill"
    starts = events(run_dir, "start")
    resumed = starts[-1]["resumedFromStep"]
    assert len(starts) == 2 and isinstance(resumed, int) and resumed >= killed[0]
    assert resumed > INNER_STEPS and resumed % INNER_STEPS != 0, "resumed mid-phase"
    assert result.receipt is not None and reference.receipt is not None
    assert result.receipt.model_sha256 == reference.receipt.model_sha256
    assert result.receipt.model_sha256 == Digest.of_file(run_dir / "model.safetensors")
    assert events(run_dir, "epoch")[-1] == events(reference.run_dir, "epoch")[-1] | {
        key: events(run_dir, "epoch")[-1][key]
        for key in ("samplesPerSecond", "dataWaitSeconds", "stepSeconds", "syncSeconds")
    }


def test_a_checkpoint_of_another_world_size_is_refused() -> None:
    spec = DilocoSync(strategy="diloco", inner_steps=2)
    model = nn.Linear(2, 2)
    optimizer = torch.optim.Adam(model.parameters())
    alone = Diloco(spec, world_size=1)
    alone.wrap(model)
    state = alone.state(model, optimizer)
    pair = Diloco(spec, world_size=2)
    pair.wrap(model)
    with pytest.raises(UsageError, match="holds 1 DiLoCo replicas, this run has 2 ranks"):
        pair.load(state, model, optimizer, rank=0)


# ------------------------------------------------------------------ guidance


def test_ddp_on_a_slow_link_is_warned_about_and_names_diloco() -> None:
    slow = LinkMeasure(mbit_per_second=50, rtt_ms=40)
    advice = ddp_advice(1_130_000, 2, slow, compute_seconds=0.010)
    assert advice is not None
    assert "about 99% of each step on the network" in advice
    assert "(763 ms a step: 4.5 MB of gradients over 50 Mbit/s with 40 ms round trips)" in advice
    assert 'strategy = "diloco"' in advice
    # 4.5 MB at 50 Mbit/s: 0.72 s, plus one round trip
    assert ddp_network_seconds(1_130_000, 2, slow) == pytest.approx(0.76, abs=0.01)


@pytest.mark.parametrize(
    ("parameters", "world_size", "link", "compute_seconds"),
    [
        (1_130_000, 2, LinkMeasure(10_000, 0.1), 0.010),  # a data-centre fabric
        (1_130_000, 1, LinkMeasure(50, 40), 0.010),  # one rank sends nothing
        (38_282, 2, LinkMeasure(500, 10), 0.100),  # a small model with slow steps
    ],
)
def test_ddp_where_the_network_does_not_dominate_is_not_warned_about(
    parameters: int, world_size: int, link: LinkMeasure, compute_seconds: float
) -> None:
    assert ddp_advice(parameters, world_size, link, compute_seconds) is None


def test_the_warning_in_the_metrics_reaches_the_progress_of_okai_train(tmp_path: Path) -> None:
    """The worker writes the advice into one step line; every later progress update keeps it."""
    metrics = tmp_path / "metrics.jsonl"
    lines = [
        {"event": "start", "epochs": 1, "stepsPerEpoch": 3},
        {"event": "step", "epoch": 0, "step": 1, "loss": 1.0},
        {"event": "step", "epoch": 0, "step": 2, "loss": 0.9, "advice": "DDP would spend"},
    ]
    metrics.write_text("".join(json.dumps(line) + "\n" for line in lines))
    follower = _MetricsFollower(metrics)
    first = follower.poll()
    assert first is not None and first.advice == "DDP would spend"
    with metrics.open("a") as stream:
        stream.write(json.dumps({"event": "step", "epoch": 0, "step": 3, "loss": 0.8}) + "\n")
    later = follower.poll()
    assert later is not None and (later.step, later.advice) == (3, "DDP would spend")


@pytest.mark.slow
def test_a_local_cluster_trains_a_diloco_job_to_the_same_model_bytes(
    reference: RunResult, job: JobSpec, tmp_path: Path
) -> None:
    """`okai cluster up`: two node agents, one process each, data from a Walrus server."""
    with digits_stack(tmp_path) as stack:
        on_nodes = job.model_copy(
            update={"datasets": (stack.dataset,), "nodes": 2, "procs_per_node": 1}
        )
        done = run_okai(
            "--json", "cluster", "up", str(stack.job_file("diloco", on_nodes)),
            "--provider", "local", "--name", "diloco", timeout=RUN_TIMEOUT,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        run_okai("cluster", "down", "diloco", check=True)
    outcome = json.loads(done.stdout)
    receipt = Receipt.load(tmp_path / outcome["runDir"] / "receipt.json")
    assert (receipt.nodes, receipt.world_size, receipt.job.sync) == (2, 2, job.sync)
    assert reference.receipt is not None
    assert receipt.model_sha256 == reference.receipt.model_sha256
