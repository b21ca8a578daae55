"""The model of train_slow_links.py: an okai entry point, an MLP of about a million parameters.

64 -> hidden -> hidden -> 10 on the 8x8 digits (hidden 1024: 1.13M parameters,
4.5 MB of float32 gradients a step), trained with Adam through `ctx.fit`, so
the job's `sync` decides how the ranks synchronise. A stand-in of the size of
a small byte-level GPT until that built-in model exists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from okai.train.context import Context


def train(ctx: Context) -> nn.Module:
    hp = ctx.hyperparameters
    hidden = int(hp["hidden"])
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, 10),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=float(hp["lr"]))
    return ctx.fit(model, optimizer, epochs=int(hp["epochs"]), batch_size=int(hp["batch_size"]))
