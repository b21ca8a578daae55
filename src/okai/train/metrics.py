"""`metrics.jsonl` and `training-curve.png`: what a run measured, one JSON object a line.

Only rank 0 writes. Line kinds (`event`):

- `start`:  worldSize, epochs, stepsPerEpoch, batchSize, resumedFromStep, sync
- `step`:   epoch, step, loss (rank 0's batch), samplesPerSecond (all ranks);
            DiLoCo: innerStep, outerStep; `advice` once when DDP is warned about
- `epoch`:  epoch, step, trainLoss, trainAccuracy (all ranks), testLoss,
            testAccuracy (held-out files, all ranks), samplesPerSecond,
            dataWaitSeconds and stepSeconds (rank 0's share of the epoch),
            bytesSent (rank 0's synchronisation traffic so far); DiLoCo:
            outerSteps, syncSeconds (see okai.train.sync); trainBitsPerByte,
            testBitsPerByte for a byte-level language model
- `eval`:   epoch, step, testLoss, testAccuracy (and testBitsPerByte): a held-out
            evaluation within an epoch (`ctx.fit(evaluate_every=N)`)

A resumed run first cuts the file back to where the checkpoint was taken, so
the file of a resumed run reads like that of an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import IO, Any


class MetricsLog:
    """Append-only JSON lines; step lines are flushed twice a second, others at once."""

    FLUSH_SECONDS = 0.5

    def __init__(self, path: Path, *, enabled: bool) -> None:
        self.path = path
        self.enabled = enabled
        self._stream: IO[str] | None = None
        self._flushed = 0.0

    def _open(self) -> IO[str]:
        if self._stream is None:
            self._stream = self.path.open("a", encoding="utf-8")
        return self._stream

    def write(self, event: str, **values: Any) -> None:
        if not self.enabled:
            return
        stream = self._open()
        stream.write(json.dumps({"event": event, **values}, allow_nan=False) + "\n")
        now = time.monotonic()
        if event != "step" or now - self._flushed >= self.FLUSH_SECONDS:
            stream.flush()
            self._flushed = now

    def size(self) -> int:
        """Bytes written so far (recorded in checkpoints); 0 on ranks that do not write."""
        if not self.enabled or not self.path.exists():
            return 0
        if self._stream is not None:
            self._stream.flush()
        return self.path.stat().st_size

    def truncate(self, size: int) -> None:
        """Cut the file back to `size` bytes: forget what was logged after a checkpoint."""
        if not self.enabled or not self.path.exists():
            return
        self.close()
        with self.path.open("r+b") as stream:
            stream.truncate(size)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All complete lines of a metrics file (a line being written is skipped)."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def finite(value: float) -> float | None:
    """JSON has no NaN or infinity; a diverged loss is recorded as null."""
    return value if math.isfinite(value) else None


def plot_curve(records: list[dict[str, Any]], out: Path, title: str) -> None:
    """Loss per step (and held-out loss), and accuracy or bits per byte, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r for r in records if r.get("event") == "step" and r.get("loss") is not None]
    epochs = [r for r in records if r.get("event") == "epoch"]
    held_out = [
        r for r in records if r.get("event") in ("eval", "epoch") and r.get("testLoss") is not None
    ]
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axes.plot([r["step"] for r in steps], [r["loss"] for r in steps], lw=0.8, label="batch")
    loss_axes.plot(
        [r["step"] for r in epochs],
        [r.get("trainLoss") for r in epochs],
        marker="o",
        label="epoch mean",
    )
    if held_out:
        loss_axes.plot(
            [r["step"] for r in held_out],
            [r["testLoss"] for r in held_out],
            marker="s",
            label="held-out",
        )
    loss_axes.set(xlabel="step", ylabel="loss", title="training loss")
    loss_axes.legend()
    bits = [r for r in held_out if r.get("testBitsPerByte") is not None]
    if bits:
        accuracy_axes.plot(
            [r["step"] for r in bits], [r["testBitsPerByte"] for r in bits], marker="s"
        )
        accuracy_axes.set(xlabel="step", ylabel="bits per byte", title="held-out bits per byte")
        _finish(figure, out, title)
        return
    epoch_numbers = [r["epoch"] + 1 for r in epochs]
    accuracy_axes.plot(
        epoch_numbers, [r.get("trainAccuracy") for r in epochs], marker="o", label="train"
    )
    if any(r.get("testAccuracy") is not None for r in epochs):
        accuracy_axes.plot(
            epoch_numbers, [r.get("testAccuracy") for r in epochs], marker="o", label="held-out"
        )
    accuracy_axes.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    accuracy_axes.legend()
    _finish(figure, out, title)


def _finish(figure: Any, out: Path, title: str) -> None:
    import matplotlib.pyplot as plt

    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)
