"""`okai data`: push datasets to Walrus as verified shards, pull them back."""

from __future__ import annotations

import typer

from okai.errors import NotBuiltError

app = typer.Typer(
    name="data",
    help="Push datasets to Walrus as verified shards, pull them back.",
    no_args_is_help=True,
)


@app.command("push")
def push_command() -> None:
    """Not built yet."""
    raise NotBuiltError("okai data push")


@app.command("pull")
def pull_command() -> None:
    """Not built yet."""
    raise NotBuiltError("okai data pull")


@app.command("show")
def show_command() -> None:
    """Not built yet."""
    raise NotBuiltError("okai data show")
