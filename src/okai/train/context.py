"""`Context`: what a training function `train(ctx)` gets, and okai's training loop.

A built-in model and a user entry point are the same thing to okai: a
function `train(ctx) -> torch.nn.Module`. The returned module's `state_dict`
becomes `model.safetensors`. The context gives it:

- `ctx.hyperparameters`, `ctx.seed`, `ctx.rank`, `ctx.world_size`,
  `ctx.device`, `ctx.is_main`, `ctx.run_dir`;
- `ctx.fit(model, optimizer, epochs=..., batch_size=...)`: okai's loop
  (okai.train.trainer, built here from the context's parts), with
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

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import nn

from okai.atomic import atomic_path
from okai.digest import Digest
from okai.errors import IntegrityError
from okai.formats import Sample
from okai.manifest import DataFormat, JobSpec
from okai.train.checkpoint import Checkpointer
from okai.train.evaluation import IGNORE, Evaluation, Evaluator, LossFunction
from okai.train.learner import Learner
from okai.train.loader import Batch, Collate, RankStream
from okai.train.metrics import FitLog, MetricsLog, Summary, finite
from okai.train.ranks import Ranks
from okai.train.seeding import StepSeeds
from okai.train.sync import strategy_for
from okai.train.trainer import FitOptions, TrainData, Trainer

__all__ = ["IGNORE", "Context", "Evaluation", "LocalFile"]


@dataclass(frozen=True)
class LocalFile:
    """One of this rank's files, whole and verified, for code with a reader of its own."""

    path: str
    """The file's path in the dataset."""
    local: Path
    format: DataFormat
    samples: int


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

    @property
    def hyperparameters(self) -> Mapping[str, int | float | str | bool]:
        return MappingProxyType(self.job.hyperparameters)

    @property
    def seed(self) -> int:
        return self.job.seed

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @cached_property
    def _ranks(self) -> Ranks:
        return Ranks(self.rank, self.world_size, self.device)

    @cached_property
    def _data(self) -> TrainData:
        return TrainData(self.train_data, self._ranks, self.fetch_seconds)

    @cached_property
    def _evaluator(self) -> Evaluator:
        return Evaluator(self.test_data, self.device, self._ranks)

    # ------------------------------------------------------------ data

    def steps_per_epoch(self, batch_size: int) -> int:
        """Steps every rank can fill: the smallest rank's share decides (surplus is dropped)."""
        return self._data.steps_per_epoch(batch_size)

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
                with atomic_path(local) as partial, partial.open("wb") as out_stream:
                    for part in parts:
                        out_stream.write(part.read_bytes())
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
        evaluation = self._evaluator.evaluate(model, loss_fn, collate)
        if evaluation is not None:
            self.summary.held_out(evaluation)
        return evaluation

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
        options = FitOptions(
            epochs=epochs,
            batch_size=batch_size,
            loss_fn=loss_fn,
            collate=collate,
            evaluate_every=max(0, evaluate_every),
            bits_per_byte=bits_per_byte,
        )
        learner = Learner(
            model,
            optimizer,
            strategy_for(self.job, self.world_size),
            loss_fn=loss_fn,
            seeds=StepSeeds(self.seed, self.rank, self.device.type),
        )
        trainer = Trainer(
            data=self._data,
            learner=learner,
            evaluator=self._evaluator,
            checkpoints=self.checkpoints,
            checkpoint_every=self.job.checkpoint_every,
            log=FitLog(self.metrics, self.summary, bits_per_byte=bits_per_byte),
            options=options,
        )
        return trainer.fit()
