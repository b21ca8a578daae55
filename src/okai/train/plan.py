"""Which files a rank reads: the data plan of a job.

Rules (documented in docs/training.md, relied on by determinism):

1. The job's files are listed dataset by dataset, each manifest's files in
   manifest order. A file whose path starts with `test/` is held out for
   evaluation; every other file is training data. Each list is numbered 0, 1, ...
2. A dataset file is the unit of partitioning. With at least as many files as
   ranks, file i belongs to rank i mod world_size, whole.
3. With fewer files than ranks, every rank reads every file and keeps samples
   rank, rank + world_size, rank + 2 world_size, ... of each (after the
   per-epoch shuffle, which is the same on every rank).
4. A file larger than the shard size is stored as several byte-shards; the rank
   that owns the file fetches all of them and joins them in offset order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import PurePosixPath

from okai.digest import Digest
from okai.errors import UsageError
from okai.formats import detect, label_of
from okai.manifest import DataFormat, DatasetManifest, DatasetShard

HELD_OUT_DIR = "test"


@dataclass(frozen=True)
class DataFile:
    """One dataset file as the trainer sees it: where its bytes are and what they must hash to."""

    index: int
    path: str
    size: int | None
    sha256: Digest
    format: DataFormat
    samples: int | None = None
    """As the manifest records it; None: counted from the file once fetched."""
    shards: tuple[DatasetShard, ...] = ()
    blob_id: str | None = None
    """Set for data okai never pushed (one raw blob); `shards` is empty then."""

    @property
    def held_out(self) -> bool:
        return PurePosixPath(self.path).parts[0] == HELD_OUT_DIR


@dataclass(frozen=True)
class Assignment:
    """A rank's share of one file: samples start, start + stride, ... (after shuffling)."""

    file: DataFile
    start: int = 0
    stride: int = 1


@dataclass(frozen=True)
class DataPlan:
    """All files of a job, split into training and held-out lists."""

    train: tuple[DataFile, ...]
    test: tuple[DataFile, ...]

    @property
    def labels(self) -> tuple[str, ...]:
        """The labels of plain files (their folders' names) in the training files, sorted."""
        return tuple(sorted({label_of(f.path) for f in self.train if f.format == "file"}))

    @classmethod
    def build(
        cls,
        manifests: Sequence[DatasetManifest],
        blobs: Sequence[tuple[str, str, Digest]] = (),
    ) -> DataPlan:
        """Plan from manifests (in job order) plus raw blobs given as (blob ID, path, sha256)."""
        entries: list[DataFile] = []
        for manifest in manifests:
            for file in manifest.files:
                pieces = sorted(
                    (shard for shard in manifest.shards if shard.path == file.path),
                    key=lambda shard: shard.offset,
                )
                entries.append(
                    DataFile(
                        index=0,
                        path=file.path,
                        size=file.size,
                        sha256=Digest(file.sha256),
                        format=file.format or detect(file.path),
                        samples=file.samples,
                        shards=tuple(pieces),
                    )
                )
        for blob_id, path, sha256 in blobs:
            entries.append(
                DataFile(
                    index=0,
                    path=path,
                    size=None,
                    sha256=sha256,
                    format=detect(path),
                    blob_id=blob_id,
                )
            )
        mixed = next((entry for entry in entries if entry.format != entries[0].format), None)
        if mixed is not None:
            raise UsageError(
                f"the job's data mixes formats: {entries[0].path} is {entries[0].format}, "
                f"{mixed.path} is {mixed.format}",
                hint="a job trains on one format; push other files as their own dataset",
            )
        train = [entry for entry in entries if not entry.held_out]
        test = [entry for entry in entries if entry.held_out]
        return cls(train=_numbered(train), test=_numbered(test))


def _numbered(files: list[DataFile]) -> tuple[DataFile, ...]:
    return tuple(replace(file, index=index) for index, file in enumerate(files))


def partition(files: Sequence[DataFile], rank: int, world_size: int) -> list[Assignment]:
    """The files (or strided parts of files) rank `rank` of `world_size` reads."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside a world of {world_size}")
    if len(files) >= world_size:
        return [Assignment(file) for file in files if file.index % world_size == rank]
    return [Assignment(file, start=rank, stride=world_size) for file in files]
