"""The node's shard cache against a real local Walrus server over HTTP: verified entries,
a bound kept by evicting the least recently used entries no rank holds, holds that other
processes respect (and that die with their process), and training that gives the same
model bytes whether its data streamed, was cached, or was evicted and fetched again."""

from __future__ import annotations

import fcntl
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from okai.digest import Digest
from okai.errors import IntegrityError, UsageError
from okai.manifest import DatasetShard, ManifestRef
from okai.train import (
    DataPlan,
    LaunchOptions,
    SourceSpec,
    WalrusShardSource,
    digits_files,
    digits_job,
    launch,
    partition,
)
from okai.train.cache import BOUND_ENV, CacheFull, ShardCache, parse_bound
from okai.train.loader import READ_AHEAD, RankStream, fetch
from okai.walrus.client import WalrusClient
from okai.walrus.dataset import push_dataset
from okai.walrus.server import WalrusServer
from walrus_helpers import local_server, make_client

SIZE = 1000


@pytest.fixture
def server(tmp_path: Path) -> Iterator[WalrusServer]:
    with local_server(tmp_path / "walrus") as running:
        yield running


@pytest.fixture
def client(server: WalrusServer) -> Iterator[WalrusClient]:
    with make_client(server.url) as opened:
        yield opened


def stored_shards(client: WalrusClient, count: int) -> list[DatasetShard]:
    """`count` blobs of SIZE distinct bytes on the server, as shards of one file."""
    shards = []
    for index in range(count):
        data = bytes([index]) * SIZE
        stored = client.store_bytes(data)
        shards.append(
            DatasetShard(
                path="train/blob.bin",
                offset=index * SIZE,
                size=SIZE,
                sha256=Digest.of_bytes(data),
                blob_id=stored.blob_id,
            )
        )
    return shards


def entries(cache: Path) -> set[str]:
    return {path.name for path in (cache / "sha256").iterdir()}


