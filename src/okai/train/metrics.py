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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from okai.train.evaluation import Evaluation


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

    def held_out(self, evaluation: Evaluation) -> None:
        self.test_accuracy = evaluation.accuracy
        self.test_loss = finite(evaluation.loss)


class EpochClock:
    """Time and throughput of one epoch, less the pauses for evaluations and checkpoints."""

    def __init__(
        self,
        samples_per_step: int,
        waited: Callable[[], float],
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.samples_per_step = samples_per_step
        self.steps = 0
        self.rate: float | None = None
        """Samples per second over all ranks, smoothed over steps."""
        self._waited = waited
        self._wait_before = waited()
        self._clock = clock
        self._began = self._last = clock()
        self._paused = 0.0

    def step(self) -> float:
        """Count a step; the smoothed rate including it."""
        now = self._clock()
        instant = self.samples_per_step / max(now - self._last, 1e-9)
        self.rate = instant if self.rate is None else 0.9 * self.rate + 0.1 * instant
        self._last = now
        self.steps += 1
        return self.rate

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Time spent in the block counts neither in the epoch's time nor in a step's."""
        began = self._clock()
        try:
            yield
        finally:
            pause = self._clock() - began
            self._paused += pause
            self._last += pause

    def finish(self) -> EpochTime:
        return EpochTime(
            samples=self.steps * self.samples_per_step,
            seconds=self._clock() - self._began - self._paused,
            wait_seconds=self._waited() - self._wait_before,
        )


@dataclass(frozen=True)
class EpochTime:
    """What an epoch's steps took, evaluations and checkpoints left out."""

    samples: int
    """Trained on, over all ranks."""
    seconds: float
    wait_seconds: float
    """Of `seconds`, how long this rank waited for data."""


class FitLog:
    """The lines `ctx.fit` writes to metrics.jsonl, and the run's `Summary` they feed."""

    def __init__(self, metrics: MetricsLog, summary: Summary, *, bits_per_byte: bool) -> None:
        self.metrics = metrics
        self.summary = summary
        self.bits_per_byte = bits_per_byte

    def start(self, **figures: Any) -> None:
        self.metrics.write("start", **figures)

    def step(self, epoch: int, step: int, loss: float, rate: float, synced: dict[str, Any]) -> None:
        self.metrics.write(
            "step",
            epoch=epoch,
            step=step,
            loss=finite(loss),
            samplesPerSecond=round(rate, 1),
            **synced,
        )

    def evaluation(self, epoch: int, step: int, evaluation: Evaluation) -> None:
        """A held-out evaluation within an epoch."""
        self.metrics.write(
            "eval",
            epoch=epoch,
            step=step,
            testLoss=finite(evaluation.loss),
            testAccuracy=evaluation.accuracy,
            **self.bits(test=finite(evaluation.loss)),
        )

    def epoch(
        self,
        epoch: int,
        step: int,
        totals: torch.Tensor,
        evaluation: Evaluation | None,
        took: EpochTime,
        synced: dict[str, Any],
    ) -> None:
        """The epoch's line, from its `totals` over all ranks (loss x targets, right, targets)."""
        train_loss, train_correct, train_count = totals.tolist()
        summary = self.summary
        summary.samples += took.samples
        summary.seconds += took.seconds
        summary.samples_per_second = summary.samples / max(summary.seconds, 1e-9)
        summary.final_loss = finite(train_loss / train_count) if train_count else None
        summary.test_accuracy = None if evaluation is None else evaluation.accuracy
        summary.test_loss = None if evaluation is None else finite(evaluation.loss)
        bits = self.bits(train=summary.final_loss, test=summary.test_loss)
        summary.test_bits_per_byte = bits.get("testBitsPerByte")
        self.metrics.write(
            "epoch",
            epoch=epoch,
            step=step,
            trainLoss=summary.final_loss,
            trainAccuracy=train_correct / train_count if train_count else None,
            testLoss=summary.test_loss,
            testAccuracy=summary.test_accuracy,
            **bits,
            samplesPerSecond=round(took.samples / max(took.seconds, 1e-9), 1),
            dataWaitSeconds=round(took.wait_seconds, 6),
            stepSeconds=round(took.seconds, 6),
            **synced,
        )

    def bits(self, **losses: float | None) -> dict[str, float | None]:
        """`<name>BitsPerByte` for each loss, when the loss is in nats per byte."""
        if not self.bits_per_byte:
            return {}
        return {
            f"{name}BitsPerByte": None if loss is None else loss / math.log(2)
            for name, loss in losses.items()
        }


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
