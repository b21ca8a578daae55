"""`okai record`: publish a run's model and attestation, and record them on chain."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from okai.cli.verify import JsonOption, with_json
from okai.inert import inert

if TYPE_CHECKING:
    from okai.provenance.record import RecordResult

DEFAULT_EPOCHS = 53
"""okai.provenance.record.DEFAULT_EPOCHS, repeated: importing it here would import web3."""


def record(
    ctx: typer.Context,
    run_dir: Annotated[
        Path,
        typer.Argument(
            metavar="RUN_DIR", help="The run directory training wrote (with receipt.json)."
        ),
    ],
    epochs: Annotated[
        int, typer.Option(help="Walrus epochs to store the model and attestation for (1 to 53).")
    ] = DEFAULT_EPOCHS,
    json_output: JsonOption = False,
) -> None:
    """Store a run's model and attestation on Walrus and record them on chain.

    Safe to run again: `RUN_DIR/record.json` remembers what is done, so a re-run after a
    failure finishes the job without storing or sending anything twice.
    """
    from okai.chain.client import RegistryClient
    from okai.provenance.record import record_run
    from okai.walrus.client import WalrusClient

    cli = with_json(ctx, json_output)
    settings = cli.settings
    registry = RegistryClient.from_settings(settings, sign=True)
    with WalrusClient.from_network(settings.network, settings.secrets) as walrus:
        result = record_run(
            run_dir,
            registry=registry,
            walrus=walrus,
            epochs=epochs,
            transfer=cli.transfer,
            on_event=cli.info,
        )
    cli.emit(result.to_json(), lambda console: render(console, result))


def render(console: Console, result: RecordResult) -> None:
    data = result.to_json()
    record = data["record"]
    tx = data["transaction"]
    rows = [
        ("status", data["status"]),
        ("model", f"{data['modelDigest']}  blob {data['model'].get('blobId', '?')}"),
        ("attestation", f"{data['attestation']['digest']}  blob {data['attestation']['blobId']}"),
        ("image", record["imageDigest"] or record["host"]),
        ("datasets", ", ".join(record["datasetDigests"])),
        ("job", record["jobDigest"]),
        ("submitter", record["submitter"]),
        ("recorded at", record["recordedAt"]),
        ("network", f"{data['network']} (chain {data['chainId']}), registry {data['registry']}"),
        ("transaction", "-" if tx is None else f"{tx['txHash']} (block {tx.get('block')})"),
    ]
    if data["explorer"]:
        rows.append(("explorer", data["explorer"]))
    table = Table(show_header=False, title=Text(f"okai record {inert(result.run.directory)}"))
    for key, value in rows:
        table.add_row(Text(key, style="bold"), Text(inert(value, 400)))
    console.print(table)
    console.print(Text(f"verify with: okai verify {inert(data['modelDigest'])}", style="dim"))
