"""The root `okai` command: global options, command groups, error handling."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator, MutableMapping
from typing import Annotated, Any

import typer
from rich.text import Text
from typer.core import TyperCommand, TyperGroup

from okai import __version__
from okai.cli.output import CliState, stderr
from okai.errors import ExitCode, OkaiError
from okai.inert import inert

NETWORK_NAMES = ("dev", "coston2", "flare", "songbird", "coston")
"""okai.config.NETWORK_NAMES, repeated: importing okai.config would import pydantic."""

COMMANDS: dict[str, tuple[str, str]] = {
    "dev": ("okai.cli.dev", "The local stack: anvil and the Walrus server on loopback."),
    "demo": ("okai.cli.demo", "Run the whole pipeline on the local stack."),
    "config": ("okai.cli.config", "Inspect the effective configuration."),
    "walrus": (
        "okai.cli.walrus",
        "Run and inspect Walrus endpoints (the local Walrus-compatible server).",
    ),
    "blob": ("okai.cli.blob", "Store and read raw blobs on Walrus, verified by SHA-256."),
    "data": ("okai.cli.data", "Push datasets to Walrus as verified shards, pull them back."),
    "train": ("okai.cli.train", "Run a training job (okai.job/v1) with torchrun."),
    "chain": (
        "okai.cli.chain",
        "The provenance registry on Flare: deploy it and read its records.",
    ),
    "image": ("okai.cli.image", "Build the NixOS worker image and publish it."),
    "cluster": ("okai.cli.cluster", "Bring training clusters up and down (local or Fluence)."),
    "node": ("okai.cli.node", "The node agent that runs on every training node."),
    "web": ("okai.cli.web", "Serve the verification web page."),
    "record": (
        "okai.cli.record",
        "Store a run's model and attestation on Walrus and record them on chain.",
    ),
    "verify": (
        "okai.cli.verify",
        "Verify a model's provenance: each check passed, failed or not checked, with the reason.",
    ),
}
"""Every command: its module and its one-line help (tests/test_cli.py checks both).

A command's module is imported only when the command runs (or its help is asked for):
some import web3, torch's launcher or the compute providers, and `okai --help` or
`okai config show` should not wait for them."""


def load_command(name: str) -> Any:
    """The click command of `name`, importing its module."""
    module = importlib.import_module(COMMANDS[name][0])
    if hasattr(module, "app"):
        return typer.main.get_group(module.app)
    single = typer.Typer()
    single.command(name=name)(getattr(module, name))
    return typer.main.get_command(single)


class _Commands(MutableMapping[str, Any]):
    """The root's subcommands: every name listed, each module imported on first use."""

    def __init__(self) -> None:
        self.loaded: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self.loaded:
            if name not in COMMANDS:
                raise KeyError(name)
            self.loaded[name] = load_command(name)
        return self.loaded[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self.loaded[name] = command

    def __delitem__(self, name: str) -> None:
        del self.loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter({**dict.fromkeys(COMMANDS), **self.loaded})

    def __len__(self) -> int:
        return len(set(COMMANDS) | set(self.loaded))


class LazyGroup(TyperGroup):
    """The root group: lists commands from `COMMANDS`, imports one only to run it."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _Commands()

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        commands = self.commands
        assert isinstance(commands, _Commands)
        if cmd_name in commands.loaded:
            return commands.loaded[cmd_name]
        if cmd_name in COMMANDS:  # for the listing of `okai --help`
            return TyperCommand(name=cmd_name, help=COMMANDS[cmd_name][1])
        return None

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] in COMMANDS:
            self.commands[args[0]]
        return super().resolve_command(ctx, args)


app = typer.Typer(
    name="okai",
    help="Train models on rented compute, with provenance anyone can verify.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    cls=LazyGroup,
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
            import traceback  # only here: its import is not free

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
