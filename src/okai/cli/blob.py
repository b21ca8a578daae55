"""`okai blob`: store and read raw blobs on Walrus, verified by SHA-256."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from okai.cli.output import CliState, state
from okai.digest import Digest
from okai.inert import inert
from okai.walrus.client import WalrusClient

app = typer.Typer(
    name="blob",
    help="Store and read raw blobs on Walrus, verified by SHA-256.",
    no_args_is_help=True,
)


def client_for(cli: CliState) -> WalrusClient:
    """The network's client; what its aggregators do wrong is told on stderr as it happens."""
    return reporting(WalrusClient.from_network(cli.settings.network, cli.settings.secrets), cli)


def reporting(client: WalrusClient, cli: CliState) -> WalrusClient:
    """`client`, telling on stderr each fall-over, hedge and demotion of its aggregators."""
    client.book.on_event = lambda event: cli.info(f"walrus: {inert(event.describe(), 400)}")
    return client


def _table(console: Console, rows: dict[str, object]) -> None:
    table = Table(show_header=False)
    for key, value in rows.items():
        table.add_row(key, str(value))
    console.print(table)


@app.command("put")
def put_command(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="File to store.")],
    epochs: Annotated[int, typer.Option(help="Epochs to store it for (1 to 53).")] = 1,
    permanent: Annotated[
        bool, typer.Option(help="Store a permanent (non-deletable) blob.")
    ] = False,
) -> None:
    """Store a file as one blob; prints its blob ID and SHA-256."""
    cli = state(ctx)
    with (
        client_for(cli) as client,
        cli.transfer(f"store {file.name}", file.stat().st_size) as advance,
    ):
        result = client.store_file(file, epochs=epochs, permanent=permanent, on_progress=advance)
    data = {**result.to_json(), "url": client.blob_url(result.blob_id)}
    cli.emit(data, lambda console: _table(console, data))


@app.command("get")
def get_command(
    ctx: typer.Context,
    blob_id: Annotated[str, typer.Argument(help="The blob ID to read.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the blob.")],
    sha256: Annotated[
        str | None,
        typer.Option(
            help="The SHA-256 you trust. Without it the blob ID is recomputed from the bytes "
            "(needs Node.js; blobs up to 64 MiB by default)."
        ),
    ] = None,
) -> None:
    """Read a blob into a file, verified; nothing is written if the check fails."""
    cli = state(ctx)
    expected = Digest.parse(sha256) if sha256 else None
    with client_for(cli) as client, cli.transfer(f"read {blob_id[:12]}…", None) as advance:
        digest = client.read_to_file(blob_id, expected, out, on_progress=advance)
    data = {
        "blobId": blob_id,
        "sha256": str(digest),
        "size": out.stat().st_size,
        "path": str(out),
        "verifiedBy": "sha256" if expected else "blobId",
        "aggregators": client.book.report(),
    }
    cli.emit(data, lambda console: _table(console, data))
