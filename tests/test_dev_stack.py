"""`okai dev up | status | down` against real processes on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_okai
from okai.dev import stack
from okai.nodejs import ToolMissingError
from okai.processes import StackError, is_ours


def _stack_json(home: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((home / ".okai" / "dev" / "stack.json").read_text())


def test_up_status_down_twice_through_the_cli(okai_home: Path) -> None:
    for _ in range(2):
        up = run_okai("--json", "dev", "up")
        assert up.returncode == 0, up.stderr
        described = json.loads(up.stdout)
        assert described["rpc_url"].startswith("http://127.0.0.1:")
        assert stack.rpc_answers(described["rpc_url"])
        status = run_okai("--json", "dev", "status")
        assert status.returncode == 0, status.stderr
        assert {row["state"] for row in json.loads(status.stdout)["services"]} == {"running"}
        again = run_okai("dev", "up")  # idempotent: keeps what runs
        assert again.returncode == 0 and "already running" in again.stderr
        down = run_okai("--json", "dev", "down")
        assert down.returncode == 0, down.stderr
        assert "anvil" in json.loads(down.stdout)["stopped"]
        assert not stack.rpc_answers(described["rpc_url"])
        stopped = run_okai("dev", "status")
        assert stopped.returncode == 1 and "not fully running" in stopped.stderr
    assert (okai_home / ".okai" / "dev" / "anvil-state.json").is_file()  # chain state persists


def test_busy_port_is_reported_with_what_to_do(okai_home: Path) -> None:
    port = int(os.environ["OKAI_DEV_ANVIL_PORT"])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(StackError, match=f"port {port} on 127.0.0.1 is busy") as caught:
            stack.up()
    assert "OKAI_DEV_ANVIL_PORT" in str(caught.value)


def test_stale_pid_is_detected_and_replaced(okai_home: Path) -> None:
    first = stack.up()
    try:  # from the first start on: whatever fails, nothing is left running
        entry = first["services"]["anvil"]
        os.kill(entry["pid"], 9)
        os.waitpid(entry["pid"], 0)
        assert {row.name: row.state for row in stack.status()} == {
            "anvil": "stale",
            "walrus": "running",
        }
        events: list[str] = []
        second = stack.up(on_event=events.append)
        assert second["services"]["anvil"]["pid"] != entry["pid"]
        assert any("from an earlier run is gone" in event for event in events)
    finally:
        stack.down()


def test_down_never_stops_a_process_it_did_not_start(okai_home: Path) -> None:
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stack_path = okai_home / ".okai" / "dev" / "stack.json"
        stack_path.parent.mkdir(parents=True)
        fake_entry = {"pid": stranger.pid, "argv": ["anvil", "--port", "1"], "port": 1,
                      "url": "http://127.0.0.1:1", "log": "x"}  # fmt: skip
        stack_path.write_text(json.dumps({"services": {"anvil": fake_entry}}))
        assert stack.down() == []
        assert stranger.poll() is None
        assert not is_ours(stranger.pid, ("anvil", "--port", "1"))
    finally:
        stranger.kill()
        stranger.wait()


def test_unreadable_stack_file_says_how_to_recover(okai_home: Path) -> None:
    path = okai_home / ".okai" / "dev" / "stack.json"
    path.parent.mkdir(parents=True)
    path.write_text("{truncated")
    result = run_okai("dev", "status")
    assert result.returncode == 2
    assert "stack.json: not valid JSON (line 1, column 2)" in result.stderr
    assert "okai dev down" in result.stderr and "remove" in result.stderr


def test_missing_anvil_binary_is_a_clear_error(
    okai_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Hide every node_modules folder: the explicit one, and those found from cwd and the package.
    monkeypatch.setenv("OKAI_NODE_MODULES", str(okai_home / "nothing-here"))
    monkeypatch.setattr("okai.nodejs.__file__", str(okai_home / "x" / "nodejs.py"))
    with pytest.raises(ToolMissingError) as caught:
        stack.up()
    assert "@foundry-rs/anvil-linux-amd64 is not installed" in str(caught.value)
    assert "make setup" in str(caught.value)
