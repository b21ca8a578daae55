"""Re-running a recorded job to see whether it yields the same model bytes.

`Reproducer` is the small interface `okai verify --reproduce` needs: run this job in
this directory, return the digest of the model it wrote. `TrainReproducer` does it with
okai's own launcher (`okai.train.launch`, torchrun on this machine), reading the data
from Walrus and verifying it on the way, exactly as a training node does.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from okai.digest import Digest
from okai.errors import NotBuiltError, OperationalError
from okai.manifest import JobSpec


class Reproducer(Protocol):
    """Runs `job` in `workdir` and returns the SHA-256 of the model file it wrote."""

    def __call__(self, job: JobSpec, workdir: Path) -> Digest: ...


class TrainReproducer:
    """Re-trains with `okai.train` on this machine, the data read from `network`'s Walrus."""

    def __init__(self, network: str, report: Callable[[str], None] = lambda message: None):
        self.network = network
        self.report = report

    def __call__(self, job: JobSpec, workdir: Path) -> Digest:
        train = _train_module()
        options = train.LaunchOptions(
            source=train.SourceSpec.walrus(self.network), run_dir=workdir / "run"
        )
        last_epoch: list[int] = []

        def progress(state: Any) -> None:
            # One line per epoch: re-training can take minutes and the bar belongs to training.
            if not last_epoch or state.epoch != last_epoch[-1]:
                last_epoch.append(state.epoch)
                total = f"/{state.epochs}" if state.epochs else ""
                loss = "" if state.loss is None else f", loss {state.loss:.4f}"
                self.report(f"re-training: epoch {state.epoch + 1}{total}{loss}")

        result = train.launch(job, options, source_name="the recorded job", progress=progress)
        if result.receipt is None:
            raise OperationalError(f"re-training in {workdir} wrote no receipt")
        return Digest.parse(str(result.receipt.model_sha256))


def _train_module() -> Any:
    try:
        return importlib.import_module("okai.train")
    except ImportError as exc:
        if exc.name is not None and not exc.name.startswith("okai.train"):
            raise
        raise NotBuiltError("re-training (okai.train)") from None