def on_disk(cache: Path) -> int:
    """Bytes in the cache, counted under its bookkeeping lock: a rank's prefetch thread
    may be writing (and renaming) an entry meanwhile, and the bound is promised to
    whoever looks from outside as well as in."""
    with open(cache / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return sum(path.stat().st_size for path in (cache / "sha256").iterdir())


def reads(server: WalrusServer) -> int:
    return server.faults.counts().get("GET blob", 0)


def use(source: WalrusShardSource, shard: DatasetShard) -> None:
    """Fetch (or hit) a shard and let go of it, as the stream does with each file."""
    source.release(source.shard(shard))


def test_the_least_recently_used_unheld_entry_makes_room(
    tmp_path: Path, server: WalrusServer, client: WalrusClient
) -> None:
    shards = stored_shards(client, 4)
    cache = tmp_path / "cache"
    source = WalrusShardSource(client, cache, bound=3 * SIZE)
    for shard in shards[:3]:
        use(source, shard)
    use(source, shards[0])  # a hit: shard 1 is now the least recently used
    before = reads(server)
    use(source, shards[3])
    assert entries(cache) == {shards[i].sha256.removeprefix("sha256:") for i in (0, 2, 3)}
    assert on_disk(cache) <= 3 * SIZE
    assert reads(server) == before + 1
    # Evicted, then needed again: fetched and verified again, still within the bound.
    path = source.shard(shards[1])
    assert Digest.of_file(path) == shards[1].sha256
    assert reads(server) == before + 2 and on_disk(cache) <= 3 * SIZE
    source.release(path)
    assert source._cache.held() == 0


def test_a_corrupted_entry_is_fetched_again_and_bad_network_bytes_are_never_stored(
    tmp_path: Path, server: WalrusServer, client: WalrusClient
) -> None:
    shards = stored_shards(client, 2)
    cache = tmp_path / "cache"
    source = WalrusShardSource(client, cache, bound=2 * SIZE)
    use(source, shards[0])
    entry = cache / "sha256" / shards[0].sha256.removeprefix("sha256:")
    entry.write_bytes(b"\xff" * SIZE)  # same size, other bytes
    before = reads(server)
    path = source.shard(shards[0])
    assert reads(server) == before + 1 and Digest.of_file(path) == shards[0].sha256
    source.release(path)
    server.faults.set(corrupt=-1)
    with pytest.raises(IntegrityError):
        source.shard(shards[1])
    assert entries(cache) == {shards[0].sha256.removeprefix("sha256:")}
    assert source._cache.held() == 0  # a failed fetch holds nothing


HOLDER = """\
import sys
from pathlib import Path
from okai.digest import Digest
from okai.train.cache import ShardCache
data = Path(sys.argv[2]).read_bytes()
cache = ShardCache(Path(sys.argv[1]))
cache.get(Digest.of_bytes(data), len(data), lambda: data, "held shard")
print("held", flush=True)
sys.stdin.readline()
"""


def test_an_entry_another_process_holds_is_never_evicted_until_it_dies(
    tmp_path: Path, server: WalrusServer, client: WalrusClient
) -> None:
    shards = stored_shards(client, 4)
    cache_dir = tmp_path / "cache"
    held_bytes = tmp_path / "held.bin"
    held_bytes.write_bytes(bytes([0]) * SIZE)  # the bytes of shards[0]
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(cache_dir), str(held_bytes)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        source = WalrusShardSource(client, cache_dir, bound=2 * SIZE)
        source._cache.wait_seconds = 0.5
        use(source, shards[1])
        use(source, shards[2])  # shard 0 is older, but held: shard 1 goes
        assert entries(cache_dir) == {shards[i].sha256.removeprefix("sha256:") for i in (0, 2)}
        mine = source.shard(shards[2])  # now every entry is held by someone
        with pytest.raises(CacheFull) as full:
            source.shard(shards[3])
        assert "bound of 2000 bytes" in full.value.message
        assert "2000 of its 2000 bytes are held" in full.value.message
        assert BOUND_ENV in full.value.message
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        use(source, shards[3])  # the dead holder's lock went with it
        assert entries(cache_dir) == {shards[i].sha256.removeprefix("sha256:") for i in (2, 3)}
        assert Digest.of_file(mine) == shards[2].sha256  # what we hold stayed
        source.release(mine)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=10)


def test_an_entry_larger_than_the_bound_is_refused(tmp_path: Path) -> None:
    data = b"x" * 100
    cache = ShardCache(tmp_path / "cache", bound=99)
    with pytest.raises(CacheFull, match="is 100 bytes, more than the shard cache's bound of 99"):
        cache.get(Digest.of_bytes(data), len(data), lambda: data, "big shard")
    assert cache.held() == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [(None, None), ("", None), ("4096", 4096), ("2G", 2 << 30), ("512 MiB", 512 << 20)],
)
def test_the_bound_is_a_size_in_bytes(text: str | None, expected: int | None) -> None:
    assert parse_bound(text) == expected


@pytest.mark.parametrize("text", ["0", "-1", "ten", "1.5G", "1P", "2G; rm -rf /"])
def test_a_bad_bound_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match=BOUND_ENV):
        parse_bound(text)


# ------------------------------------------------------------ a rank's stream


def pushed_digits(client: WalrusClient, folder: Path, train_shards: int) -> ManifestRef:
    for relative, data in digits_files(train_shards).items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    pushed = push_dataset(client, [folder], name="digits", journal_dir=folder.parent / "journal")
    return ManifestRef(manifest_blob_id=pushed.manifest_blob_id, sha256=pushed.manifest_digest)


