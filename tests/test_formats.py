"""Data formats at push time: each is inspected, counted and recorded; bad input stores nothing.

Pushes go to the local Walrus server over HTTP; training-side decoding of the same
files is checked in-process here and with torchrun in test_train_formats.py.
"""

from __future__ import annotations

import io
import json
import os
import random
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from format_samples import DATASETS, parquet_bytes, tar_bytes, write
from okai.errors import DocumentError, UsageError
from okai.formats import decode, detect
from okai.manifest import DatasetManifest, ManifestRef
from okai.train import DataPlan, LocalShardSource, partition
from okai.train.loader import RankStream, fetch
from okai.walrus.dataset import pull_dataset, push_dataset
from okai.walrus.server import WalrusServer
from walrus_helpers import local_server, make_client


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WalrusServer]:
    with local_server(tmp_path_factory.mktemp("walrus")) as running:
        yield running


def push(server: WalrusServer, root: Path, tmp: Path, **options: object) -> DatasetManifest:
    with make_client(server.url) as client:
        result = push_dataset(
            client,
            [root],
            name=root.name,
            journal_dir=tmp / "journals",
            **options,  # type: ignore[arg-type]
        )
    return result.manifest


@pytest.mark.parametrize("fmt", sorted(DATASETS))
def test_each_format_is_recorded_with_its_sample_count_and_pulls_back_unchanged(
    server: WalrusServer, tmp_path: Path, fmt: str
) -> None:
    root = DATASETS[fmt](tmp_path / fmt)
    manifest = push(server, root, tmp_path, shard_size=700)
    for entry in manifest.files:
        data = (root / entry.path).read_bytes()
        assert entry.format == fmt == detect(entry.path)
        assert entry.samples == len(decode(entry.format, data, entry.path)) > 0
    with make_client(server.url) as client:
        pull_dataset(client, manifest_file(manifest, tmp_path), tmp_path / "pulled")
    for entry in manifest.files:
        assert (tmp_path / "pulled" / entry.path).read_bytes() == (root / entry.path).read_bytes()


def manifest_file(manifest: DatasetManifest, tmp: Path) -> Path:
    path = tmp / "manifest.json"
    manifest.write(path)
    return path


