"""Datasets: push as shards plus a manifest, pull verified, resume, cache, share the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import free_port
from okai.digest import Digest
from okai.errors import DocumentError, IntegrityError, UsageError
from okai.manifest import DatasetManifest, ManifestRef
from okai.walrus.dataset import (
    cache_path,
    fetch_manifest,
    fetch_shard,
    format_ref,
    parse_ref,
    parse_size,
    plan_push,
    pull_dataset,
    push_dataset,
)
from okai.walrus.errors import WalrusRequestError, WalrusUnreachable
from okai.walrus.server import WalrusServer
from walrus_helpers import MiB, ServerProcess, local_server, make_client

KiB = 1 << 10


@pytest.fixture
def server(tmp_path: Path) -> Iterator[WalrusServer]:
    with local_server(tmp_path / "walrus") as running:
        yield running


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "digits"
    (root / "train").mkdir(parents=True)
    (root / "train" / "images.bin").write_bytes(os.urandom(2 * MiB + 300 * KiB))
    (root / "train" / "labels.csv").write_text("label\n" + "7\n" * 1000)
    (root / "copy.bin").write_bytes((root / "train" / "images.bin").read_bytes()[: 1 * MiB])
    (root / "empty.txt").write_bytes(b"")
    (root / "README.md").write_text("# digits\n")
    return root


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_push_then_pull_round_trip(server: WalrusServer, dataset: Path, tmp_path: Path) -> None:
    pushed_bytes: list[int] = []
    with make_client(server.url) as client:
        result = push_dataset(
            client,
            [dataset],
            name="digits",
            shard_size=MiB,
            journal_dir=tmp_path / "journals",
            on_progress=pushed_bytes.append,
        )
        manifest = result.manifest
        assert manifest.name == "digits" and manifest.totals.files == 5
        assert [f.path for f in manifest.files] == [
            "README.md",
            "copy.bin",
            "empty.txt",
            "train/images.bin",
            "train/labels.csv",
        ]
        assert manifest.totals.shards == 1 + 1 + 0 + 3 + 1
        assert max(shard.size for shard in manifest.shards) <= MiB
        assert {f.path: f.media_type for f in manifest.files}["train/labels.csv"] == "text/csv"
        # copy.bin repeats the first shard of images.bin: stored once, listed twice.
        assert result.stored_shards == 5 and result.reused_shards == 1
        assert sum(pushed_bytes) == manifest.totals.bytes
        assert result.manifest_digest == manifest.digest()
        assert result.ref == format_ref(result.manifest_blob_id, manifest.digest())
        assert not list((tmp_path / "journals").iterdir())  # done: the manifest is the record

        ref = parse_ref(result.ref)
        assert isinstance(ref, ManifestRef)
        assert fetch_manifest(client, ref) == manifest
        pulled: list[int] = []
        dest = tmp_path / "pulled"
        got = pull_dataset(
            client, ref, dest, cache_dir=tmp_path / "cache", on_progress=pulled.append
        )
    assert got == manifest
    assert files_of(dest) == files_of(dataset)
    assert sum(pulled) == manifest.totals.bytes


def test_second_pull_is_served_from_the_cache(dataset: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with local_server(tmp_path / "walrus") as server, make_client(server.url) as client:
        result = push_dataset(
            client, [dataset], name="digits", shard_size=MiB, journal_dir=tmp_path / "journals"
        )
        pull_dataset(client, parse_ref(result.ref), tmp_path / "first", cache_dir=cache)
        reads = server.faults.counts()["GET blob"]
    assert reads == 1 + 5  # the manifest and each distinct shard, once
    # The server is gone: everything must come from the cache.
    with make_client(server.url) as client:
        pull_dataset(client, parse_ref(result.ref), tmp_path / "second", cache_dir=cache)
    assert files_of(tmp_path / "second") == files_of(dataset)


def test_pull_from_a_local_manifest_file(
    server: WalrusServer, dataset: Path, tmp_path: Path
) -> None:
    with make_client(server.url) as client:
        result = push_dataset(
            client,
            [dataset / "README.md", dataset / "train"],
            name="mixed",
            shard_size=MiB,
            journal_dir=tmp_path / "j",
        )
        local = tmp_path / "manifest.json"
        result.manifest.write(local)
        source = parse_ref(str(local))
        assert source == local
        pull_dataset(client, source, tmp_path / "out", cache_dir=tmp_path / "cache")
    assert sorted(files_of(tmp_path / "out")) == ["README.md", "images.bin", "labels.csv"]


def test_corrupted_shard_fails_the_pull_and_leaves_nothing(
    server: WalrusServer, dataset: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    with make_client(server.url) as client:
        result = push_dataset(
            client, [dataset], name="digits", shard_size=MiB, journal_dir=tmp_path / "j"
        )
        fetch_manifest(client, parse_ref(result.ref), cache_dir=cache)  # type: ignore[arg-type]
        server.faults.set(corrupt=-1)
        with pytest.raises(IntegrityError):
            pull_dataset(client, parse_ref(result.ref), tmp_path / "out", cache_dir=cache)
    cached = sorted(p.name for p in (cache / "walrus" / "sha256").iterdir())
    assert cached == [result.manifest_digest.hex]  # no shard, verified or not
    assert not (tmp_path / "out").exists() or files_of(tmp_path / "out") == {}


def test_wrong_manifest_digest_is_refused(
    server: WalrusServer, dataset: Path, tmp_path: Path
) -> None:
    with make_client(server.url) as client:
        result = push_dataset(
            client,
            [dataset / "README.md"],
            name="readme",
            shard_size=MiB,
            journal_dir=tmp_path / "j",
        )
        forged = ManifestRef(
            manifest_blob_id=result.manifest_blob_id, sha256=Digest.of_bytes(b"something else")
        )
        with pytest.raises(IntegrityError):
            fetch_manifest(client, forged)


def test_publisher_dying_mid_push_then_resuming(dataset: Path, tmp_path: Path) -> None:
    """Kill the publisher process mid-push; a second push stores only what is missing."""
    source = tmp_path / "big"
    source.mkdir()
    for index in range(4):
        (source / f"part-{index}.bin").write_bytes(os.urandom(512 * KiB))
    port = free_port()
    folder = tmp_path / "walrus"
    journals = tmp_path / "journals"
    first = ServerProcess(folder, port, "--fake-blob-ids", "--test-controls")
    sent: list[int] = []

    def kill_midway(n: int) -> None:
        sent.append(n)
        if sum(sent) >= 900 * KiB:
            first.kill()

    with make_client(first.url) as client, pytest.raises(WalrusUnreachable):
        push_dataset(
            client,
            [source],
            name="big",
            shard_size=256 * KiB,
            journal_dir=journals,
            workers=2,
            on_progress=kill_midway,
        )
    journal = next(journals.iterdir())
    journaled = len(journal.read_text().splitlines())
    assert 1 <= journaled < 8
    for blob in (folder / "blobs").iterdir():  # the manifest was never stored
        assert b"okai.dataset/v1" not in blob.read_bytes()

    second = ServerProcess(folder, port, "--fake-blob-ids", "--test-controls")
    try:
        with make_client(second.url) as client:
            result = push_dataset(
                client, [source], name="big", shard_size=256 * KiB, journal_dir=journals, workers=2
            )
            assert result.reused_shards == journaled
            assert result.stored_shards == 8 - journaled
            stats = httpx.get(f"{second.url}/_okai/test/stats").json()
            assert stats["PUT blobs"] == 8 - journaled + 1  # the missing shards, then the manifest
            pull_dataset(client, parse_ref(result.ref), tmp_path / "out", cache_dir=tmp_path / "c")
        assert files_of(tmp_path / "out") == files_of(source)
    finally:
        second.stop()


FETCH_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from okai.manifest import DatasetManifest
    from okai.walrus.client import WalrusClient
    from okai.walrus.dataset import fetch_shard

    url, manifest_path, cache = sys.argv[1:]
    manifest = DatasetManifest.load(manifest_path)
    with WalrusClient([url], None, compute_blob_ids_up_to=0) as client:
        paths = [str(fetch_shard(client, shard, Path(cache))) for shard in manifest.shards]
    print(json.dumps(paths))
    """
)


