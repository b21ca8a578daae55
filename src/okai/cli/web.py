"""`okai web`: serve the verification page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from okai.cli.output import state
from okai.errors import OperationalError
from okai.web.server import WebServer, dist_dir, settings_config

app = typer.Typer(name="web", help="Serve the verification web page.")


@app.callback(invoke_without_command=True)
def web_command(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8787,
    host: Annotated[
        str, typer.Option(help="Address to listen on; loopback unless you mean to share it.")
    ] = "127.0.0.1",
    dist: Annotated[
        Path | None, typer.Option(help="A built page folder (default: web/dist).")
    ] = None,
) -> None:
    """Serve the page until interrupted; it verifies models against the selected network."""
    cli = state(ctx)
    network = cli.settings.network  # resolve now, so a bad configuration fails at once
    try:
        server = WebServer(host, port, dist_dir(dist), settings_config(cli.network))
    except OSError as exc:
        raise OperationalError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="choose another --port (0 picks a free one)",
        ) from exc
    cli.emit(
        {"url": server.url, "network": network.name},
        lambda console: console.print(
            f"verification page for {network.name} at {server.url} (Ctrl-C to stop)",
            markup=False,
            highlight=False,
        ),
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()