def test_a_bound_below_the_read_ahead_is_refused_naming_both_figures(
    tmp_path: Path, client: WalrusClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = pushed_digits(client, tmp_path / "digits", 8)
    source = WalrusShardSource(client, tmp_path / "cache", bound=100_000)
    plan = DataPlan.build([source.manifest(ref)])
    sizes = sorted((file.size or 0 for file in plan.train), reverse=True)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    with pytest.raises(CacheFull) as small:
        fetch(source, partition(plan.train, 0, 1))
    needed = 2 * sum(sizes[:READ_AHEAD])
    assert f"bound of 100000 bytes ({BOUND_ENV})" in small.value.message
    assert f"this node's 2 rank(s) holds at once: {needed} bytes" in small.value.message


def test_a_stream_through_a_cache_smaller_than_its_data_keeps_the_bound_and_the_order(
    tmp_path: Path, server: WalrusServer, client: WalrusClient
) -> None:
    ref = pushed_digits(client, tmp_path / "digits", 16)
    unbounded = WalrusShardSource(client, tmp_path / "all")
    plan = DataPlan.build([unbounded.manifest(ref)])
    files = partition(plan.train, 0, 1)
    bound = sum(sorted((f.size or 0 for f in plan.train), reverse=True)[:READ_AHEAD]) + 10_000
    assert bound < sum(f.size or 0 for f in plan.train) / 2
    bounded = WalrusShardSource(client, tmp_path / "bounded", bound=bound)
    wanted = []
    for source in (unbounded, bounded):
        before = reads(server)
        stream = RankStream(fetch(source, files), seed=0, rank=0)
        batches = []
        for epoch in range(2):
            for x, y in stream.batches(epoch, 32):
                batches.append(torch.cat([x.flatten(), y.float()]))
                if source is bounded:
                    assert on_disk(tmp_path / "bounded") <= bound
        wanted.append(torch.stack(batches))
        assert source._cache.held() == 0  # every file let go of once read
        fetched = reads(server) - before
        # Unbounded: each file once. Bounded: epoch 2 found files evicted and read them again.
        assert fetched == len(files) if source is unbounded else fetched > len(files)
    assert torch.equal(wanted[0], wanted[1])


# ------------------------------------------------------------ 2 processes, one cache


@pytest.mark.slow
def test_the_same_job_gives_the_same_model_streamed_cached_or_evicted_and_fetched_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torchrun, 2 gloo processes sharing one node cache, reading a Walrus server over HTTP."""
    with local_server(tmp_path / "walrus") as server:
        with make_client(server.url) as client:
            ref = pushed_digits(client, tmp_path / "digits", 16)
        for name, value in {
            "OKAI_NETWORK": "dev",
            "OKAI_WALRUS_AGGREGATORS": server.url,
            "OKAI_WALRUS_PUBLISHER": server.url,
            "OKAI_WALRUS_CHECK_BLOB_IDS_UP_TO": "0",
        }.items():
            monkeypatch.setenv(name, value)
        job = digits_job((ref,), epochs=3)
        shards = 17  # 16 training files and the held-out one, one shard each

        def run(name: str, home: Path, bound: str | None) -> tuple[str, int]:
            """The model's digest, and how many blobs the run read from the server."""
            monkeypatch.setenv("OKAI_HOME", str(home))
            if bound is None:
                monkeypatch.delenv(BOUND_ENV, raising=False)
            else:
                monkeypatch.setenv(BOUND_ENV, bound)
            before = reads(server)
            options = LaunchOptions(source=SourceSpec.walrus("dev"), run_dir=tmp_path / name)
            result = launch(job, options)
            assert result.receipt is not None
            return result.receipt.model_sha256, reads(server) - before

        streamed = run("streamed", tmp_path / "home", None)
        cached = run("cached", tmp_path / "home", None)
        evicted = run("evicted", tmp_path / "small-home", "300K")
    assert streamed[0] == cached[0] == evicted[0]
    # Streaming read every shard; the warm cache none (only the manifest, once per rank);
    # evicted files were read again.
    assert cached[1] <= 2
    assert streamed[1] - cached[1] >= shards
    assert evicted[1] > streamed[1]
    small = tmp_path / "small-home" / "cache" / "shards" / "sha256"
    assert sum(path.stat().st_size for path in small.iterdir()) <= 300 << 10
