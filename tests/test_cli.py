"""The CLI surface: groups, global options, exit codes, errors without tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import run_okai
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
    result = run_okai("--network", "nowhere", "config", "show")
    assert result.returncode == 2
    assert "unknown network 'nowhere'" in result.stderr
    assert "Traceback" not in result.stderr
    debug = run_okai("--debug", "--network", "nowhere", "config", "show")
    assert debug.returncode == 2
    assert "Traceback" in debug.stderr


def test_usage_errors_exit_2(okai_home: Path) -> None:
    result = run_okai("dev", "sideways")
    assert result.returncode == 2
    assert "No such command" in result.stderr


def test_hostile_strings_in_errors_are_printed_literally(okai_home: Path) -> None:
    (okai_home / "okai.toml").write_text('network = "[bold red]x[/] \\u202e<script>"\n')
    result = run_okai("config", "show")
    assert result.returncode == 2
    assert "[bold red]x[/]" in result.stderr
