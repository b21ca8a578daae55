"""The CLI surface: groups, global options, exit codes, errors without tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import call_okai, okai_imports, run_okai
from okai.cli.app import app

GROUPS = ["dev", "demo", "config", "walrus", "blob", "data", "train", "chain", "record",
          "verify", "image", "cluster", "node", "web"]  # fmt: skip


def test_help_lists_every_group_and_global_option() -> None:
    result = CliRunner().invoke(app, ["--help"], terminal_width=200)
    assert result.exit_code == 0
    for word in [*GROUPS, "--json", "--debug", "--network"]:
        assert word in result.output


def test_version_through_a_real_subprocess() -> None:
    result = run_okai("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("okai ")


def test_config_show_json_masks_secrets(okai_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OKAI_FLUENCE_API_KEY", "fluence-key-do-not-print")
    result = run_okai("--json", "--network", "coston2", "config", "show")
    assert result.returncode == 0, result.stderr
    view = json.loads(result.stdout)
    assert view["network"]["chain_id"] == 114
    assert view["secrets"]["fluence_api_key"] == "set (hidden)"
    assert "fluence-key-do-not-print" not in result.stdout + result.stderr


def test_errors_print_a_message_not_a_traceback(okai_home: Path) -> None:
    result = call_okai("--network", "nowhere", "config", "show")
    assert result.returncode == 2
    assert "unknown network 'nowhere'" in result.stderr
    assert "Traceback" not in result.stderr
    debug = call_okai("--debug", "--network", "nowhere", "config", "show")
    assert debug.returncode == 2
    assert "Traceback" in debug.stderr


def test_usage_errors_exit_2(okai_home: Path) -> None:
    result = call_okai("dev", "sideways")
    assert result.returncode == 2
    assert "No such command" in result.stderr


def test_hostile_strings_in_errors_are_printed_literally(okai_home: Path) -> None:
    (okai_home / "okai.toml").write_text('network = "[bold red]x[/] \\u202e<script>"\n')
    result = call_okai("config", "show")
    assert result.returncode == 2
    assert "[bold red]x[/]" in result.stderr


def test_the_root_lists_each_command_with_its_own_help() -> None:
    """The root's table of commands (kept to import nothing) says what each module says."""
    from okai.cli.app import COMMANDS, NETWORK_NAMES, load_command
    from okai.config import NETWORK_NAMES as CONFIGURED

    assert NETWORK_NAMES == CONFIGURED
    assert sorted(COMMANDS) == sorted(GROUPS)
    for name, (_, help_text) in COMMANDS.items():
        command = load_command(name)
        assert command.name == name
        assert (command.help or "").strip().splitlines()[0] == help_text


def test_help_and_a_command_import_only_what_they_use() -> None:
    """Start-up time: `okai --help` imports no command module; `okai config show` no web3."""
    assert okai_imports("--help") == {
        "exit": 0,
        "cli": ["okai.cli.app", "okai.cli.output"],
        "web3": False,
    }
    assert okai_imports("--json", "config", "show")["web3"] is False


def test_the_verify_timeout_defaults_to_the_library_default() -> None:
    """cli/verify.py repeats it so that `okai` does not import web3 to start."""
    from okai.cli import verify as command
    from okai.verify import bounds

    assert command.DEFAULT_TIMEOUT_S == bounds.DEFAULT_TIMEOUT_S
