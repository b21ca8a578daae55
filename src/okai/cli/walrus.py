"""`okai walrus`: run and inspect Walrus endpoints (the local Walrus-compatible server)."""

from __future__ import annotations

import typer

from okai.errors import NotBuiltError

app = typer.Typer(
    name="walrus",
    help="Run and inspect Walrus endpoints (the local Walrus-compatible server).",
    no_args_is_help=True,
)


@app.command("serve")
def serve_command() -> None:
    """Not built yet."""
    raise NotBuiltError("okai walrus serve")
