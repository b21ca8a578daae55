"""`ctx.fit`'s loop, composed of parts that each do one thing, as torchtitan composes its trainer.

- data: `TrainData`, this rank's verified training stream in the job's order;
- model and optimizer: `Learner` (okai.train.learner), one synchronised step at a time
  (DDP or DiLoCo, okai.train.sync);
- held-out evaluation: `Evaluator` (okai.train.evaluation);
- checkpoints: `Checkpointer` saves and restores, `CheckpointSchedule` says when
  (okai.train.checkpoint);
- metrics: `FitLog` writes the lines and keeps the receipt's summary, `EpochClock`
  times the steps (okai.train.metrics);
- `Ranks` (okai.train.ranks): what the ranks agree on.

`Trainer` only orders them: restore, start, then per step train, log, maybe evaluate,
maybe checkpoint, and per epoch sum, evaluate, log, maybe checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from okai.errors import UsageError
from okai.train.checkpoint import Checkpointer, CheckpointSchedule, Position
from okai.train.evaluation import Evaluation, Evaluator, LossFunction
from okai.train.learner import Learner, StepResult
from okai.train.loader import Batch, Collate, RankStream
from okai.train.metrics import EpochClock, FitLog
from okai.train.ranks import Ranks


@dataclass(frozen=True, kw_only=True)
class FitOptions:
    """What `ctx.fit` was asked for, beyond the model and optimizer."""

    epochs: int
    batch_size: int
    loss_fn: LossFunction = F.cross_entropy
    collate: Collate | None = None
    evaluate_every: int = 0
    """Steps between held-out evaluations within an epoch; 0 for none."""
    bits_per_byte: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise UsageError(
                f"epochs and batch_size must be at least 1, got {self.epochs}, {self.batch_size}"
            )


@dataclass(frozen=True)
class TrainData:
    """This rank's training data: every rank takes the same number of steps an epoch."""

    stream: RankStream
    ranks: Ranks
    fetch_seconds: float = 0.0
    """How long this rank took to plan its data (recorded in the `start` line)."""

    def steps_per_epoch(self, batch_size: int) -> int:
        """Steps every rank can fill: the smallest rank's share decides (surplus is dropped)."""
        return self.ranks.min(self.stream.samples // batch_size)

    def batches(
        self, epoch: int, batch_size: int, *, start: int, stop: int, collate: Collate | None
    ) -> Iterator[Batch]:
        """Batches `start` to `stop` of `epoch`, on the ranks' device."""
        device = self.ranks.device
        for x, y in self.stream.batches(epoch, batch_size, start=start, stop=stop, collate=collate):
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def zero_totals() -> torch.Tensor:
    return torch.zeros(3, dtype=torch.float64)


class Tally:
    """An epoch's running sums on this rank, in plain numbers: a few tensor operations a step
    would cost more than the loss read-out, which the metrics line needs anyway."""

    def __init__(self, carried: torch.Tensor) -> None:
        self.carried = carried
        """The sums of the epoch's steps before a resume (rank 0 carries them, others 0)."""
        self.loss_sum = 0.0
        self.correct = 0
        self.count = 0

    def add(self, result: StepResult) -> None:
        self.loss_sum += result.loss * result.targets
        self.correct += result.hits
        self.count += result.targets

    def totals(self) -> torch.Tensor:
        """Loss x targets, right predictions, targets: this rank's, resumed sums included."""
        mine = torch.tensor(
            [self.loss_sum, float(self.correct), float(self.count)], dtype=torch.float64
        )
        return self.carried + mine


class Trainer:
    """One `ctx.fit` call: trains `learner` on `data` for `options.epochs` epochs."""

    def __init__(
        self,
        *,
        data: TrainData,
        learner: Learner,
        evaluator: Evaluator,
        checkpoints: Checkpointer,
        checkpoint_every: int,
        log: FitLog,
        options: FitOptions,
    ) -> None:
        self.data = data
        self.ranks = data.ranks
        self.learner = learner
        self.evaluator = evaluator
        self.checkpoints = checkpoints
        self.checkpoint_every = checkpoint_every
        self.log = log
        self.options = options
        self.steps = 0
        """Steps per epoch, set by `fit`."""
        self.schedule = CheckpointSchedule(checkpoint_every, 0)

    def fit(self) -> nn.Module:
        """Train from the newest checkpoint (or the start); returns the model, unwrapped."""
        options, learner, ranks = self.options, self.learner, self.ranks
        model = learner.model
        model.to(ranks.device)
        model.train()
        self.steps = self.data.steps_per_epoch(options.batch_size)
        if self.steps == 0:
            raise UsageError(
                f"batch size {options.batch_size} is larger than the data of the smallest rank "
                f"({self.data.stream.samples} samples on rank {ranks.rank}); "
                "lower batch_size or use fewer processes"
            )
        self.schedule = CheckpointSchedule(self.checkpoint_every, options.epochs * self.steps)
        resumed = self.checkpoints.restore(model, learner.optimizer, ranks.device)
        at = resumed or Position()
        learner.start(at.sync, ranks.rank)
        if resumed is not None:
            self.log.metrics.truncate(resumed.metrics_bytes)
            if not ranks.is_main:
                at.totals = zero_totals()
        self.log.start(
            worldSize=ranks.world_size,
            epochs=options.epochs,
            stepsPerEpoch=self.steps,
            batchSize=options.batch_size,
            resumedFromStep=None if resumed is None else resumed.global_step,
            fetchSeconds=round(self.data.fetch_seconds, 3),
            sync=learner.strategy.name,
        )
        for epoch in range(at.epoch, options.epochs):
            at = self._epoch(epoch, at)
        return model

    def _epoch(self, epoch: int, at: Position) -> Position:
        """Train `epoch` from `at` (its start, or where a checkpoint left it)."""
        options, learner = self.options, self.learner
        first = at.step_in_epoch if epoch == at.epoch else 0
        tally = Tally(at.totals if epoch == at.epoch else zero_totals())
        clock = EpochClock(
            options.batch_size * self.ranks.world_size, lambda: self.data.stream.wait_seconds
        )
        step = at.global_step
        batches = self.data.batches(
            epoch, options.batch_size, start=first, stop=self.steps, collate=options.collate
        )
        for index, (x, y) in enumerate(batches, start=first):
            step += 1
            result = learner.step(x, y, step, self.schedule.final_step)
            tally.add(result)
            rate = clock.step()
            self.log.step(epoch, step, result.loss, rate, result.synced)
            every = options.evaluate_every
            if every and step % every == 0 and index + 1 < self.steps:  # the epoch's end evaluates
                with clock.paused():
                    evaluation = self._evaluate()
                    if evaluation is not None:
                        self.log.evaluation(epoch, step, evaluation)
            if self.schedule.due(step, epoch_end=False):
                with clock.paused():
                    # Stored summed over ranks; on resume rank 0 carries them, the others 0.
                    totals = self.ranks.sum(tally.totals())
                    self._save(Position(epoch, index + 1, step, totals))
        took = clock.finish()
        totals = self.ranks.sum(tally.totals())
        evaluation = self._evaluate()
        self.log.epoch(epoch, step, totals, evaluation, took, learner.strategy.totals())
        following = Position(epoch + 1, 0, step)
        if self.schedule.due(step, epoch_end=True):
            self._save(following)
        return following

    def _evaluate(self) -> Evaluation | None:
        options = self.options
        evaluation = self.evaluator.evaluate(self.learner.model, options.loss_fn, options.collate)
        if evaluation is not None:
            self.log.summary.held_out(evaluation)
        return evaluation

    def _save(self, at: Position) -> None:
        """Save `at` with the metrics so far and the synchronisation's state (collective)."""
        at.metrics_bytes = self.log.metrics.size()
        at.sync = self.learner.sync_state()
        self.checkpoints.save(self.learner.model, self.learner.optimizer, at)
