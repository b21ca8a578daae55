"""`digits-cnn`: a small convolutional network on the 8x8 digits (the demo model)."""

from __future__ import annotations

import torch
from torch import nn

from okai.train.builtins import DigitsHyperparameters
from okai.train.context import Context


class DigitsCNN(nn.Module):
    """Two 3x3 convolutions, a pooling layer and two linear layers: 38k parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, 64),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Linear(64, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))  # type: ignore[no-any-return]


def train(ctx: Context) -> nn.Module:
    """Train `DigitsCNN` with Adam on this rank's share of the data."""
    hp = DigitsHyperparameters.model_validate(dict(ctx.hyperparameters))
    model = DigitsCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=hp.lr)
    return ctx.fit(model, optimizer, epochs=hp.epochs, batch_size=hp.batch_size)
