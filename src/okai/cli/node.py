"""`okai node`: the node agent that runs on every training node."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from okai.cli.output import state
from okai.compute.node import AgentOptions, default_state_dir, node_info, read_status, run_agent
from okai.compute.node import logs as node_logs
from okai.train.receipt import IMAGE_FILE

app = typer.Typer(
    name="node", help="The node agent that runs on every training node.", no_args_is_help=True
)

StateDir = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="The agent's state folder (default: $OKAI_NODE_STATE_DIR or /var/lib/okai).",
    ),
]
ImageFile = Annotated[
    Path,
    typer.Option("--image-identity", help="The image identity file of this host.", hidden=True),
]


@app.command("run")
def run_command(
    ctx: typer.Context,
    job: Annotated[Path, typer.Option("--job", help="The job document (job.json).")],
    cluster: Annotated[Path, typer.Option("--cluster", help="The cluster file (cluster.json).")],
    state_dir: StateDir = None,
    image_identity: ImageFile = IMAGE_FILE,
) -> None:
    """Check this node, run its part of the job with torchrun, report in status.json."""
    cli = state(ctx)
    status = run_agent(
        AgentOptions(
            job_file=job,
            cluster_file=cluster,
            state_dir=state_dir or default_state_dir(),
            image_file=image_identity,
        )
    )
    cli.emit(status.to_json(), lambda console: console.print(f"node: {status.state.value}"))


@app.command("status")
def status_command(ctx: typer.Context, state_dir: StateDir = None) -> None:
    """What the agent on this node is doing: state, run, progress, outputs, error."""
    cli = state(ctx)
    status = read_status(state_dir or default_state_dir())

    def human(console: Console) -> None:
        table = Table(show_header=False, box=None)
        table.add_row("state", status.state.value)
        for key, value in (
            ("cluster", status.cluster_id),
            ("node rank", status.node_rank),
            ("run", status.run_id),
            ("host", status.host),
        ):
            if value is not None:
                table.add_row(key, str(value))
        if status.progress is not None:
            p = status.progress
            epochs = f"/{p.epochs}" if p.epochs else ""
            table.add_row("progress", f"epoch {p.epoch + 1}{epochs}, step {p.step}, loss {p.loss}")
        if status.outputs is not None:
            table.add_row("model", status.outputs.model_sha256)
            if status.outputs.model is not None:
                table.add_row("model blob", status.outputs.model.blob_id)
        if status.error is not None:
            table.add_row("error", status.error.message)
        console.print(table)

    cli.emit(status.to_json(), human)


@app.command("info")
def info_command(
    ctx: typer.Context,
    image_identity: ImageFile = IMAGE_FILE,
) -> None:
    """This node's image identity and the address other members reach it at."""
    cli = state(ctx)
    info = node_info(image_identity)
    cli.emit(info, lambda console: console.print_json(data=info))


@app.command("logs")
def logs_command(
    state_dir: StateDir = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Print new lines until the job ends.")
    ] = False,
    lines: Annotated[
        int | None, typer.Option("--lines", "-n", help="Only the last N lines of each log.")
    ] = None,
) -> None:
    """The agent's log and the current run's logs (torchrun, each rank)."""
    folder = state_dir or default_state_dir()
    # Plain print: log lines are not markup, and may hold anything.
    lines_out = node_logs.follow(folder) if follow else node_logs.tail(folder, lines)
    for line in lines_out:
        print(line, flush=follow)
