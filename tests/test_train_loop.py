"""okai's training loop in one process: checkpoints, resume, determinism, model files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from torch import nn

from okai.errors import UsageError
from okai.manifest import JobSpec
from okai.train import DataPlan, LocalShardSource, digits_files, digits_job, partition
from okai.train.checkpoint import Checkpointer
from okai.train.context import Context
from okai.train.loader import RankStream, fetch
from okai.train.metrics import MetricsLog, read_metrics
from okai.train.models.digits_cnn import DigitsCNN
from okai.train.outputs import save_model


class Interrupted(Exception):
    pass


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """As in a deterministic worker; several threads also crawl on a busy small machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalShardSource, JobSpec]:
    source = LocalShardSource(tmp_path_factory.mktemp("store"))
    files = digits_files(train_shards=4)
    ref, _ = source.put_dataset("digits", files)
    return source, digits_job((ref,), procs_per_node=1, epochs=2, checkpoint_every=7)


def context(source: LocalShardSource, job: JobSpec, run_dir: Path) -> Context:
    run_dir.mkdir(parents=True, exist_ok=True)
    plan = DataPlan.build([source.manifest(ref) for ref in job.datasets])  # type: ignore[arg-type]
    return Context(
        job=job,
        run_dir=run_dir,
        rank=0,
        world_size=1,
        local_rank=0,
        device=torch.device("cpu"),
        train_data=RankStream(fetch(source, partition(plan.train, 0, 1)), seed=job.seed, rank=0),
        test_data=RankStream(fetch(source, partition(plan.test, 0, 1)), seed=job.seed, rank=0),
        metrics=MetricsLog(run_dir / "metrics.jsonl", enabled=True),
        checkpoints=Checkpointer(run_dir, job_digest=job.digest(), writer=True),
    )


def train(ctx: Context, fail_at_step: int | None = None) -> nn.Module:
    torch.manual_seed(ctx.seed)
    model = DigitsCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.003)
    steps = 0

    def loss_fn(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        nonlocal steps
        steps += 1
        if steps == fail_at_step:
            raise Interrupted
        return nn.functional.cross_entropy(output, target)

    return ctx.fit(model, optimizer, epochs=2, batch_size=32, loss_fn=loss_fn)


def test_a_run_resumed_from_a_checkpoint_equals_an_uninterrupted_one(
    store: tuple[LocalShardSource, JobSpec], tmp_path: Path
) -> None:
    source, job = store
    whole = train(context(source, job, tmp_path / "whole"))
    with pytest.raises(Interrupted):
        train(context(source, job, tmp_path / "resumed"), fail_at_step=40)
    resumed_ctx = context(source, job, tmp_path / "resumed")
    assert resumed_ctx.checkpoints.latest() == 35  # every 7 steps; step 40 never finished
    resumed = train(resumed_ctx)
    assert save_model(whole, tmp_path / "a.safetensors") == save_model(
        resumed, tmp_path / "b.safetensors"
    )

    # The metrics file is cut back to the checkpoint, so both read the same apart from timings.
    def figures(run: str) -> list[tuple[object, ...]]:
        return [
            (r["event"], r.get("step"), r.get("loss"), r.get("trainLoss"), r.get("testAccuracy"))
            for r in read_metrics(tmp_path / run / "metrics.jsonl")
            if r["event"] != "start"
        ]

    assert figures("whole") == figures("resumed")
    assert sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir()) == [
        "latest",
        "step-000000077",
        "step-000000084",
    ]


def test_checkpoints_of_another_job_are_refused(
    store: tuple[LocalShardSource, JobSpec], tmp_path: Path
) -> None:
    source, job = store
    with pytest.raises(Interrupted):
        train(context(source, job, tmp_path / "run"), fail_at_step=10)
    other = job.model_copy(update={"seed": 99})
    with pytest.raises(UsageError, match="belong to job"):
        train(context(source, other, tmp_path / "run"))


def test_a_batch_larger_than_a_rank_s_data_is_a_usage_error(
    store: tuple[LocalShardSource, JobSpec], tmp_path: Path
) -> None:
    source, job = store
    ctx = context(source, job, tmp_path / "run")
    model = DigitsCNN()
    with pytest.raises(UsageError, match="lower batch_size"):
        ctx.fit(model, torch.optim.SGD(model.parameters(), lr=0.1), epochs=1, batch_size=10**6)


def test_the_model_file_holds_tensors_and_fixed_metadata_only(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = DigitsCNN()
    path = tmp_path / "model.safetensors"
    first = save_model(model, path)
    assert save_model(model, tmp_path / "again.safetensors") == first
    with safe_open(str(path), "pt") as opened:
        assert opened.metadata() == {"format": "pt"}
        assert set(opened.keys()) == set(model.state_dict())
