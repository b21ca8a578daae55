"""`okai node`: the node agent that runs on every training node."""

from __future__ import annotations

import typer

from okai.errors import NotBuiltError

app = typer.Typer(
    name="node", help="The node agent that runs on every training node.", no_args_is_help=True
)


@app.command("run")
def run_command() -> None:
    """Not built yet."""
    raise NotBuiltError("okai node run")


@app.command("status")
def status_command() -> None:
    """Not built yet."""
    raise NotBuiltError("okai node status")
