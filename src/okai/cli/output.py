"""How commands talk to the user: results on stdout, everything else on stderr.

Human-readable output uses rich; `--json` makes stdout exactly one JSON
document per command, for scripts. Progress bars go to stderr and are hidden
in `--json` mode.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from okai.config import Settings, load_settings

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)


@dataclass
class CliState:
    """Global options, shared by every command through typer's context."""

    json: bool = False
    debug: bool = False
    network: str | None = None
    _settings: Settings | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.network)
        return self._settings

    def emit(self, data: Any, human: Callable[[Console], None] | None = None) -> None:
        """Print a command's result: JSON for scripts, or `human` for people."""
        if self.json or human is None:
            stdout.print_json(json.dumps(data, default=str))
        else:
            human(stdout)

    def info(self, message: str) -> None:
        if not self.json:
            stderr.print(message, highlight=False, markup=False)

    @contextmanager
    def transfer(self, description: str, total: int | None) -> Iterator[Callable[[int], None]]:
        """A byte-transfer progress bar with throughput; yields `advance(nbytes)`."""
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=stderr,
            disable=self.json,
            transient=False,
        ) as progress:
            task = progress.add_task(description, total=total)
            yield lambda nbytes: progress.advance(task, nbytes)

    @contextmanager
    def steps(self, description: str, total: int | None) -> Iterator[Callable[[int], None]]:
        """A progress bar counting items (shards, steps); yields `advance(n)`."""
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeRemainingColumn(),
            console=stderr,
            disable=self.json,
        ) as progress:
            task = progress.add_task(description, total=total)
            yield lambda n: progress.advance(task, n)

    @contextmanager
    def training(self, description: str, detail: str) -> Iterator[TrainingBar]:
        """A training progress bar: steps done of the total, a free detail column, time."""
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=stderr,
            disable=self.json,
        ) as progress:
            yield TrainingBar(progress, progress.add_task(description, total=None, detail=detail))


@dataclass(frozen=True)
class TrainingBar:
    """The bar `CliState.training` shows; the commands say what goes in it."""

    _progress: Progress
    _task: TaskID

    def note(self, description: str, detail: str) -> None:
        """Show a phase before training reports steps."""
        self._progress.update(self._task, description=description, detail=detail)

    def epoch(
        self, epoch: int, epochs: int | None, step: int, total_steps: int | None, detail: str
    ) -> None:
        """Show training at `step` of `total_steps` in 0-based `epoch` (of `epochs`, if known)."""
        of = f"/{epochs}" if epochs else ""
        self._progress.update(
            self._task,
            description=f"epoch {epoch + 1}{of}",
            completed=step,
            total=total_steps,
            detail=detail,
        )


def state(ctx: typer.Context) -> CliState:
    """The CliState of the running command (set by the root callback)."""
    found = ctx.find_object(CliState)
    return found if found is not None else CliState()
