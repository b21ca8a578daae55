"""`okai demo`: the whole pipeline on the local stack, with data the machine already has."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from okai.cli.output import state
from okai.errors import UsageError
from okai.inert import inert
from okai.pipeline import DEMO_MODELS, DemoResult, run_demo

app = typer.Typer(name="demo", help="Run the whole pipeline on the local stack.")


def _summary(console: Console, result: DemoResult) -> None:
    table = Table("step", "status", "seconds", "detail", title=f"okai demo on {result.network}")
    colours = {"done": "green", "reused": "cyan", "skipped": "yellow"}
    for step in result.steps:
        table.add_row(
            Text(step.name),
            Text(step.status, style=colours[step.status]),
            f"{step.seconds:.1f}",
            Text(inert(step.detail)),
        )
    console.print(table)
    console.print(Text(f"model     {result.model_digest}"))
    console.print(Text(f"run       {result.run_dir}"))
    console.print(Text(f"trusted   {result.trusted} (the demo's own key: trainer, publisher)"))
    console.print(
        Text(
            f"verify    okai verify {result.model_digest} --deep --trainer {result.trusted} "
            f"--publisher {result.trusted} --allow-unregistered-host"
        )
    )
    console.print(Text(f"web page  okai web, then open {result.page_link}"))
    if result.network == "dev":
        console.print(
            Text("the local stack keeps running; stop it with: okai dev down", style="dim")
        )


@app.callback(invoke_without_command=True)
def demo_command(
    ctx: typer.Context,
    network: Annotated[
        str | None,
        typer.Option("--network", "-n", help="Run on this network instead (same as okai's own)."),
    ] = None,
    model: Annotated[
        str,
        typer.Option(
            help="digits: a CNN on the 8x8 digits; gpt: the byte-level GPT on Python's "
            "standard-library source."
        ),
    ] = "digits",
) -> None:
    """Start the local stack, push the demo data, train on 2 nodes, record, verify.

    With --network coston2 (and keys and endpoints set) the same steps run against
    the real testnets; only the configuration differs.
    """
    cli = state(ctx)
    if model not in DEMO_MODELS:
        raise UsageError(f"unknown demo model {model!r}; choose {' or '.join(DEMO_MODELS)}")
    result = run_demo(
        network or cli.network,
        report=cli.info,
        transfer=cli.transfer,
        model=model,
    )
    cli.emit(result.to_json(), lambda console: _summary(console, result))
