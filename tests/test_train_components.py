"""The parts `ctx.fit` is built from (okai.train.trainer), each alone, without a dataset."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from okai.errors import UsageError
from okai.manifest import DilocoSync
from okai.train.checkpoint import CheckpointSchedule
from okai.train.evaluation import IGNORE, Evaluation, Evaluator, hits
from okai.train.learner import Learner, StepResult
from okai.train.metrics import EpochClock, FitLog, MetricsLog, Summary, read_metrics
from okai.train.ranks import Ranks
from okai.train.seeding import StepSeeds
from okai.train.sync import Ddp, Diloco
from okai.train.trainer import FitOptions, Tally

CPU = torch.device("cpu")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_schedule_saves_every_n_steps_but_never_at_the_last() -> None:
    every_3 = CheckpointSchedule(every=3, final_step=9)
    assert [s for s in range(1, 10) if every_3.due(s, epoch_end=False)] == [3, 6]
    assert not any(every_3.due(s, epoch_end=True) for s in (3, 6, 9))
    per_epoch = CheckpointSchedule(every=0, final_step=9)
    assert [s for s in (3, 6, 9) if per_epoch.due(s, epoch_end=True)] == [3, 6]
    assert not any(per_epoch.due(s, epoch_end=False) for s in range(1, 10))


def test_clock_leaves_pauses_out_of_the_epoch_and_the_rate() -> None:
    clock = FakeClock()
    waited = [0.5]
    epoch = EpochClock(64, lambda: waited[0], clock)
    clock.now += 2.0
    assert epoch.step() == 32.0  # 64 samples in 2 s
    with epoch.paused():
        clock.now += 10.0  # an evaluation: not training time
    clock.now += 1.0
    assert epoch.step() == pytest.approx(0.9 * 32.0 + 0.1 * 64.0)
    waited[0] = 0.75
    took = epoch.finish()
    assert (took.samples, took.seconds, took.wait_seconds) == (128, 3.0, 0.25)


def test_clock_counts_a_raising_pause_too() -> None:
    clock = FakeClock()
    epoch = EpochClock(8, lambda: 0.0, clock)
    with pytest.raises(RuntimeError), epoch.paused():
        clock.now += 5.0
        raise RuntimeError
    assert epoch.finish().seconds == 0.0


def test_fit_log_writes_the_lines_and_keeps_the_summary(tmp_path: Path) -> None:
    metrics = MetricsLog(tmp_path / "metrics.jsonl", enabled=True)
    summary = Summary()
    log = FitLog(metrics, summary, bits_per_byte=True)
    log.start(worldSize=1)
    log.step(0, 1, float("nan"), 12.34, {"innerStep": 1})
    log.evaluation(0, 1, Evaluation(loss=2.0, accuracy=0.5, samples=4))
    clock = FakeClock()
    epoch = EpochClock(10, lambda: 0.0, clock)
    epoch.step()
    clock.now += 2.0
    took = epoch.finish()
    totals = torch.tensor([6.0, 1.0, 4.0], dtype=torch.float64)
    log.epoch(0, 1, totals, None, took, {"bytesSent": 0})
    metrics.close()
    start, step, evaluation, end = read_metrics(tmp_path / "metrics.jsonl")
    assert start == {"event": "start", "worldSize": 1}
    assert step["loss"] is None and step["samplesPerSecond"] == 12.3 and step["innerStep"] == 1
    assert evaluation["testBitsPerByte"] == pytest.approx(2.0 / 0.6931471805599453)
    assert end["trainLoss"] == 1.5 and end["trainAccuracy"] == 0.25 and end["testLoss"] is None
    assert end["trainBitsPerByte"] == pytest.approx(1.5 / 0.6931471805599453)
    assert end["samplesPerSecond"] == 5.0 and end["bytesSent"] == 0
    assert (summary.final_loss, summary.samples, summary.seconds) == (1.5, 10, 2.0)
    assert summary.test_loss is None and summary.test_bits_per_byte is None


def test_fit_log_on_another_rank_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    FitLog(MetricsLog(path, enabled=False), Summary(), bits_per_byte=False).start(worldSize=2)
    assert not path.exists()


def test_tally_adds_to_the_sums_carried_from_a_checkpoint() -> None:
    tally = Tally(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    tally.add(StepResult(loss=0.5, hits=3, targets=4, synced={}))
    tally.add(StepResult(loss=0.25, hits=1, targets=4, synced={}))
    assert tally.totals().tolist() == [1.0 + 2.0 + 1.0, 6.0, 11.0]


def test_hits_leave_ignored_targets_out() -> None:
    output = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    assert hits(output, torch.tensor([1, 1, IGNORE])) == (1, 2)


def test_ranks_alone_are_their_own_sum_and_minimum() -> None:
    ranks = Ranks(0, 1, CPU)
    assert ranks.is_main and ranks.min(7) == 7
    assert ranks.sum(torch.tensor([1.5, 2.0])).tolist() == [1.5, 2.0]


def test_an_evaluator_without_held_out_files_says_none() -> None:
    evaluator = Evaluator(None, CPU, Ranks(0, 1, CPU))
    assert evaluator.evaluate(nn.Linear(2, 2), nn.functional.cross_entropy, None) is None


@pytest.mark.parametrize("epochs, batch_size", [(0, 8), (1, 0)])
def test_fit_options_refuse_empty_training(epochs: int, batch_size: int) -> None:
    with pytest.raises(UsageError, match="at least 1"):
        FitOptions(epochs=epochs, batch_size=batch_size)


def dropout_learner(seed: int = 0) -> Learner:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 3))
    return Learner(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        Ddp(world_size=1),
        loss_fn=nn.functional.cross_entropy,
        seeds=StepSeeds(seed, 0, "cpu"),
    )


def train_steps(learner: Learner, steps: range) -> list[StepResult]:
    learner.start(None, rank=0)
    x, y = torch.ones(6, 4), torch.tensor([0, 1, 2, 0, 1, IGNORE])
    return [learner.step(x, y, step, final_step=steps.stop - 1) for step in steps]


def test_a_learner_draws_the_same_dropout_whatever_ran_before() -> None:
    uninterrupted = dropout_learner()
    train_steps(uninterrupted, range(1, 4))
    resumed = dropout_learner()
    train_steps(resumed, range(1, 3))
    torch.rand(100)  # anything drawn in between (another process, a restart) changes nothing
    last = train_steps(resumed, range(3, 4))[0]
    assert last.targets == 5
    for mine, theirs in zip(
        resumed.model.parameters(), uninterrupted.model.parameters(), strict=True
    ):
        assert torch.equal(mine, theirs)


def test_another_seed_draws_other_dropout() -> None:
    one, other = dropout_learner(0), dropout_learner(1)
    assert train_steps(one, range(1, 3))[-1].loss != train_steps(other, range(1, 3))[-1].loss


def test_a_diloco_learner_reports_inner_and_outer_steps_and_ends_on_an_outer_step() -> None:
    learner = dropout_learner()
    learner.strategy = Diloco(DilocoSync(strategy="diloco", inner_steps=2), world_size=1)
    results = train_steps(learner, range(1, 6))
    assert [r.synced for r in results] == [
        {"innerStep": 1, "outerStep": 0},
        {"innerStep": 2, "outerStep": 1},
        {"innerStep": 1, "outerStep": 1},
        {"innerStep": 2, "outerStep": 2},
        {"innerStep": 1, "outerStep": 3},  # the last step: always an outer step
    ]
    state = learner.sync_state()
    assert state is not None and state["outerStep"] == 3
