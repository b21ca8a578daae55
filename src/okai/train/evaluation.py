"""Held-out evaluation: loss and accuracy of a model on this run's `test/` files, over all ranks.

Targets equal to `IGNORE` (-100, cross_entropy's ignore_index) are left out of
the loss and accuracy sums, so a language model's padding counts for nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from okai.train.loader import Collate, RankStream
from okai.train.ranks import Ranks

LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
EVAL_BATCH = 512
IGNORE = -100
"""A target that counts for nothing (cross_entropy's default ignore_index)."""


@dataclass(frozen=True)
class Evaluation:
    """Loss and accuracy on the held-out files, over all ranks."""

    loss: float
    accuracy: float
    samples: int
    """Targets counted (samples, or tokens for a language model)."""


@dataclass(frozen=True)
class Evaluator:
    """Runs a model over this rank's held-out files in their fixed order and sums over ranks."""

    test_data: RankStream | None
    device: torch.device
    ranks: Ranks

    def evaluate(
        self, model: nn.Module, loss_fn: LossFunction, collate: Collate | None
    ) -> Evaluation | None:
        """None when the job has no held-out files (or they hold no targets)."""
        if self.test_data is None:
            return None
        sums = torch.zeros(3, dtype=torch.float64)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            for x, y in self.test_data.ordered(EVAL_BATCH, collate):
                x, y = x.to(self.device), y.to(self.device)
                output = model(x)
                correct, count = hits(output, y)
                sums += torch.tensor(
                    [float(loss_fn(output, y)) * count, float(correct), float(count)],
                    dtype=torch.float64,
                )
        model.train(was_training)
        loss_sum, correct, count = self.ranks.sum(sums).tolist()
        if count == 0:
            return None
        return Evaluation(loss=loss_sum / count, accuracy=correct / count, samples=int(count))


def hits(output: torch.Tensor, target: torch.Tensor) -> tuple[int, int]:
    """(right predictions, targets counted): the class is the last dimension of `output`."""
    counted = target != IGNORE
    right = (output.argmax(-1) == target) & counted
    return int(torch.count_nonzero(right)), int(torch.count_nonzero(counted))
