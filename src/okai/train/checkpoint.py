"""Checkpoints: enough state to continue a run exactly where it stopped.

A checkpoint holds the model, the optimizer, the position in the data order
(epoch, steps done in it, global step), the epoch's running totals, the
length of `metrics.jsonl` at that moment and the synchronisation strategy's
state (DiLoCo: outer optimizer, reference parameters, every rank's replica).
Randomness needs no state (see okai.train.seeding), so one checkpoint serves
every rank.

Each node keeps its own, written by its local rank 0 under
`<run dir>/checkpoints/step-<N>/` and committed by renaming a finished folder
and then replacing the `latest` pointer (okai.atomic), so a crash mid-write leaves the
previous checkpoint intact. The two newest are kept. When `ctx.fit` saves is
`CheckpointSchedule`'s decision. On restart all ranks agree
on the newest step every node has (an all-reduce MIN) and load it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from okai.atomic import atomic_directory, write_atomically
from okai.digest import Digest
from okai.errors import UsageError
from okai.train.errors import TrainingFailed
from okai.train.rundir import CHECKPOINTS_DIR

KEEP = 2
STATE_FILE = "state.pt"


@dataclass
class Position:
    """Where training stands: the next batch to train is `step_in_epoch` of `epoch`."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    totals: torch.Tensor = field(default_factory=lambda: torch.zeros(3, dtype=torch.float64))
    """Running sums of this epoch on this rank: loss x samples, correct, samples."""
    metrics_bytes: int = 0
    sync: dict[str, Any] | None = None
    """The synchronisation strategy's own state (okai.train.sync), when it has any."""


class Checkpointer:
    """Saves and restores `Position` plus model and optimizer state in a run directory."""

    def __init__(self, run_dir: Path, *, job_digest: Digest, writer: bool) -> None:
        self.root = run_dir / CHECKPOINTS_DIR
        self.job_digest = job_digest
        self.writer = writer
        """True on each node's local rank 0, the one process that writes."""

    def latest(self) -> int | None:
        try:
            name = (self.root / "latest").read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return int(name.removeprefix("step-"))

    def save(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, at: Position) -> None:
        if not self.writer:
            return
        final = self.root / f"step-{at.global_step:09d}"
        state = {
            "job": str(self.job_digest),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "epoch": at.epoch,
            "stepInEpoch": at.step_in_epoch,
            "globalStep": at.global_step,
            "totals": at.totals.clone(),
            "metricsBytes": at.metrics_bytes,
            "sync": at.sync,
        }
        with atomic_directory(final) as partial, (partial / STATE_FILE).open("wb") as stream:
            # To a stream, not a path: torch names the archive inside after a path.
            torch.save(state, stream)
        write_atomically(self.root / "latest", final.name + "\n")
        self._prune()

    def _prune(self) -> None:
        for old in sorted(self.root.glob("step-*"))[:-KEEP]:
            shutil.rmtree(old, ignore_errors=True)
        # Folders a killed writer left half written (this node has one writer).
        for left in self.root.glob(".step-*"):
            shutil.rmtree(left, ignore_errors=True)

    def restore(
        self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, device: torch.device
    ) -> Position | None:
        """Load the newest checkpoint all nodes have; None when the run starts fresh."""
        mine = self.latest()
        agreed = torch.tensor([-1 if mine is None else mine], dtype=torch.int64)
        if dist.is_initialized():
            dist.all_reduce(agreed, op=dist.ReduceOp.MIN)
        step = int(agreed.item())
        if step < 0:
            return None
        path = self.root / f"step-{step:09d}" / STATE_FILE
        try:
            state: dict[str, Any] = torch.load(path, map_location=device, weights_only=True)
        except FileNotFoundError as exc:
            raise TrainingFailed(
                f"checkpoint of step {step} is missing on this node ({path}); "
                "nodes disagree on their checkpoints, start a new run"
            ) from exc
        if state["job"] != str(self.job_digest):
            raise UsageError(
                f"the checkpoints in {self.root} belong to job {state['job']}, not {self.job_digest}",
                hint="use a new run directory for a changed job",
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        return Position(
            epoch=int(state["epoch"]),
            step_in_epoch=int(state["stepInEpoch"]),
            global_step=int(state["globalStep"]),
            totals=state["totals"].cpu(),
            metrics_bytes=int(state["metricsBytes"]),
            sync=state.get("sync"),
        )


@dataclass(frozen=True)
class CheckpointSchedule:
    """When `ctx.fit` saves: every `every` steps, or after each epoch when `every` is 0;
    never at the run's last step, after which the model file is written instead."""

    every: int
    final_step: int

    def due(self, step: int, *, epoch_end: bool) -> bool:
        """Whether to save once `step` steps are done (at an epoch's end, or within one)."""
        if step >= self.final_step:
            return False
        if epoch_end:
            return self.every == 0
        return self.every > 0 and step % self.every == 0
