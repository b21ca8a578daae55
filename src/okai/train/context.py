"""`Context`: what a training function `train(ctx)` gets, and okai's training loop.

A built-in model and a user entry point are the same thing to okai: a
function `train(ctx) -> torch.nn.Module`. The returned module's `state_dict`
becomes `model.safetensors`. The context gives it:

- `ctx.hyperparameters`, `ctx.seed`, `ctx.rank`, `ctx.world_size`,
  `ctx.device`, `ctx.is_main`, `ctx.run_dir`;
- `ctx.fit(model, optimizer, epochs=..., batch_size=...)`: okai's loop, with
  the job's synchronisation (DDP or DiLoCo, okai.train.sync), this rank's
  verified data in the job's fixed order, checkpoints and resume, metrics,
  evaluation on held-out files.
  Use it and a killed worker costs only the steps since the last checkpoint;
- `ctx.batches(epoch, batch_size)`, `ctx.evaluate(model)`, `ctx.log(...)`
  for a loop of one's own (which then restarts from scratch after a failure).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import MappingProxyType

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from okai.errors import UsageError
from okai.manifest import JobSpec
from okai.train.checkpoint import Checkpointer, Position
from okai.train.loader import Batch, RankStream
from okai.train.metrics import MetricsLog, finite
from okai.train.seeding import derive_seed, step_seed
from okai.train.sync import Strategy, strategy_for

LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
EVAL_BATCH = 512


@dataclass(frozen=True)
class Evaluation:
    """Loss and accuracy on the held-out files, over all ranks."""

    loss: float
    accuracy: float
    samples: int


@dataclass
class Summary:
    """The figures a receipt records, updated as training goes."""

    final_loss: float | None = None
    test_accuracy: float | None = None
    samples_per_second: float | None = None
    samples: int = 0
    seconds: float = 0.0


@dataclass
class Context:
    """The run as seen by one rank; passed to `train(ctx)`."""

    job: JobSpec
    run_dir: Path
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    train_data: RankStream
    test_data: RankStream | None
    metrics: MetricsLog
    checkpoints: Checkpointer
    summary: Summary = field(default_factory=Summary)
    fetch_seconds: float = 0.0
    """How long this rank took to fetch and verify its data before training."""

    @property
    def hyperparameters(self) -> Mapping[str, int | float | str | bool]:
        return MappingProxyType(self.job.hyperparameters)

    @property
    def seed(self) -> int:
        return self.job.seed

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ------------------------------------------------------------ data

    def steps_per_epoch(self, batch_size: int) -> int:
        """Steps every rank can fill: the smallest rank's share decides (surplus is dropped)."""
        steps = torch.tensor([self.train_data.samples // batch_size], dtype=torch.int64)
        if dist.is_initialized():
            dist.all_reduce(steps, op=dist.ReduceOp.MIN)
        return int(steps.item())

    def batches(self, epoch: int, batch_size: int) -> Iterator[Batch]:
        """This rank's batches of `epoch`, on `ctx.device`; every rank gets the same count."""
        stop = self.steps_per_epoch(batch_size)
        for x, y in self.train_data.batches(epoch, batch_size, stop=stop):
            yield x.to(self.device), y.to(self.device)

    def evaluate(
        self, model: nn.Module, *, loss_fn: LossFunction = F.cross_entropy
    ) -> Evaluation | None:
        """Loss and accuracy on the held-out (`test/`) files; None if the job has none."""
        if self.test_data is None:
            return None
        sums = torch.zeros(3, dtype=torch.float64)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            for x, y in self.test_data.ordered(EVAL_BATCH):
                x, y = x.to(self.device), y.to(self.device)
                output = model(x)
                sums += torch.tensor(
                    [
                        float(loss_fn(output, y)) * len(y),
                        float((output.argmax(1) == y).sum()),
                        float(len(y)),
                    ],
                    dtype=torch.float64,
                )
        model.train(was_training)
        sums = self._sum_over_ranks(sums)
        loss_sum, correct, count = sums.tolist()
        if count == 0:
            return None
        self.summary.test_accuracy = correct / count
        return Evaluation(loss=loss_sum / count, accuracy=correct / count, samples=int(count))

    def log(self, *, epoch: int, step: int, loss: float, **values: float | int | None) -> None:
        """Record a step of a custom loop (rank 0 writes; others do nothing)."""
        self.summary.final_loss = finite(loss)
        self.metrics.write("step", epoch=epoch, step=step, loss=finite(loss), **values)

    # ------------------------------------------------------------ the loop

    def fit(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        epochs: int,
        batch_size: int,
        loss_fn: LossFunction = F.cross_entropy,
    ) -> nn.Module:
        """Train `model` data-parallel over all ranks (the job's `sync`); returns it unwrapped."""
        if epochs < 1 or batch_size < 1:
            raise UsageError(
                f"epochs and batch_size must be at least 1, got {epochs}, {batch_size}"
            )
        model.to(self.device)
        model.train()
        steps = self.steps_per_epoch(batch_size)
        if steps == 0:
            raise UsageError(
                f"batch size {batch_size} is larger than the data of the smallest rank "
                f"({self.train_data.samples} samples on rank {self.rank}); "
                "lower batch_size or use fewer processes"
            )
        resumed = self.checkpoints.restore(model, optimizer, self.device)
        at = resumed or Position()
        strategy = strategy_for(self.job, self.world_size)
        parallel = strategy.wrap(model)
        strategy.load(at.sync, model, optimizer, self.rank)
        if resumed is not None:
            self.metrics.truncate(resumed.metrics_bytes)
            if not self.is_main:
                at.totals = torch.zeros(3, dtype=torch.float64)
        self.metrics.write(
            "start",
            worldSize=self.world_size,
            epochs=epochs,
            stepsPerEpoch=steps,
            batchSize=batch_size,
            resumedFromStep=None if resumed is None else resumed.global_step,
            fetchSeconds=round(self.fetch_seconds, 3),
            sync=strategy.name,
        )
        for epoch in range(at.epoch, epochs):
            first = at.step_in_epoch if epoch == at.epoch else 0
            totals = at.totals if epoch == at.epoch else torch.zeros(3, dtype=torch.float64)
            at = self._epoch(
                parallel,
                model,
                optimizer,
                strategy,
                loss_fn,
                epoch,
                epochs,
                first,
                steps,
                batch_size,
                at.global_step,
                totals,
            )
        return model

    def _epoch(
        self,
        parallel: nn.Module,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        strategy: Strategy,
        loss_fn: LossFunction,
        epoch: int,
        epochs: int,
        first: int,
        steps: int,
        batch_size: int,
        global_step: int,
        totals: torch.Tensor,
    ) -> Position:
        every = self.job.checkpoint_every
        final_step = epochs * steps
        samples_per_step = batch_size * self.world_size
        # Plain numbers: a few small tensor operations a step would cost more than the
        # loss read-out, which the metrics line needs anyway.
        loss_sum = 0.0
        correct = 0
        count = 0
        wait_before = self.train_data.wait_seconds
        began = last = time.perf_counter()
        paused = 0.0
        rate: float | None = None
        batches = self.train_data.batches(epoch, batch_size, start=first, stop=steps)
        for index, (x, y) in enumerate(batches, start=first):
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            self._seed_step(global_step)
            output = parallel(x)
            loss = loss_fn(output, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            global_step += 1
            synced = strategy.after_step(model, global_step, final_step)
            value = loss.item()
            loss_sum += value * len(y)
            correct += int(torch.count_nonzero(output.argmax(1) == y))
            count += len(y)
            if self.is_main:
                now = time.perf_counter()
                instant = samples_per_step / max(now - last, 1e-9)
                rate = instant if rate is None else 0.9 * rate + 0.1 * instant
                last = now
                self.metrics.write(
                    "step",
                    epoch=epoch,
                    step=global_step,
                    loss=finite(value),
                    samplesPerSecond=round(rate, 1),
                    **synced,
                )
            if every and global_step % every == 0 and global_step < final_step:
                pause = time.perf_counter()
                # Stored summed over ranks; on resume rank 0 carries them, the others start at 0.
                here = self._sum_over_ranks(totals + _as_totals(loss_sum, correct, count))
                self.checkpoints.save(
                    model,
                    optimizer,
                    Position(
                        epoch,
                        index + 1,
                        global_step,
                        here,
                        self.metrics.size(),
                        strategy.state(model, optimizer),
                    ),
                )
                paused += time.perf_counter() - pause
                last += time.perf_counter() - pause
        seconds = time.perf_counter() - began - paused
        wait = self.train_data.wait_seconds - wait_before
        epoch_totals = self._sum_over_ranks(totals + _as_totals(loss_sum, correct, count))
        train_loss, train_correct, train_count = epoch_totals.tolist()
        evaluation = self.evaluate(model, loss_fn=loss_fn)
        done = (steps - first) * samples_per_step
        self.summary.samples += done
        self.summary.seconds += seconds
        self.summary.samples_per_second = self.summary.samples / max(self.summary.seconds, 1e-9)
        self.summary.final_loss = finite(train_loss / train_count) if train_count else None
        self.summary.test_accuracy = None if evaluation is None else evaluation.accuracy
        self.metrics.write(
            "epoch",
            epoch=epoch,
            step=global_step,
            trainLoss=self.summary.final_loss,
            trainAccuracy=train_correct / train_count if train_count else None,
            testLoss=None if evaluation is None else finite(evaluation.loss),
            testAccuracy=self.summary.test_accuracy,
            samplesPerSecond=round(done / max(seconds, 1e-9), 1),
            dataWaitSeconds=round(wait, 6),
            stepSeconds=round(seconds, 6),
            **strategy.totals(),
        )
        following = Position(epoch + 1, 0, global_step)
        if every == 0 and epoch + 1 < epochs:
            following.metrics_bytes = self.metrics.size()
            following.sync = strategy.state(model, optimizer)
            self.checkpoints.save(model, optimizer, following)
        return following

    @cached_property
    def _step_base(self) -> int:
        return derive_seed(self.seed, "step", self.rank)

    def _seed_step(self, step: int) -> None:
        """Reseed the generators a step draws from (dropout and the like).

        Not `torch.manual_seed`: it also queues lazy seeding of every accelerator
        backend, recording a Python stack each time, which costs milliseconds a step.
        """
        seed = step_seed(self._step_base, step)
        torch.default_generator.manual_seed(seed)
        if self.device.type == "cuda":
            torch.cuda.manual_seed(seed)

    def _sum_over_ranks(self, values: torch.Tensor) -> torch.Tensor:
        if dist.is_initialized():
            values = values.to(self.device)
            dist.all_reduce(values)
        return values.cpu()


def _as_totals(loss_sum: float, correct: int, count: int) -> torch.Tensor:
    return torch.tensor([loss_sum, float(correct), float(count)], dtype=torch.float64)


def model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state of `model` as the contiguous CPU tensors a safetensors file holds."""
    return {
        name: tensor.detach().to("cpu").clone().contiguous()
        for name, tensor in model.state_dict().items()
    }
