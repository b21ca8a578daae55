"""Training data: verified sources, the partition rule, byte-shard reassembly, the batch stream."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save as save_safetensors

from okai.digest import Digest
from okai.errors import DocumentError, IntegrityError
from okai.manifest import DatasetManifest, ManifestRef
from okai.train import DataPlan, LocalShardSource, SourceSpec, partition
from okai.train.data import check_source, local_blob_id
from okai.train.errors import BlobUnavailable
from okai.train.loader import RankStream, fetch, read_verified


def samples_file(first: int, count: int) -> bytes:
    """A data file whose sample i has x = first + i and label (first + i) % 10."""
    ids = np.arange(first, first + count)
    x = np.repeat(ids.astype(np.float32)[:, None], 3, axis=1)
    return bytes(save_safetensors({"x": x, "y": (ids % 10).astype(np.int64)}))


def dataset(
    tmp_path: Path, sizes: list[int], *, test: int = 0, shard_size: int = 1 << 20
) -> tuple[LocalShardSource, ManifestRef, DatasetManifest]:
    source = LocalShardSource(tmp_path / "store")
    files: dict[str, bytes] = {}
    first = 0
    for index, size in enumerate(sizes):
        files[f"train/part-{index}.safetensors"] = samples_file(first, size)
        first += size
    if test:
        files["test/held-out.safetensors"] = samples_file(10_000, test)
    ref, manifest = source.put_dataset("numbers", files, shard_size=shard_size)
    return source, ref, manifest


def ids(stream_batches: list[tuple[torch.Tensor, torch.Tensor]]) -> list[int]:
    return [int(v) for x, _ in stream_batches for v in x[:, 0].tolist()]


def rank_stream(
    source: LocalShardSource, plan: DataPlan, rank: int, world: int, seed: int = 0
) -> RankStream:
    return RankStream(fetch(source, partition(plan.train, rank, world)), seed=seed, rank=rank)


# ------------------------------------------------------------ sources


def test_a_local_store_returns_only_verified_manifests_and_shards(tmp_path: Path) -> None:
    source, ref, manifest = dataset(tmp_path, [5, 7], test=3)
    assert source.manifest(ref) == manifest
    for shard in manifest.shards:
        assert Digest.of_file(source.shard(shard)) == shard.sha256
    assert ref.manifest_blob_id == local_blob_id(manifest.canonical_bytes())


def test_a_corrupted_shard_is_refused_and_named(tmp_path: Path) -> None:
    source, _, manifest = dataset(tmp_path, [5, 7])
    shard = manifest.shards[1]
    path = source.root / "blobs" / shard.blob_id
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as caught:
        source.shard(shard)
    assert caught.value.what.startswith("shard train/part-1.safetensors [0, ")
    assert shard.blob_id in caught.value.what
    assert caught.value.expected == shard.sha256


def test_a_substituted_manifest_is_refused(tmp_path: Path) -> None:
    source, ref, _ = dataset(tmp_path, [5])
    _, other_ref, _ = dataset(tmp_path, [6])
    swapped = ManifestRef(manifest_blob_id=other_ref.manifest_blob_id, sha256=ref.sha256)
    with pytest.raises(IntegrityError, match="dataset manifest"):
        source.manifest(swapped)


def test_a_missing_blob_is_reported_with_the_store(tmp_path: Path) -> None:
    source, _, manifest = dataset(tmp_path, [5])
    (source.root / "blobs" / manifest.shards[0].blob_id).unlink()
    with pytest.raises(BlobUnavailable, match=r"not in the local store"):
        source.shard(manifest.shards[0])


def test_source_specs_round_trip_and_are_checked_before_launch(tmp_path: Path) -> None:
    spec = SourceSpec.local(tmp_path)
    assert SourceSpec.parse(str(spec)) == spec
    assert SourceSpec.parse("walrus:coston2") == SourceSpec.walrus("coston2")
    with pytest.raises(Exception, match="not a data source"):
        SourceSpec.parse("ftp:somewhere")
    with pytest.raises(Exception, match="not a local blob store"):
        check_source(spec)


# ------------------------------------------------------------ plan and partition


def test_files_are_split_into_training_and_held_out_and_numbered(tmp_path: Path) -> None:
    source, ref, _ = dataset(tmp_path, [2, 2, 2], test=2)
    plan = DataPlan.build([source.manifest(ref)])
    assert [f.path for f in plan.train] == [f"train/part-{i}.safetensors" for i in range(3)]
    assert [f.index for f in plan.train] == [0, 1, 2]
    assert [f.path for f in plan.test] == ["test/held-out.safetensors"]


@pytest.mark.parametrize(
    ("files", "world", "expected"),
    [
        (8, 2, [[0, 2, 4, 6], [1, 3, 5, 7]]),
        (3, 2, [[0, 2], [1]]),
        (4, 3, [[0, 3], [1], [2]]),
    ],
)
def test_file_i_belongs_to_rank_i_mod_world_size(
    tmp_path: Path, files: int, world: int, expected: list[list[int]]
) -> None:
    source, ref, _ = dataset(tmp_path, [1] * files)
    plan = DataPlan.build([source.manifest(ref)])
    owned = [[a.file.index for a in partition(plan.train, r, world)] for r in range(world)]
    assert owned == expected
    assert all(a.stride == 1 for r in range(world) for a in partition(plan.train, r, world))


def test_with_fewer_files_than_ranks_every_rank_takes_every_nth_sample(tmp_path: Path) -> None:
    source, ref, _ = dataset(tmp_path, [10])
    plan = DataPlan.build([source.manifest(ref)])
    seen = []
    for rank in range(3):
        stream = rank_stream(source, plan, rank, 3)
        seen.append(sorted(ids(list(stream.ordered(100)))))
    assert sorted(v for part in seen for v in part) == list(range(10))
    assert [len(part) for part in seen] == [4, 3, 3]


def test_every_rank_pulls_only_the_shards_of_its_own_files(tmp_path: Path) -> None:
    source, ref, manifest = dataset(tmp_path, [3, 3, 3, 3])
    plan = DataPlan.build([source.manifest(ref)])
    ready = fetch(source, partition(plan.train, 1, 2))
    fetched = {path.name for item in ready for path in item.parts()}
    owned = {
        s.blob_id
        for s in manifest.shards
        if s.path in {"train/part-1.safetensors", "train/part-3.safetensors"}
    }
    assert fetched == owned


# ------------------------------------------------------------ reassembly and the stream


def test_a_file_stored_as_several_byte_shards_is_reassembled(tmp_path: Path) -> None:
    whole, whole_ref, _ = dataset(tmp_path / "whole", [40, 40])
    split, split_ref, split_manifest = dataset(tmp_path / "split", [40, 40], shard_size=100)
    assert len(split_manifest.shards) == 20  # 928-byte files in 100-byte shards
    batches = []
    for source, ref in ((whole, whole_ref), (split, split_ref)):
        plan = DataPlan.build([source.manifest(ref)])
        batches.append(ids(list(rank_stream(source, plan, 0, 1).batches(epoch=1, batch_size=8))))
    assert batches[0] == batches[1]
    assert sorted(batches[0]) == list(range(80))


def test_the_order_is_fixed_by_seed_and_epoch_and_resumes_at_any_batch(tmp_path: Path) -> None:
    source, ref, _ = dataset(tmp_path, [13, 9, 11, 7])
    plan = DataPlan.build([source.manifest(ref)])
    stream = rank_stream(source, plan, 0, 2)
    epoch0 = ids(list(stream.batches(0, 4)))
    assert epoch0 == ids(list(rank_stream(source, plan, 0, 2).batches(0, 4)))
    assert epoch0 != ids(list(stream.batches(1, 4)))
    assert epoch0 != ids(list(rank_stream(source, plan, 0, 2, seed=1).batches(0, 4)))
    assert ids(list(stream.batches(0, 4, start=3))) == epoch0[12:]
    assert ids(list(stream.batches(0, 4, start=1, stop=3))) == epoch0[4:12]
    # Files 0 and 2 belong to rank 0: 24 samples, 6 full batches, nothing from other ranks.
    assert len(epoch0) == 24 and set(epoch0) <= set(range(13)) | set(range(22, 33))


def test_bytes_changed_on_disk_after_verification_are_never_decoded(tmp_path: Path) -> None:
    source, ref, manifest = dataset(tmp_path, [6])
    plan = DataPlan.build([source.manifest(ref)])
    stream = rank_stream(source, plan, 0, 1)
    stream.files[0].parts()  # fetched and verified, as the read-ahead does
    path = source.root / "blobs" / manifest.shards[0].blob_id
    path.write_bytes(samples_file(500, 6))
    with pytest.raises(IntegrityError, match=r"data file train/part-0\.safetensors"):
        list(stream.batches(0, 2))


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b"not a safetensors file at all", None),
        (bytes(save_safetensors({"x": np.zeros((4, 2), np.float32)})), "y"),
        (
            bytes(
                save_safetensors({"x": np.zeros((4, 2), np.float32), "y": np.zeros(3, np.int64)})
            ),
            "y",
        ),
    ],
)
def test_malformed_data_files_are_document_errors(
    tmp_path: Path, content: bytes, field: str | None
) -> None:
    source = LocalShardSource(tmp_path)
    with pytest.raises(DocumentError) as refused:  # a push checks the file ...
        source.put_dataset("bad", {"train/bad.safetensors": content})
    assert (refused.value.source, refused.value.field) == ("train/bad.safetensors", field)
    # ... and training checks it again: a manifest need not come from a careful pusher.
    ref, _ = source.put_dataset("bad", {"train/bad.safetensors": content}, inspected=False)
    plan = DataPlan.build([source.manifest(ref)])
    with pytest.raises(DocumentError) as caught:
        fetch(source, partition(plan.train, 0, 1))
    assert caught.value.source == "data file train/bad.safetensors"
    assert caught.value.field == field


def test_float_labels_are_refused(tmp_path: Path) -> None:
    source = LocalShardSource(tmp_path)
    content = save_safetensors({"x": np.zeros((4, 2), np.float32), "y": np.zeros(4, np.float32)})
    ref, _ = source.put_dataset("bad", {"train/bad.safetensors": bytes(content)})
    ready = fetch(source, partition(DataPlan.build([source.manifest(ref)]).train, 0, 1))
    with pytest.raises(DocumentError, match="labels must be integers"):
        read_verified(ready[0])
