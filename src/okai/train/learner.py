"""The model, its optimizer and the job's synchronisation: one training step at a time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from okai.train.evaluation import LossFunction, hits
from okai.train.seeding import StepSeeds
from okai.train.sync import Strategy


@dataclass(frozen=True)
class StepResult:
    """What one step measured on this rank."""

    loss: float
    hits: int
    targets: int
    """Targets counted (those not `IGNORE`)."""
    synced: dict[str, Any]
    """The synchronisation's figures for the step's metrics line."""


class Learner:
    """Trains `model` with `optimizer`, synchronised by `strategy` (okai.train.sync).

    `start` wraps the model (DDP) and restores the strategy's state after a resume;
    `step` takes one optimizer step on a batch, reseeding the step's generators first.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        strategy: Strategy,
        *,
        loss_fn: LossFunction,
        seeds: StepSeeds,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.strategy = strategy
        self.loss_fn = loss_fn
        self.seeds = seeds
        self.parallel: nn.Module = model
        """The module the forward pass goes through (DDP's wrapper, or the model)."""

    def start(self, sync_state: dict[str, Any] | None, rank: int) -> None:
        """Wrap the model for the strategy and load its checkpointed state, if any (collective)."""
        self.parallel = self.strategy.wrap(self.model)
        self.strategy.load(sync_state, self.model, self.optimizer, rank)

    def step(self, x: torch.Tensor, y: torch.Tensor, step: int, final_step: int) -> StepResult:
        """Train on the batch `(x, y)`, already on the model's device, as step number `step`
        (from 1) of `final_step`."""
        self.seeds.before(step - 1)
        output = self.parallel(x)
        loss = self.loss_fn(output, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        self.optimizer.step()
        synced = self.strategy.after_step(self.model, step, final_step)
        value = loss.item()
        right, targets = hits(output, y)
        return StepResult(value, right, targets, synced)

    def sync_state(self) -> dict[str, Any] | None:
        """The strategy's part of a checkpoint (collective: every rank calls it)."""
        return self.strategy.state(self.model, self.optimizer)
