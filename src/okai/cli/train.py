"""`okai train`: run a training job on this machine with torchrun."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from okai.cli.output import state
from okai.train import LaunchOptions, Rendezvous, SourceSpec, train
from okai.train.launch import Progress as TrainProgress

app = typer.Typer(
    name="train",
    help="Run a training job (okai.job/v1) with torchrun.",
    # A group stops parsing options at its first argument; `okai train JOB --data D` must work.
    context_settings={"allow_interspersed_args": True},
)


# `okai train`'s options, grouped in its help by what they configure.
JOB = "Job"
RENDEZVOUS = "Multi-node rendezvous"
DATA_OUTPUT = "Data and output"


@app.callback(invoke_without_command=True)
def train_command(
    ctx: typer.Context,
    job: Annotated[Path, typer.Argument(help="The job file (TOML, okai.job/v1).")],
    nproc_per_node: Annotated[
        int | None,
        typer.Option(
            "--nproc-per-node",
            help="Processes on this node (default: the job's).",
            rich_help_panel=JOB,
        ),
    ] = None,
    nnodes: Annotated[
        int | None,
        typer.Option(
            "--nnodes", help="Nodes in the run (default: the job's).", rich_help_panel=JOB
        ),
    ] = None,
    max_restarts: Annotated[
        int,
        typer.Option(
            "--max-restarts", help="Worker group restarts before giving up.", rich_help_panel=JOB
        ),
    ] = 3,
    node_rank: Annotated[
        int | None,
        typer.Option(
            "--node-rank",
            help="This node's rank (recorded; c10d assigns).",
            rich_help_panel=RENDEZVOUS,
        ),
    ] = None,
    rdzv_endpoint: Annotated[
        str | None,
        typer.Option(
            "--rdzv-endpoint",
            help="HOST:PORT where the nodes meet (multi-node runs).",
            rich_help_panel=RENDEZVOUS,
        ),
    ] = None,
    rdzv_id: Annotated[
        str | None,
        typer.Option(
            "--rdzv-id",
            help="Run ID shared by all nodes (multi-node runs).",
            rich_help_panel=RENDEZVOUS,
        ),
    ] = None,
    local_addr: Annotated[
        str | None,
        typer.Option(
            "--local-addr",
            help="This node's address on the nodes' network.",
            rich_help_panel=RENDEZVOUS,
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Read blobs from this local store instead of Walrus.",
            rich_help_panel=DATA_OUTPUT,
        ),
    ] = None,
    run_dir: Annotated[
        Path | None,
        typer.Option(
            "--run-dir",
            help="Run directory (default: runs/<run ID>).",
            rich_help_panel=DATA_OUTPUT,
        ),
    ] = None,
) -> None:
    """Train JOB here: verify its data, run torchrun, write model, metrics and receipt."""
    cli = state(ctx)
    rendezvous = None
    if rdzv_endpoint is not None or rdzv_id is not None:
        if rdzv_endpoint is None or rdzv_id is None:
            raise typer.BadParameter("--rdzv-endpoint and --rdzv-id go together")
        rendezvous = Rendezvous(
            endpoint=rdzv_endpoint, run_id=rdzv_id, node_rank=node_rank, local_addr=local_addr
        )
    source = SourceSpec.local(data) if data is not None else SourceSpec.walrus(cli.network)
    options = LaunchOptions(
        source=source,
        nproc_per_node=nproc_per_node,
        nnodes=nnodes,
        rendezvous=rendezvous,
        run_dir=run_dir,
        max_restarts=max_restarts,
    )
    with cli.training("training", "verifying data") as bar:
        advised: list[str] = []

        def show(update: TrainProgress) -> None:
            if update.advice and not advised:
                advised.append(update.advice)
                cli.info(f"warning: {update.advice}")
            loss = f"loss {update.loss:.4f}" if update.loss is not None else "loss -"
            speed = (
                f"{update.samples_per_second:,.0f} samples/s" if update.samples_per_second else ""
            )
            detail = f"step {update.step}  {loss}  {speed}"
            bar.epoch(update.epoch, update.epochs, update.step, update.total_steps, detail)

        result = train(job, options, progress=show)
    receipt = result.receipt
    data_out = {
        "runId": result.run_id,
        "runDir": str(result.run_dir),
        "receipt": None if receipt is None else receipt.to_json(),
    }

    def human(console: Console) -> None:
        console.print(f"run {result.run_id} finished: {result.run_dir}", highlight=False)
        if receipt is None:
            console.print("rank 0 ran on another node; its run directory has the model")
            return
        metrics = receipt.metrics
        console.print(f"model   {receipt.model_file}  {receipt.model_sha256}", highlight=False)
        console.print(f"job     {receipt.job_sha256}", highlight=False)
        accuracy, throughput = metrics.get("testAccuracy"), metrics.get("samplesPerSecond")
        if isinstance(accuracy, float):
            console.print(f"held-out accuracy  {accuracy:.2%}")
        if isinstance(throughput, int | float):
            console.print(f"throughput         {throughput:,.0f} samples/s")
        console.print(f"host    {receipt.host_identity()}", highlight=False)

    cli.emit(data_out, human)
