"""An okai entry point for data that is not tensors: Parquet rows, WebDataset samples, files.

Samples of these formats reach `train(ctx)` as dicts (docs/data.md lists what each
format gives); a `collate` function turns a list of them into a batch `(inputs,
labels)` for okai's loop. Here every sample becomes 256 numbers and a class:

- a Parquet row: its `features` column (a list of numbers), its `label` column;
- a WebDataset sample: a histogram of the bytes of its `bin` member, the class in `cls`;
- a plain file (a folder of files): a histogram of its bytes, the class from its folder
  (`ctx.labels` lists every folder name of the job's training files, sorted).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from okai.train.context import Context

FEATURES = 256


def histogram(data: bytes) -> torch.Tensor:
    counts = torch.bincount(
        torch.frombuffer(bytearray(data), dtype=torch.uint8).long(), minlength=256
    )
    return counts.float() / max(1, len(data))


def collate_for(ctx: Context) -> Any:
    classes = {name: index for index, name in enumerate(ctx.labels)}

    def collate(samples: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, labels = [], []
        for sample in samples:
            if "features" in sample:  # Parquet
                inputs.append(torch.tensor(sample["features"], dtype=torch.float32))
                labels.append(int(sample["label"]))
            elif "__key__" in sample:  # WebDataset
                inputs.append(histogram(sample["bin"]))
                labels.append(int(sample["cls"]))
            else:  # a plain file
                inputs.append(histogram(sample["data"]))
                labels.append(classes[sample["label"]])
        return torch.stack(inputs), torch.tensor(labels)

    return collate


def train(ctx: Context) -> nn.Module:
    hp = ctx.hyperparameters
    model = nn.Sequential(
        nn.Linear(FEATURES, 32), nn.ReLU(), nn.Linear(32, int(hp.get("classes", 2)))
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=float(hp.get("lr", 0.01)))
    return ctx.fit(
        model,
        optimizer,
        epochs=int(hp.get("epochs", 3)),
        batch_size=int(hp.get("batch_size", 8)),
        collate=collate_for(ctx),
    )
