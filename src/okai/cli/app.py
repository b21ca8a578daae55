"""The root `okai` command: global options, command groups, error handling."""

from __future__ import annotations

import os
import sys
import traceback
from typing import Annotated

import typer
from rich.text import Text

from okai import __version__
from okai.cli import (
    blob,
    chain,
    cluster,
    config,
    data,
    demo,
    dev,
    image,
    node,
    record,
    train,
    verify,
    walrus,
    web,
)
from okai.cli.output import CliState, stderr
from okai.config import NETWORK_NAMES
from okai.errors import ExitCode, OkaiError
from okai.inert import inert

app = typer.Typer(
    name="okai",
    help="Train models on rented compute, with provenance anyone can verify.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"okai {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON document on stdout, for scripts.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    network: Annotated[
        str | None,
        typer.Option(
            "--network",
            "-n",
            envvar="OKAI_NETWORK",
            help=f"Network to use: {', '.join(NETWORK_NAMES)} (default: dev, the local stack).",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    ctx.obj = CliState(json=json_output, debug=debug, network=network)


for module in (dev, demo, config, walrus, blob, data, train, chain, image, cluster, node, web):
    app.add_typer(module.app)
app.command(name="record")(record.record)
app.command(name="verify")(verify.verify)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn errors into messages and exit codes."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or bool(os.environ.get("OKAI_DEBUG"))
    command = typer.main.get_command(app)
    try:
        # Typer turns Ctrl-C (and `typer.Exit`) into an exit code it returns here.
        code = command.main(args=args, prog_name="okai", standalone_mode=False)
    except OkaiError as exc:
        if debug:
            traceback.print_exc()
        # Inert text, not markup: messages may quote attacker-controlled strings.
        stderr.print(Text.assemble(("error: ", "bold red"), inert(exc.message)))
        if exc.hint:
            stderr.print(Text.assemble(("hint: ", "dim"), inert(exc.hint)))
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:  # typer's (vendored click) usage errors
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            stderr.print(str(exc), markup=False)
        sys.exit(ExitCode.USAGE_ERROR)
    except (typer.Abort, KeyboardInterrupt):
        stderr.print("interrupted")
        sys.exit(ExitCode.INTERRUPTED)
    if code == ExitCode.INTERRUPTED:
        stderr.print("interrupted")
    sys.exit(code if isinstance(code, int) else ExitCode.OK)
