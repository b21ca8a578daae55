"""An okai entry point: a small MLP on the digits dataset, trained with okai's loop.

okai runs `train(ctx)` in every process of the run and saves the module it
returns as `model.safetensors`. `ctx.fit` does the distributed data-parallel
loop: this rank's verified share of the data in the job's fixed order,
checkpoints every `checkpoint_every` steps, resume after a restart, metrics
and evaluation on the held-out `test/` files. See docs/training.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from okai.train.context import Context


def train(ctx: Context) -> nn.Module:
    hp = ctx.hyperparameters
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 128),
        nn.ReLU(),
        nn.Dropout(0.1),
        nn.Linear(128, 10),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=float(hp.get("lr", 0.05)), momentum=0.9)
    return ctx.fit(
        model,
        optimizer,
        epochs=int(hp.get("epochs", 10)),
        batch_size=int(hp.get("batch_size", 32)),
    )
