"""`okai train`: run a training job on this machine with torchrun."""

from __future__ import annotations

import typer

from okai.errors import NotBuiltError

app = typer.Typer(name="train", help="Run a training job (okai.job/v1) with torchrun.")


@app.callback(invoke_without_command=True)
def train_command() -> None:
    """Not built yet."""
    raise NotBuiltError("okai train")
