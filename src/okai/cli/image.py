"""`okai image`: build the NixOS worker image and publish it."""

from __future__ import annotations

import typer

from okai.errors import NotBuiltError

app = typer.Typer(
    name="image", help="Build the NixOS worker image and publish it.", no_args_is_help=True
)


@app.command("build")
def build_command() -> None:
    """Not built yet."""
    raise NotBuiltError("okai image build")


@app.command("publish")
def publish_command() -> None:
    """Not built yet."""
    raise NotBuiltError("okai image publish")
