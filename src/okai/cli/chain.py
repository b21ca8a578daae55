"""`okai chain`: the provenance registry on Flare: deploy and read records."""

from __future__ import annotations

import typer

from okai.errors import NotBuiltError

app = typer.Typer(
    name="chain",
    help="The provenance registry on Flare: deploy and read records.",
    no_args_is_help=True,
)


@app.command("deploy")
def deploy_command() -> None:
    """Not built yet."""
    raise NotBuiltError("okai chain deploy")


@app.command("show")
def show_command() -> None:
    """Not built yet."""
    raise NotBuiltError("okai chain show")
