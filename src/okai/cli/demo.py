"""`okai demo`: the whole pipeline on the local stack, with the bundled digits data."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from okai.cli.output import state
from okai.dev import stack

app = typer.Typer(name="demo", help="Run the whole pipeline on the local stack.")

PIPELINE = [
    ("local stack", "built"),
    ("push dataset to Walrus", "not built yet"),
    ("train on a 2-node local cluster", "not built yet"),
    ("record provenance on chain", "not built yet"),
    ("verify (shallow and deep)", "not built yet"),
]


@app.callback(invoke_without_command=True)
def demo_command(ctx: typer.Context) -> None:
    """Start the local stack and run each pipeline step that is built so far."""
    cli = state(ctx)
    stack.up(on_event=cli.info)
    steps = [
        {"step": name, "status": "done" if status == "built" else status}
        for name, status in PIPELINE
    ]

    def human(console: Console) -> None:
        table = Table("step", "status")
        for step in steps:
            colour = "green" if step["status"] == "done" else "yellow"
            table.add_row(step["step"], f"[{colour}]{step['status']}[/]")
        console.print(table)

    cli.emit({"steps": steps}, human)
