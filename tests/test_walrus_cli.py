"""The `okai walrus | blob | data` commands: output and exit codes. Each command runs as a real
process here at least once (run_okai); the other calls run its `main` in this process."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import call_okai, free_port, run_okai
from walrus_helpers import ServerProcess, dead_url


@pytest.fixture
def server(okai_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerProcess]:
    """`okai walrus serve` with stand-in IDs, and the CLI pointed at it."""
    running = ServerProcess(okai_home / "walrus", free_port(), "--fake-blob-ids", "--test-controls")
    monkeypatch.setenv("OKAI_WALRUS_AGGREGATORS", running.url)
    monkeypatch.setenv("OKAI_WALRUS_PUBLISHER", running.url)
    monkeypatch.setenv("OKAI_WALRUS_CHECK_BLOB_IDS_UP_TO", "0")
    try:
        yield running
    finally:
        running.stop()


def okai_json(*args: str, real: bool = True) -> dict[str, object]:
    done = (run_okai if real else call_okai)("--json", *args)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_blob_put_and_get(server: ServerProcess, okai_home: Path) -> None:
    source = okai_home / "weights.bin"
    source.write_bytes(os.urandom(70_000))
    stored = okai_json("blob", "put", str(source), "--epochs", "3")
    assert stored["size"] == 70_000 and stored["status"] == "newlyCreated"
    blob_id, sha256 = str(stored["blobId"]), str(stored["sha256"])
    assert stored["url"] == f"{server.url}/v1/blobs/{blob_id}"

    out = okai_home / "copy.bin"
    got = okai_json("blob", "get", "--sha256", sha256, "--out", str(out), "--", blob_id)
    assert got["verifiedBy"] == "sha256" and out.read_bytes() == source.read_bytes()

    wrong = call_okai(
        "blob", "get", "--sha256", "sha256:" + "0" * 64, "-o", "bad.bin", "--", blob_id
    )
    assert wrong.returncode == 3 and "integrity check failed" in wrong.stderr
    assert not (okai_home / "bad.bin").exists()

    httpx.post(f"{server.url}/_okai/test/faults", json={"corrupt": -1}).raise_for_status()
    corrupted = call_okai("blob", "get", "--sha256", sha256, "-o", "corrupt.bin", "--", blob_id)
    assert corrupted.returncode == 3 and not (okai_home / "corrupt.bin").exists()
    httpx.delete(f"{server.url}/_okai/test/faults").raise_for_status()

    missing = call_okai("blob", "get", "A" * 43, "--sha256", sha256, "-o", "x.bin")
    assert missing.returncode == 1 and "404 BLOB_NOT_FOUND" in missing.stderr
    malformed = call_okai("blob", "get", "nope", "--sha256", sha256, "-o", "x.bin")
    assert malformed.returncode == 2 and "not a Walrus blob ID" in malformed.stderr
    too_long = call_okai("blob", "put", str(source), "--epochs", "54")
    assert too_long.returncode == 2 and "epochs" in too_long.stderr


def test_data_push_show_pull(server: ServerProcess, okai_home: Path) -> None:
    data = okai_home / "corpus"
    (data / "shards").mkdir(parents=True)
    for index in range(3):
        (data / "shards" / f"{index}.bin").write_bytes(os.urandom(300_000))
    (data / "meta.json").write_text('{"classes": 10}')
    pushed = okai_json("data", "push", str(data), "--shard-size", "128KiB", "--out", "m.json")
    assert pushed["name"] == "corpus" and pushed["files"] == 4 and pushed["shards"] == 1 + 3 * 3
    ref = str(pushed["ref"])
    assert ref == f"{pushed['manifestBlobId']}@{pushed['manifestDigest']}"

    shown = okai_json("data", "show", ref)
    assert shown["digest"] == pushed["manifestDigest"]
    assert shown["manifest"]["schema"] == "okai.dataset/v1"  # type: ignore[index]
    human = call_okai("data", "show", "m.json")
    assert human.returncode == 0 and "shards/2.bin" in human.stdout

    pulled = okai_json("data", "pull", ref, "--to", "restored")
    assert pulled["bytes"] == 3 * 300_000 + len('{"classes": 10}')
    for path in data.rglob("*.bin"):
        assert (okai_home / "restored" / path.relative_to(data)).read_bytes() == path.read_bytes()

    server.stop()  # a second pull needs no server: the cache has every verified shard
    again = call_okai("data", "pull", ref, "--to", "again")
    assert again.returncode == 0, again.stderr
    assert (okai_home / "again" / "meta.json").read_text() == '{"classes": 10}'


def test_data_errors_and_exit_codes(server: ServerProcess, okai_home: Path) -> None:
    (okai_home / "one.txt").write_text("one")
    pushed = okai_json("data", "push", "one.txt", "--name", "one", real=False)
    bad_ref = call_okai("data", "pull", "not-a-ref@sha256:00", "--to", "x")
    assert bad_ref.returncode == 2 and "BLOBID@sha256:HEX" in bad_ref.stderr
    forged = f"{pushed['manifestBlobId']}@sha256:{'1' * 64}"
    refused = call_okai("data", "pull", forged, "--to", "x")
    assert refused.returncode == 3 and not (okai_home / "x").exists()
    too_big = call_okai("data", "push", "one.txt", "--shard-size", "11MiB")
    assert too_big.returncode == 2 and "shard" in too_big.stderr


def test_unreachable_publisher_exits_1(okai_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = dead_url()
    monkeypatch.setenv("OKAI_WALRUS_AGGREGATORS", url)
    monkeypatch.setenv("OKAI_WALRUS_PUBLISHER", url)
    (okai_home / "f.txt").write_text("x")
    done = call_okai("blob", "put", "f.txt")
    assert done.returncode == 1 and "cannot reach" in done.stderr


def test_serve_refuses_without_node(okai_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    python_only = okai_home / "bin"
    python_only.mkdir()
    (python_only / "python").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", str(python_only))
    assert shutil.which("node") is None
    port = str(free_port())
    done = run_okai("walrus", "serve", "--dir", "srv", "--port", port)
    assert done.returncode == 1
    assert "Node.js" in done.stderr and "--fake-blob-ids" in done.stderr


def test_serve_on_a_busy_port_exits_1(okai_home: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        done = run_okai("walrus", "serve", "--dir", "srv", "--port", port, "--fake-blob-ids")
    assert done.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in done.stderr


@pytest.mark.slow
def test_dev_stack_serves_real_blob_ids(okai_home: Path) -> None:
    """`okai dev up` runs the server with real IDs; the CLI checks them end to end."""
    up = run_okai("dev", "up")
    assert up.returncode == 0, up.stderr
    try:
        stack = json.loads((okai_home / ".okai" / "dev" / "stack.json").read_text())
        assert stack["walrus_url"].endswith(os.environ["OKAI_DEV_WALRUS_PORT"])
        (okai_home / "hello.txt").write_bytes(b"some other string")
        stored = okai_json("blob", "put", "hello.txt", real=False)
        assert stored["blobId"] == "M4hsZGQ1oCktdzegB6HnI6Mi28S2nqOPHxK-W7_4BUk"
        assert stored["blobIdVerified"] is True
        got = okai_json("blob", "get", str(stored["blobId"]), "-o", "back.txt", real=False)
        assert got["verifiedBy"] == "blobId" and got["sha256"] == stored["sha256"]
        status = call_okai("--json", "dev", "status")
        services = {s["name"]: s["state"] for s in json.loads(status.stdout)["services"]}
        assert services["walrus"] == "running"
    finally:
        down = run_okai("dev", "down")
    assert down.returncode == 0 and "walrus" in down.stdout
