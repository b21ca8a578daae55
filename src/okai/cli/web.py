"""`okai web`: serve the verification page."""

from __future__ import annotations

import typer

from okai.errors import NotBuiltError

app = typer.Typer(name="web", help="Serve the verification web page.")


@app.callback(invoke_without_command=True)
def web_command() -> None:
    """Not built yet."""
    raise NotBuiltError("okai web")