def test_fetch_shard_from_several_processes(
    server: WalrusServer, dataset: Path, tmp_path: Path
) -> None:
    with make_client(server.url) as client:
        result = push_dataset(
            client, [dataset], name="digits", shard_size=256 * KiB, journal_dir=tmp_path / "j"
        )
    local = tmp_path / "manifest.json"
    result.manifest.write(local)
    cache = tmp_path / "shared-cache"
    ranks = [
        subprocess.Popen(
            [sys.executable, "-c", FETCH_SCRIPT, server.url, str(local), str(cache)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [rank.communicate(timeout=120) for rank in ranks]
    assert [rank.returncode for rank in ranks] == [0, 0, 0], outputs
    expected = [str(cache_path(cache, Digest.parse(s.sha256))) for s in result.manifest.shards]
    assert all(json.loads(out) == expected for out, _ in outputs)
    for shard in result.manifest.shards:
        assert Digest.of_file(cache_path(cache, Digest.parse(shard.sha256))) == shard.sha256
    leftover = [p.name for p in (cache / "walrus" / "sha256").iterdir() if "partial" in p.name]
    assert leftover == []


def test_fetch_shard_reuses_the_cache(server: WalrusServer, tmp_path: Path) -> None:
    data = tmp_path / "one.bin"
    data.write_bytes(os.urandom(1000))
    with make_client(server.url) as client:
        result = push_dataset(
            client, [data], name="one", shard_size=MiB, journal_dir=tmp_path / "j"
        )
        shard = result.manifest.shards[0]
        first = fetch_shard(client, shard, tmp_path / "cache")
        before = server.faults.counts()["GET blob"]
        assert fetch_shard(client, shard, tmp_path / "cache") == first
        assert server.faults.counts()["GET blob"] == before


def test_a_tampered_cache_entry_is_fetched_again(server: WalrusServer, tmp_path: Path) -> None:
    data = tmp_path / "one.bin"
    data.write_bytes(os.urandom(1000))
    cache = tmp_path / "cache"
    with make_client(server.url) as client:
        result = push_dataset(
            client, [data], name="one", shard_size=MiB, journal_dir=tmp_path / "j"
        )
        shard = result.manifest.shards[0]
        entry = fetch_shard(client, shard, cache)
        entry.write_bytes(b"X" * 1000)  # same size, other bytes
        assert fetch_shard(client, shard, cache) == entry
    assert entry.read_bytes() == data.read_bytes()


def test_pull_refuses_to_write_outside_the_destination(
    server: WalrusServer, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "file.txt").write_text("inside")
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "sub").symlink_to(outside)
    with make_client(server.url) as client:
        result = push_dataset(
            client, [source], name="s", shard_size=MiB, journal_dir=tmp_path / "j"
        )
        with pytest.raises(DocumentError, match="outside"):
            pull_dataset(client, parse_ref(result.ref), dest, cache_dir=tmp_path / "cache")
    assert list(outside.iterdir()) == []


def test_push_refuses_what_cannot_work(server: WalrusServer, dataset: Path, tmp_path: Path) -> None:
    with (
        make_client(server.url, max_body=MiB) as client,
        pytest.raises(WalrusRequestError, match="shard-size"),
    ):
        push_dataset(client, [dataset], name="d", shard_size=2 * MiB, journal_dir=tmp_path)
    with pytest.raises(UsageError, match="both be stored"):
        plan_push([dataset / "README.md", dataset / "README.md"], MiB)
    (tmp_path / "hollow").mkdir()
    with pytest.raises(UsageError, match="nothing to push"):
        plan_push([tmp_path / "hollow"], MiB)
    assert server.faults.counts() == {}


def test_refs_and_sizes(tmp_path: Path) -> None:
    blob_id = "M4hsZGQ1oCktdzegB6HnI6Mi28S2nqOPHxK-W7_4BUk"
    digest = Digest.of_bytes(b"manifest")
    ref = parse_ref(f"{blob_id}@{digest}")
    assert ref == ManifestRef(manifest_blob_id=blob_id, sha256=digest)
    with pytest.raises(UsageError, match="BLOBID@sha256"):
        parse_ref(f"{blob_id}@sha256:1234")
    with pytest.raises(UsageError, match="neither"):
        parse_ref(str(tmp_path / "missing.json"))
    assert parse_size("10MiB") == 10 * MiB
    assert parse_size("4 KiB") == 4096
    assert parse_size("4MB") == 4_000_000
    assert parse_size("1048576") == MiB
    assert parse_size("1.5GiB") == 3 * (1 << 29)
    with pytest.raises(UsageError):
        parse_size("ten")


def test_a_manifest_document_with_unsafe_paths_is_refused(tmp_path: Path) -> None:
    bad = {
        "schema": "okai.dataset/v1",
        "name": "x",
        "files": [{"path": "../escape", "size": 0, "sha256": str(Digest.of_bytes(b""))}],
        "shards": [],
        "totals": {"files": 1, "shards": 0, "bytes": 0},
    }
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(DocumentError, match="files"):
        DatasetManifest.load(path)
