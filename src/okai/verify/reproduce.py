"""Re-running a recorded job to see whether it yields the same model bytes.

`Reproducer` is the small interface `okai verify --reproduce` needs: run this job in
this directory, return the digest of the model it wrote. `TrainReproducer` does it with
okai's own launcher (`okai.train.launch`, torchrun on this machine): the data is read
from Walrus and verified first, then the recorded code, a stranger's, runs in a sandbox.
"""

from __future__ import annotations

import importlib
import os
import stat
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from okai.digest import Digest
from okai.errors import OperationalError
from okai.manifest import JobSpec


class Reproducer(Protocol):
    """Runs `job` in `workdir` and returns the SHA-256 of the model file it wrote."""

    def __call__(self, job: JobSpec, workdir: Path) -> Digest: ...


class TrainReproducer:
    """Re-trains with `okai.train` on this machine, in a sandbox unless told otherwise.

    The inputs are fetched through `open_source` (Walrus, for `okai verify`) and
    verified first; then the recorded code runs with them read-only, no network and
    none of the verifier's secrets (`okai.train.sandbox`). `sandbox` None runs it
    without one: only for code the verifier trusts (`--unsafe-no-sandbox`).
    """

    def __init__(
        self,
        open_source: Callable[[], AbstractContextManager[Any]],
        sandbox: Any,
        report: Callable[[str], None] = lambda message: None,
        deadline: Callable[[str], None] = lambda doing: None,
    ):
        self.open_source = open_source
        self.sandbox = sandbox
        self.report = report
        self.deadline = deadline
        """Called while re-training with what is being done; raises once time is up."""

    @classmethod
    def for_network(
        cls,
        network: str,
        sandbox: Any,
        report: Callable[[str], None] = lambda message: None,
        deadline: Callable[[str], None] = lambda doing: None,
    ) -> TrainReproducer:
        """Inputs read from `network`'s Walrus."""
        train = _train_module()
        return cls(lambda: train.WalrusShardSource.open(network), sandbox, report, deadline)

    def __call__(self, job: JobSpec, workdir: Path) -> Digest:
        train = _train_module()
        self.report("fetching and verifying the job's code and data")
        with self.open_source() as source:
            staged = train.stage_inputs(job, source, workdir / "inputs")
        self.deadline("fetching the job's inputs")
        options = train.LaunchOptions(
            source=staged, run_dir=workdir / "run", sandbox=self.sandbox, max_restarts=0
        )
        last_epoch: list[int] = []

        def progress(state: Any) -> None:
            self.deadline(f"re-training (epoch {state.epoch + 1}, step {state.step})")
            # One line per epoch: re-training can take minutes and the bar belongs to training.
            if not last_epoch or state.epoch != last_epoch[-1]:
                last_epoch.append(state.epoch)
                total = f"/{state.epochs}" if state.epochs else ""
                loss = "" if state.loss is None else f", loss {state.loss:.4f}"
                self.report(f"re-training: epoch {state.epoch + 1}{total}{loss}")

        result = train.launch(job, options, source_name="the recorded job", progress=progress)
        # The receipt is the recorded code's word; the model file is hashed here.
        return model_digest(result.run_dir / "model.safetensors")


def model_digest(path: Path) -> Digest:
    """The SHA-256 of the model a run wrote, refusing a link or a device in its place."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise OperationalError(f"re-training wrote no model file {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as stream:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OperationalError(f"re-training left something other than a file at {path}")
        return Digest.of_stream(stream)


def _train_module() -> Any:
    # Imported by name, only to re-train: `okai verify` alone never loads torch.
    return importlib.import_module("okai.train")
