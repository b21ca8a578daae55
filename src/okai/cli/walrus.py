"""`okai walrus`: run the local Walrus-compatible server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from okai.cli.output import state
from okai.config import DEV_WALRUS_PORT
from okai.walrus.dataset import parse_size
from okai.walrus.server import DEFAULT_MAX_BODY, DEFAULT_MAX_QUILT_BODY, WalrusServer

app = typer.Typer(
    name="walrus",
    help="Run and inspect Walrus endpoints (the local Walrus-compatible server).",
    no_args_is_help=True,
)


@app.command("serve")
def serve_command(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Option("--dir", help="Folder that holds the blobs.")],
    port: Annotated[int, typer.Option(help="Port on the host.")] = DEV_WALRUS_PORT,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    max_body: Annotated[
        str, typer.Option(help="Largest blob body accepted (PUT /v1/blobs).")
    ] = str(DEFAULT_MAX_BODY),
    max_quilt_body: Annotated[
        str, typer.Option(help="Largest quilt body accepted (PUT /v1/quilts).")
    ] = str(DEFAULT_MAX_QUILT_BODY),
    fake_blob_ids: Annotated[
        bool,
        typer.Option(
            "--fake-blob-ids",
            help="Without Node.js: answer with labelled stand-in blob IDs no Walrus network "
            "would produce (header X-Okai-Blob-Id-Scheme: okai-fake-sha256).",
        ),
    ] = False,
    test_controls: Annotated[
        bool,
        typer.Option(
            "--test-controls",
            help="Enable /_okai/test/* routes that make the server misbehave (tests only).",
        ),
    ] = False,
    jwt_secret_file: Annotated[
        Path | None,
        typer.Option(help="Require HS256 publisher JWTs signed with the secret in this file."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="Do not log requests.")] = False,
) -> None:
    """Serve a Walrus-compatible publisher and aggregator until interrupted."""
    cli = state(ctx)
    secret = jwt_secret_file.read_text(encoding="utf-8").strip() if jwt_secret_file else None
    server = WalrusServer(
        directory,
        host=host,
        port=port,
        max_body=parse_size(max_body),
        max_quilt_body=parse_size(max_quilt_body),
        fake_blob_ids=fake_blob_ids,
        test_controls=test_controls,
        jwt_secret=secret,
        log=not quiet,
    )
    cli.info(
        f"Walrus-compatible server at {server.url} (blob IDs: {server.storage.scheme}; "
        f"data in {directory}); Ctrl-C stops it"
    )
    server.run_until_signalled()
    cli.info("stopped")
