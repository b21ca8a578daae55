"""`okai dev`: start, check and stop the local stack."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from okai.cli.output import state
from okai.dev import stack
from okai.errors import OperationalError

app = typer.Typer(
    name="dev",
    help="The local stack: anvil and the Walrus server on loopback.",
    no_args_is_help=True,
)


def _status_table(console: Console, rows: list[stack.ServiceStatus]) -> None:
    table = Table("service", "state", "pid", "url", "log")
    for row in rows:
        colour = {"running": "green", "stale": "yellow"}.get(row.state, "dim")
        table.add_row(
            row.name,
            f"[{colour}]{row.state}[/]",
            str(row.pid or "-"),
            row.url or "-",
            row.log or "-",
        )
    console.print(table)


@app.command("up")
def up_command(ctx: typer.Context) -> None:
    """Start the local stack (idempotent: running services are kept)."""
    cli = state(ctx)
    description = stack.up(on_event=cli.info)
    cli.emit(description, lambda console: _status_table(console, stack.status()))


@app.command("status")
def status_command(ctx: typer.Context) -> None:
    """Show each service of the local stack; exits 1 unless all are running."""
    cli = state(ctx)
    rows = stack.status()
    cli.emit(
        {"services": [row.to_json() for row in rows]}, lambda console: _status_table(console, rows)
    )
    if any(row.state != "running" for row in rows):
        raise OperationalError("the local stack is not fully running", hint="run `okai dev up`")


@app.command("down")
def down_command(ctx: typer.Context) -> None:
    """Stop the services `okai dev up` started (and nothing else); state is kept."""
    cli = state(ctx)
    stopped = stack.down(on_event=cli.info)
    cli.emit(
        {"stopped": stopped},
        lambda console: console.print(f"stopped: {', '.join(stopped) or 'nothing'}"),
    )
