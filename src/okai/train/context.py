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
- `ctx.batches(epoch, batch_size)`, `ctx.samples(epoch)`, `ctx.files()`,
  `ctx.evaluate(model)`, `ctx.log(...)` for a loop of one's own (which then
  restarts from scratch after a failure).

Samples of formats other than safetensors are dicts (okai.formats); `fit`,
`batches` and `evaluate` take a `collate` function that makes a batch of them.
Targets equal to `IGNORE` (-100, cross_entropy's ignore_index) are left out of
the loss and accuracy sums, so a language model's padding counts for nothing.
"""

from __future__ import annotations

import math
import os
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

from okai.digest import Digest
from okai.errors import IntegrityError, UsageError
from okai.formats import Sample
from okai.manifest import DataFormat, JobSpec
from okai.train.checkpoint import Checkpointer, Position
from okai.train.loader import Batch, Collate, RankStream
from okai.train.metrics import MetricsLog, finite
from okai.train.seeding import derive_seed, step_seed
from okai.train.sync import Strategy, strategy_for

LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
EVAL_BATCH = 512
IGNORE = -100
"""A target that counts for nothing (cross_entropy's default ignore_index)."""


@dataclass(frozen=True)
class LocalFile:
    """One of this rank's files, whole and verified, for code with a reader of its own."""

    path: str
    """The file's path in the dataset."""
    local: Path
    format: DataFormat
    samples: int


@dataclass(frozen=True)
class Evaluation:
    """Loss and accuracy on the held-out files, over all ranks."""

    loss: float
    accuracy: float
    samples: int
    """Targets counted (samples, or tokens for a language model)."""


@dataclass
class Summary:
    """The figures a receipt records, updated as training goes."""

    final_loss: float | None = None
    test_loss: float | None = None
    test_bits_per_byte: float | None = None
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
    """How long this rank took to plan its data (and fetch data pushed without counts)."""
    labels: tuple[str, ...] = ()
    """For plain files: the folder names of the job's training files, sorted (every rank's)."""
    _options: _FitOptions = field(default_factory=lambda: _FitOptions(), init=False, repr=False)

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

    def batches(
        self, epoch: int, batch_size: int, *, collate: Collate | None = None
    ) -> Iterator[Batch]:
        """This rank's batches of `epoch`, on `ctx.device`; every rank gets the same count."""
        stop = self.steps_per_epoch(batch_size)
        for x, y in self.train_data.batches(epoch, batch_size, stop=stop, collate=collate):
            yield x.to(self.device), y.to(self.device)

    def samples(self, epoch: int) -> Iterator[Sample]:
        """This rank's training samples of `epoch`, in the job's order, decoded from verified bytes.

        The same share and order `batches` uses; unlike it, every sample of the share
        (ranks may differ by a few), so a loop of one's own decides what to drop.
        """
        return self.train_data.in_order(epoch)

    def files(self, *, held_out: bool = False) -> list[LocalFile]:
        """This rank's files whole on disk, each checked against its digest, for a reader of
        one's own. A file stored as one shard is that shard's verified file; a larger one
        is joined under `<run dir>/data/rank-<N>/` first. Read them, do not change them."""
        stream = self.test_data if held_out else self.train_data
        if stream is None:
            return []
        out = []
        for ready in stream.files:
            file = ready.file
            parts = ready.parts()
            if len(parts) == 1:
                local = parts[0]
            else:
                local = self.run_dir / "data" / f"rank-{self.rank}" / file.path
                local.parent.mkdir(parents=True, exist_ok=True)
                partial = local.with_name(f".{local.name}.partial")
                with partial.open("wb") as out_stream:
                    for part in parts:
                        out_stream.write(part.read_bytes())
                os.replace(partial, local)
            actual = Digest.of_file(local)
            if actual != file.sha256:
                raise IntegrityError(f"data file {file.path}", file.sha256, actual)
            out.append(LocalFile(file.path, local, file.format, ready.samples))
        return out

    def evaluate(
        self,
        model: nn.Module,
        *,
        loss_fn: LossFunction = F.cross_entropy,
        collate: Collate | None = None,
    ) -> Evaluation | None:
        """Loss and accuracy on the held-out (`test/`) files; None if the job has none."""
        if self.test_data is None:
            return None
        sums = torch.zeros(3, dtype=torch.float64)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            for x, y in self.test_data.ordered(EVAL_BATCH, collate):
                x, y = x.to(self.device), y.to(self.device)
                output = model(x)
                correct, count = _hits(output, y)
                sums += torch.tensor(
                    [float(loss_fn(output, y)) * count, float(correct), float(count)],
                    dtype=torch.float64,
                )
        model.train(was_training)
        sums = self._sum_over_ranks(sums)
        loss_sum, correct, count = sums.tolist()
        if count == 0:
            return None
        self.summary.test_accuracy = correct / count
        self.summary.test_loss = finite(loss_sum / count)
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
        collate: Collate | None = None,
        evaluate_every: int = 0,
        bits_per_byte: bool = False,
    ) -> nn.Module:
        """Train `model` data-parallel over all ranks (the job's `sync`); returns it unwrapped.

        `collate` makes batches of dict samples (formats other than safetensors);
        `evaluate_every` adds a held-out evaluation (an `eval` metrics line) every so
        many steps besides the one after each epoch; `bits_per_byte` says the loss is
        in nats per byte (a byte-level language model) and records it in bits too.
        """
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
        self._options = _FitOptions(loss_fn, collate, max(0, evaluate_every), bits_per_byte)
        for epoch in range(at.epoch, epochs):
            first = at.step_in_epoch if epoch == at.epoch else 0
            totals = at.totals if epoch == at.epoch else torch.zeros(3, dtype=torch.float64)
            at = self._epoch(
                parallel,
                model,
                optimizer,
                strategy,
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
        epoch: int,
        epochs: int,
        first: int,
        steps: int,
        batch_size: int,
        global_step: int,
        totals: torch.Tensor,
    ) -> Position:
        every = self.job.checkpoint_every
        options = self._options
        loss_fn = options.loss_fn
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
        batches = self.train_data.batches(
            epoch, batch_size, start=first, stop=steps, collate=options.collate
        )
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
            hits, targets = _hits(output, y)
            loss_sum += value * targets
            correct += hits
            count += targets
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
            evaluating = options.evaluate_every and global_step % options.evaluate_every == 0
            if evaluating and index + 1 < steps:  # the epoch's end evaluates anyway
                pause = time.perf_counter()
                self._log_evaluation("eval", model, epoch, global_step)
                paused += time.perf_counter() - pause
                last += time.perf_counter() - pause
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
        evaluation = self.evaluate(model, loss_fn=loss_fn, collate=options.collate)
        done = (steps - first) * samples_per_step
        self.summary.samples += done
        self.summary.seconds += seconds
        self.summary.samples_per_second = self.summary.samples / max(self.summary.seconds, 1e-9)
        self.summary.final_loss = finite(train_loss / train_count) if train_count else None
        self.summary.test_accuracy = None if evaluation is None else evaluation.accuracy
        self.summary.test_loss = None if evaluation is None else finite(evaluation.loss)
        bits = self._bits(train=self.summary.final_loss, test=self.summary.test_loss)
        self.summary.test_bits_per_byte = bits.get("testBitsPerByte")
        self.metrics.write(
            "epoch",
            epoch=epoch,
            step=global_step,
            trainLoss=self.summary.final_loss,
            trainAccuracy=train_correct / train_count if train_count else None,
            testLoss=None if evaluation is None else finite(evaluation.loss),
            testAccuracy=self.summary.test_accuracy,
            **bits,
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

    def _log_evaluation(self, event: str, model: nn.Module, epoch: int, step: int) -> None:
        options = self._options
        evaluation = self.evaluate(model, loss_fn=options.loss_fn, collate=options.collate)
        if evaluation is None:
            return
        self.metrics.write(
            event,
            epoch=epoch,
            step=step,
            testLoss=finite(evaluation.loss),
            testAccuracy=evaluation.accuracy,
            **self._bits(test=finite(evaluation.loss)),
        )

    def _bits(self, **losses: float | None) -> dict[str, float | None]:
        """`<name>BitsPerByte` for each loss, when the loss is in nats per byte."""
        if not self._options.bits_per_byte:
            return {}
        return {
            f"{name}BitsPerByte": None if loss is None else loss / math.log(2)
            for name, loss in losses.items()
        }

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


@dataclass(frozen=True)
class _FitOptions:
    loss_fn: LossFunction = F.cross_entropy
    collate: Collate | None = None
    evaluate_every: int = 0
    bits_per_byte: bool = False


def _hits(output: torch.Tensor, target: torch.Tensor) -> tuple[int, int]:
    """(right predictions, targets counted): the class is the last dimension of `output`."""
    counted = target != IGNORE
    right = (output.argmax(-1) == target) & counted
    return int(torch.count_nonzero(right)), int(torch.count_nonzero(counted))


def _as_totals(loss_sum: float, correct: int, count: int) -> torch.Tensor:
    return torch.tensor([loss_sum, float(correct), float(count)], dtype=torch.float64)


def model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state of `model` as the contiguous CPU tensors a safetensors file holds."""
    return {
        name: tensor.detach().to("cpu").clone().contiguous()
        for name, tensor in model.state_dict().items()
    }
