"""Strangers' strings reach the user inert: in human output, in --json, in errors, in logs.

Each class of hostile text (ESC CSI, OSC 8 links, the C1 CSI U+009B, bidi overrides and
isolates, rich markup) goes through each output path: the rich consoles, the JSON
printer, the error printer (fed by a real publisher's error answer, in a real `okai`
process), and the node agent's log. The verify report's human and JSON output are
tested with a recorded hostile job in test_record_cli.py.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from rich.table import Table

from conftest import call_okai
from okai.cli.output import CliState, InertConsole
from okai.compute.node.agent import Agent, AgentOptions
from okai.inert import inert, inert_json

HOSTILE = {
    "csi": ("\x1b[2J\x1b[31mred", "\\u001b[2J\\u001b[31mred"),
    "osc8": ("\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\", "\\u001b]8;;https://evil"),
    "c1": ("\x9b31mred", "\\u009b31mred"),
    "rlo": ("model\u202egnp.exe", "model\\u202egnp.exe"),
    "isolate": ("\u2066admin\u2069", "\\u2066admin\\u2069"),
    "markup": (
        "[link=https://evil.example]click[/link] [bold red]x",
        "[link=https://evil.example]",
    ),
}
UNSAFE = ("\x1b", "\x9b", "\u202e", "\u2066", "\u2069")


def shown_safely(text: str, key: str) -> None:
    escaped = HOSTILE[key][1]
    assert not any(ch in text for ch in UNSAFE), repr(text)
    assert escaped in text, (key, text)


@pytest.mark.parametrize("key", sorted(HOSTILE))
def test_inert_escapes_each_class_visibly(key: str) -> None:
    shown_safely(inert(HOSTILE[key][0]), key)


def test_inert_leaves_ordinary_text_and_cuts_long_text() -> None:
    assert inert("café – 日本 ✓") == "café – 日本 ✓"
    assert inert("a\tb\nc\x7f") == "a\\u0009b\\u000ac\\u007f"
    assert inert("x" * 50, limit=10) == "x" * 10 + "… (40 more characters)"


@pytest.mark.parametrize("key", sorted(HOSTILE))
def test_the_consoles_print_strings_and_table_cells_inert(key: str) -> None:
    out = io.StringIO()
    # Not a terminal: rich adds no escape sequence of its own, so any is the stranger's.
    console = InertConsole(file=out, width=400, markup=False, emoji=False)
    raw = HOSTILE[key][0]
    console.print(f"name {raw}")
    table = Table("field", "value")
    table.add_row("name", raw)
    console.print(table)
    text = out.getvalue()
    shown_safely(text, key)
    if key == "markup":  # printed, not interpreted
        assert text.count("[link=https://evil.example]click[/link] [bold red]x") == 2


@pytest.mark.parametrize("key", sorted(HOSTILE))
def test_json_output_is_ascii_and_round_trips(key: str) -> None:
    raw = HOSTILE[key][0]
    data = {"name": raw, "list": [raw, "ok"], "nested": {raw: 1}}
    text = inert_json(data)
    assert text.isascii() and "\x1b" not in text and "\x7f" not in inert_json({"d": "\x7f"})
    assert json.loads(text) == data


def test_emit_prints_the_json_document_inert(capsys: pytest.CaptureFixture[str]) -> None:
    import okai.cli.output as output

    buffer = io.StringIO()
    console = InertConsole(file=buffer)
    original = output.stdout
    output.stdout = console
    try:
        CliState(json=True).emit({"name": "".join(raw for raw, _ in HOSTILE.values())})
    finally:
        output.stdout = original
    text = buffer.getvalue()
    assert text.isascii() and not any(ch in text for ch in UNSAFE)
    assert json.loads(text)["name"] == "".join(raw for raw, _ in HOSTILE.values())


class HostilePublisher:
    """A Walrus publisher answering every request with an error envelope that carries `message`."""

    def __init__(self, message: str) -> None:
        body = json.dumps(
            {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": message}}
        )

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_PUT(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(400)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body.encode())))
                self.end_headers()
                self.wfile.write(body.encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hostile_publisher() -> Iterator[HostilePublisher]:
    publisher = HostilePublisher(" ".join(raw for raw, _ in HOSTILE.values()))
    yield publisher
    publisher.close()


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_an_error_quoting_an_endpoint_is_printed_inert(
    okai_home: Path,
    hostile_publisher: HostilePublisher,
    monkeypatch: pytest.MonkeyPatch,
    json_flag: list[str],
) -> None:
    monkeypatch.setenv("OKAI_WALRUS_PUBLISHER", hostile_publisher.url)
    monkeypatch.setenv("OKAI_WALRUS_AGGREGATORS", hostile_publisher.url)
    (okai_home / "file.bin").write_bytes(b"some bytes")

    result = call_okai(*json_flag, "blob", "put", "file.bin")

    assert result.returncode != 0
    assert "error:" in result.stderr and "answered 400" in result.stderr
    for key in HOSTILE:
        shown_safely(result.stderr, key)
    assert "\x1b" not in result.stdout


def test_the_node_agent_log_is_inert(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    options = AgentOptions(job_file=tmp_path / "j", cluster_file=tmp_path / "c", state_dir=tmp_path)
    Agent(options).log("failed: " + " ".join(raw for raw, _ in HOSTILE.values()))
    log = (tmp_path / "agent.log").read_text()
    stderr = capsys.readouterr().err
    assert log.count("\n") == stderr.count("\n") == 1
    for key in HOSTILE:
        shown_safely(log, key)
        shown_safely(stderr, key)
