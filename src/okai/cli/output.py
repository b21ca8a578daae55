"""How commands talk to the user: results on stdout, everything else on stderr.

Human-readable output uses rich; `--json` makes stdout exactly one JSON
document per command, for scripts. Progress bars go to stderr and are hidden
in `--json` mode.

Much of what is shown was written by strangers (records, manifests, node statuses),
so both consoles treat every string as text, never rich markup, with control and bidi
characters escaped (`okai.inert`); `Text` objects built here from such strings pass
them through `inert` too. JSON is printed in ASCII, those characters escaped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.text import Text

from okai.inert import inert, inert_json

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from okai.config import Settings

# rich.progress is imported by the methods that show a bar: most commands never do.


class InertConsole(Console):
    """A console printing strings as inert text: no markup, no emoji codes, no controls."""

    def render_str(self, text: str, **options: Any) -> Text:
        options["markup"] = options["emoji"] = False
        return super().render_str(inert(text), **options)


stdout = InertConsole(soft_wrap=True, markup=False, emoji=False)
stderr = InertConsole(stderr=True, soft_wrap=True, markup=False, emoji=False)


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
            from okai.config import load_settings  # pydantic: not for `okai --help`

            self._settings = load_settings(self.network)
        return self._settings

    def emit(self, data: Any, human: Callable[[Console], None] | None = None) -> None:
        """Print a command's result: JSON for scripts, or `human` for people."""
        if self.json or human is None:
            stdout.file.write(inert_json(data) + "\n")
            stdout.file.flush()
        else:
            human(stdout)

    def info(self, message: str) -> None:
        if not self.json:
            stderr.print(message, highlight=False)

    def warn(self, message: str) -> None:
        """A warning on stderr, shown with `--json` too: scripts' logs should keep it."""
        stderr.print(Text.assemble(("warning: ", "bold yellow"), inert(message)))

    @contextmanager
    def transfer(self, description: str, total: int | None) -> Iterator[Callable[[int], None]]:
        """A byte-transfer progress bar with throughput; yields `advance(nbytes)`."""
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        with Progress(
            TextColumn("{task.description}", markup=False),
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
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )

        with Progress(
            TextColumn("{task.description}", markup=False),
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
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        with Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[detail]}", markup=False),
            TimeElapsedColumn(),
            console=stderr,
            disable=self.json,
        ) as progress:
            yield TrainingBar(
                progress, progress.add_task(inert(description), total=None, detail=inert(detail))
            )


@dataclass(frozen=True)
class TrainingBar:
    """The bar `CliState.training` shows; the commands say what goes in it."""

    _progress: Progress
    _task: TaskID

    def note(self, description: str, detail: str) -> None:
        """Show a phase before training reports steps."""
        self._progress.update(self._task, description=inert(description), detail=inert(detail))

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
            detail=inert(detail),
        )


def state(ctx: typer.Context) -> CliState:
    """The CliState of the running command (set by the root callback)."""
    found = ctx.find_object(CliState)
    return found if found is not None else CliState()
