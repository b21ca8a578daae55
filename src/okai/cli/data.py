"""`okai data`: push datasets to Walrus as verified shards, pull them back.

A REF is `BLOBID@sha256:HEX` (what `okai data push` prints) or the path of a
manifest JSON file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from okai import paths
from okai.cli.blob import client_for
from okai.cli.output import state
from okai.digest import Digest
from okai.formats import FORMATS, parse_format
from okai.inert import inert
from okai.manifest import DatasetManifest
from okai.walrus.dataset import (
    DEFAULT_WORKERS,
    load_manifest,
    parse_ref,
    parse_size,
    plan_push,
    pull_dataset,
    push_dataset,
)

app = typer.Typer(
    name="data",
    help="Push datasets to Walrus as verified shards, pull them back.",
    no_args_is_help=True,
)

RefArgument = Annotated[
    str, typer.Argument(help="BLOBID@sha256:HEX as `okai data push` prints it, or a manifest file.")
]


def _manifest_table(console: Console, manifest: DatasetManifest, digest: Digest) -> None:
    console.print(Text.assemble((inert(manifest.name), "bold"), f"  {digest}"), highlight=False)
    table = Table("file", "size", "shards", "format", "samples", "sha256")
    for file in manifest.files:
        count = sum(1 for shard in manifest.shards if shard.path == file.path)
        samples = "" if file.samples is None else f"{file.samples:,}"
        table.add_row(
            file.path, f"{file.size:,}", str(count), file.format or "", samples, file.sha256
        )
    console.print(table)
    totals = manifest.totals
    console.print(f"{totals.files} files, {totals.shards} shards, {totals.bytes:,} bytes")


# `okai data push`'s options, grouped in its help by what they configure.
DATASET = "Dataset"
STORAGE = "Walrus storage"
OUTPUT = "Output"


@app.command("push")
def push_command(
    ctx: typer.Context,
    inputs: Annotated[list[Path], typer.Argument(exists=True, help="Files and folders to push.")],
    name: Annotated[
        str | None,
        typer.Option(
            help="Dataset name (default: the first input's name).", rich_help_panel=DATASET
        ),
    ] = None,
    data_format: Annotated[
        str,
        typer.Option(
            "--format",
            help=f"Read every file as one format ({', '.join(FORMATS)}); "
            "auto: by each file's name.",
            rich_help_panel=DATASET,
        ),
    ] = "auto",
    shard_size: Annotated[
        str,
        typer.Option(
            help="Largest shard, e.g. 10MiB (the public publishers' limit).",
            rich_help_panel=DATASET,
        ),
    ] = "10MiB",
    epochs: Annotated[
        int, typer.Option(help="Epochs to store it for (1 to 53).", rich_help_panel=STORAGE)
    ] = 1,
    permanent: Annotated[
        bool,
        typer.Option(help="Store permanent (non-deletable) blobs.", rich_help_panel=STORAGE),
    ] = False,
    workers: Annotated[
        int, typer.Option(help="Shards stored in parallel.", rich_help_panel=STORAGE)
    ] = DEFAULT_WORKERS,
    out: Annotated[
        Path | None,
        typer.Option(help="Also write the manifest JSON to this file.", rich_help_panel=OUTPUT),
    ] = None,
) -> None:
    """Store files as shards and a manifest; prints the dataset's REF."""
    cli = state(ctx)
    fmt = parse_format(data_format)
    size = parse_size(shard_size)
    dataset_name = name or inputs[0].resolve().name
    total = plan_push(inputs, size).total_bytes
    with client_for(cli) as client, cli.transfer(f"push {dataset_name}", total) as advance:
        result = push_dataset(
            client,
            inputs,
            name=dataset_name,
            shard_size=size,
            journal_dir=paths.state_dir() / "journals",
            workers=workers,
            epochs=epochs,
            permanent=permanent,
            on_progress=advance,
            data_format=fmt,
        )
    if out is not None:
        result.manifest.write(out)
    data: dict[str, Any] = {
        "ref": result.ref,
        "manifestBlobId": result.manifest_blob_id,
        "manifestDigest": str(result.manifest_digest),
        "name": dataset_name,
        "files": result.manifest.totals.files,
        "shards": result.manifest.totals.shards,
        "bytes": result.manifest.totals.bytes,
        "storedShards": result.stored_shards,
        "reusedShards": result.reused_shards,
    }

    def human(console: Console) -> None:
        console.print(
            f"pushed {dataset_name}: {data['files']} files, {data['shards']} shards "
            f"({result.stored_shards} stored, {result.reused_shards} already there)",
            highlight=False,
        )
        console.print(f"REF {result.ref}", highlight=False)

    cli.emit(data, human)


@app.command("pull")
def pull_command(
    ctx: typer.Context,
    ref: RefArgument,
    to: Annotated[Path, typer.Option("--to", help="Folder to reassemble the files in.")],
    workers: Annotated[int, typer.Option(help="Shards fetched in parallel.")] = DEFAULT_WORKERS,
) -> None:
    """Fetch a dataset, verify every shard, and reassemble its files under --to."""
    cli = state(ctx)
    source = parse_ref(ref)
    with client_for(cli) as client:
        manifest, digest = load_manifest(client, source, cache_dir=paths.cache_dir())
        with cli.transfer(f"pull {manifest.name}", manifest.totals.bytes) as advance:
            pull_dataset(client, source, to, workers=workers, on_progress=advance)
    data = {
        "name": manifest.name,
        "manifestDigest": str(digest),
        "files": manifest.totals.files,
        "bytes": manifest.totals.bytes,
        "to": str(to),
        "aggregators": client.book.report(),
    }
    cli.emit(
        data,
        lambda console: console.print(
            f"pulled {manifest.name}: {manifest.totals.files} files, "
            f"{manifest.totals.bytes:,} bytes verified into {to}",
            highlight=False,
        ),
    )


@app.command("show")
def show_command(ctx: typer.Context, ref: RefArgument) -> None:
    """Print a dataset's manifest (verified against the REF's digest)."""
    cli = state(ctx)
    with client_for(cli) as client:
        manifest, digest = load_manifest(client, parse_ref(ref), cache_dir=paths.cache_dir())
    cli.emit(
        {
            "digest": str(digest),
            "manifest": manifest.to_json(),
            "aggregators": client.book.report(),
        },
        lambda console: _manifest_table(console, manifest, digest),
    )
