"""`okai cluster`: bring training clusters up and down (local or Fluence)."""

from __future__ import annotations

import typer

from okai.errors import NotBuiltError

app = typer.Typer(
    name="cluster",
    help="Bring training clusters up and down (local or Fluence).",
    no_args_is_help=True,
)


@app.command("up")
def up_command() -> None:
    """Not built yet."""
    raise NotBuiltError("okai cluster up")


@app.command("status")
def status_command() -> None:
    """Not built yet."""
    raise NotBuiltError("okai cluster status")


@app.command("logs")
def logs_command() -> None:
    """Not built yet."""
    raise NotBuiltError("okai cluster logs")


@app.command("down")
def down_command() -> None:
    """Not built yet."""
    raise NotBuiltError("okai cluster down")
