"""`okai blob`: store and read raw blobs on Walrus, verified by SHA-256."""

from __future__ import annotations

import typer

from okai.errors import NotBuiltError

app = typer.Typer(
    name="blob",
    help="Store and read raw blobs on Walrus, verified by SHA-256.",
    no_args_is_help=True,
)


@app.command("put")
def put_command() -> None:
    """Not built yet."""
    raise NotBuiltError("okai blob put")


@app.command("get")
def get_command() -> None:
    """Not built yet."""
    raise NotBuiltError("okai blob get")