def test_shards_of_line_and_tar_formats_say_which_sample_starts_first(
    server: WalrusServer, tmp_path: Path
) -> None:
    """A sample that crosses a shard boundary belongs to the shard it starts in."""
    lines = [b'{"n": %d, "pad": "%s"}\n' % (n, b"x" * (n * 7 % 50)) for n in range(60)]
    data = b"".join(lines)
    write(tmp_path / "d" / "lines.jsonl", data)
    write(tmp_path / "d" / "shard.tar", tar_bytes(random.Random(0), 9))
    manifest = push(server, tmp_path / "d", tmp_path, shard_size=1000)
    starts = [sum(map(len, lines[:n])) for n in range(60)]
    for shard in manifest.shards:
        if shard.path == "lines.jsonl":
            assert shard.first_sample == sum(1 for s in starts if s < shard.offset)
            if shard.offset:  # the line it starts with is that sample's JSON from its start
                begins = starts[shard.first_sample] - shard.offset
                assert begins >= 0 and data[shard.offset + begins :].startswith(b'{"n": ')
        else:  # 2 members of 1024 bytes a sample, then the end-of-archive blocks
            assert shard.first_sample == min(9, -(-shard.offset // 2048))
    assert not any(shard.first_sample is None for shard in manifest.shards)


def corrupt_parquet(root: Path) -> str:
    data = bytearray(parquet_bytes(random.Random(0), 40))  # written with page checksums
    data[len(data) // 3 : len(data) // 3 + 64] = os.urandom(64)
    write(root / "train" / "rows.parquet", bytes(data))
    return "rows.parquet"


def truncated_parquet(root: Path) -> str:
    write(root / "rows.parquet", parquet_bytes(random.Random(0), 40)[:-100])
    return "rows.parquet"


def truncated_tar(root: Path) -> str:
    data = tar_bytes(random.Random(0), 6)
    write(root / "shard.tar", data[: 512 * 9 + 30])  # inside the 5th member's data
    return "shard.tar"


def tar_cut_in_a_header(root: Path) -> str:
    data = tar_bytes(random.Random(0), 6)
    write(root / "shard.tar", data[: 1024 * 4 + 100])  # inside the 5th member's header
    return "shard.tar"


def linked_tar(root: Path) -> str:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        link = tarfile.TarInfo("s0.bin")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    write(root / "evil.tar", out.getvalue())
    return "evil.tar"


def split_sample_tar(root: Path) -> str:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for name in ("a.bin", "b.bin", "a.cls"):
            member = tarfile.TarInfo(name)
            member.size = 1
            archive.addfile(member, io.BytesIO(b"1"))
    write(root / "split.tar", out.getvalue())
    return "split.tar"


def bad_json(root: Path) -> str:
    write(root / "ok.jsonl", b'{"text": "fine"}\n')
    write(root / "records.jsonl", b'{"text": "fine"}\n{"text": unquoted}\n')
    return "records.jsonl"


def json_array_line(root: Path) -> str:
    write(root / "records.jsonl", b"[1, 2]\n")
    return "records.jsonl"


def latin1_text(root: Path) -> str:
    write(root / "notes.txt", "caf\xe9\n".encode("latin-1"))
    return "notes.txt"


def bad_safetensors(root: Path) -> str:
    write(root / "x.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    return "x.safetensors"


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (corrupt_parquet, "not a readable Parquet file"),
        (truncated_parquet, "not a readable Parquet file"),
        (truncated_tar, "truncated"),
        (tar_cut_in_a_header, "cut short"),
        (linked_tar, "is not a regular file"),
        (split_sample_tar, "members are not adjacent"),
        (bad_json, "line 2 is not JSON"),
        (json_array_line, "line 1 is a JSON list, not an object"),
        (latin1_text, "line 1 is not UTF-8"),
        (bad_safetensors, "not a safetensors file"),
    ],
)
def test_bad_input_is_refused_at_push_naming_the_file_and_nothing_is_stored(
    server: WalrusServer, tmp_path: Path, make: Callable[[Path], str], problem: str
) -> None:
    root = tmp_path / "data"
    name = make(root)
    before = server.faults.counts().get("PUT blob", 0)
    with pytest.raises(DocumentError) as caught:
        push(server, root, tmp_path)
    assert caught.value.source.endswith(name) and problem in caught.value.problem
    assert server.faults.counts().get("PUT blob", 0) == before
    assert not (tmp_path / "journals").exists() or not any((tmp_path / "journals").iterdir())


def test_a_format_given_for_the_push_must_fit_every_file(
    server: WalrusServer, tmp_path: Path
) -> None:
    """Mixed formats where one is expected: the odd file is named, nothing stored."""
    root = DATASETS["jsonl"](tmp_path / "data")
    write(root / "train" / "zz.parquet", parquet_bytes(random.Random(0), 5))
    before = server.faults.counts().get("PUT blob", 0)
    with pytest.raises(DocumentError, match=r"zz\.parquet: line 1 is not UTF-8"):
        push(server, root, tmp_path, data_format="jsonl")
    assert server.faults.counts().get("PUT blob", 0) == before


def test_a_job_whose_data_mixes_formats_is_refused(tmp_path: Path) -> None:
    source = LocalShardSource(tmp_path)
    a, _ = source.put_dataset("a", {"train/a.jsonl": b'{"text": "x"}\n'})
    b, _ = source.put_dataset("b", {"train/b.txt": b"x\n"})
    with pytest.raises(UsageError, match=r"mixes formats: train/a\.jsonl is jsonl, train/b\.txt"):
        DataPlan.build([source.manifest(a), source.manifest(b)])


def test_samples_stream_in_the_job_order_and_a_lying_count_is_caught(tmp_path: Path) -> None:
    source = LocalShardSource(tmp_path)
    files = {
        f"train/{i}.jsonl": b"".join(b'{"i": %d}\n' % (i * 10 + n) for n in range(5))
        for i in range(3)
    }
    ref, manifest = source.put_dataset("d", files, shard_size=16)
    plan = DataPlan.build([source.manifest(ref)])
    stream = RankStream(fetch(source, partition(plan.train, 0, 1)), seed=3, rank=0)
    first = [s["i"] for s in stream.in_order(0)]
    assert sorted(first) == [i * 10 + n for i in range(3) for n in range(5)]
    assert [s["i"] for s in stream.in_order(0)] == first != [s["i"] for s in stream.in_order(1)]

    # A manifest (pinned by digest, but written by whoever pushed) that miscounts.
    lying = json.loads(manifest.canonical_bytes())
    lying["files"][0]["samples"] = 4
    hostile = DatasetManifest.model_validate(lying)
    blob = source.put(hostile.canonical_bytes())
    ref = ManifestRef(manifest_blob_id=blob, sha256=hostile.digest())
    plan = DataPlan.build([source.manifest(ref)])
    stream = RankStream(fetch(source, partition(plan.train, 0, 1)), seed=3, rank=0)
    with pytest.raises(DocumentError, match="holds 5 samples; the manifest says 4"):
        list(stream.in_order(0))


def test_a_file_with_a_format_but_no_sample_count_is_not_a_manifest() -> None:
    with pytest.raises(ValueError, match="a format or a sample count, not both"):
        DatasetManifest.model_validate(
            {
                "name": "d",
                "files": [
                    {"path": "a.txt", "size": 0, "sha256": "sha256:" + "0" * 64, "format": "text"}
                ],
                "shards": [],
                "totals": {"files": 1, "shards": 0, "bytes": 0},
            }
        )
