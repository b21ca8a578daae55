"""`okai config`: show the effective configuration, secrets masked."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from okai.cli.output import state

app = typer.Typer(name="config", help="Inspect the effective configuration.", no_args_is_help=True)


@app.command("show")
def show_command(ctx: typer.Context) -> None:
    """Print the effective configuration (presets, okai.toml, OKAI_* variables)."""
    cli = state(ctx)
    view = cli.settings.public_view()

    def human(console: Console) -> None:
        table = Table("setting", "value", show_header=False)
        table.add_row("config file", view["config_file"] or "(none)")
        for key, value in view["network"].items():
            shown = ", ".join(value) if isinstance(value, list) else str(value)
            table.add_row(f"network.{key}", shown)
        for key, value in view["secrets"].items():
            table.add_row(f"secret.{key}", value or "(not set)")
        console.print(table)

    cli.emit(view, human)
