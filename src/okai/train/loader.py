"""A rank's data: fetch and verify its files, then stream shuffled batches with prefetch.

Two stages:

1. `fetch` (before the first step): the rank fetches the shards of its files
   through the source, several at once, each verified against its SHA-256, and
   reads how many samples each file holds. A corrupted or substituted shard stops
   the run here, before training, with an IntegrityError naming the shard. The
   sample counts fix the number of steps of an epoch, agreed by all ranks once.
2. `batches` (during training): a background thread reads the next files, hashes
   the exact bytes it is about to decode against the file's digest, decodes and
   shuffles them, while the current file trains. At most `prefetch` decoded
   files wait in memory.

A data file is a safetensors file with a tensor `x` (samples along the first
dimension) and a tensor `y` of integer labels of the same length.
"""

from __future__ import annotations

import json
import queue
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors

from okai.digest import Digest
from okai.errors import DocumentError, IntegrityError
from okai.train.data import ShardSource
from okai.train.plan import Assignment, DataFile
from okai.train.seeding import derive_seed

Batch = tuple[torch.Tensor, torch.Tensor]
MAX_HEADER = 100 << 20
"""safetensors' own limit on the JSON header."""


@dataclass(frozen=True)
class ReadyFile:
    """A file of this rank whose shards are local and verified."""

    assignment: Assignment
    parts: tuple[Path, ...]
    samples: int
    """Samples in the whole file; this rank keeps `share` of them."""

    @property
    def file(self) -> DataFile:
        return self.assignment.file

    @property
    def share(self) -> int:
        return len(range(self.assignment.start, self.samples, self.assignment.stride))


def fetch(
    source: ShardSource, assignments: Sequence[Assignment], *, workers: int = 4
) -> list[ReadyFile]:
    """Stage 1: fetch and verify every shard of `assignments` and count their samples."""
    if not assignments:
        return []
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="okai-fetch") as pool:
        futures = [pool.submit(_fetch_one, source, item) for item in assignments]
        try:
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _fetch_one(source: ShardSource, assignment: Assignment) -> ReadyFile:
    file = assignment.file
    if file.blob_id is not None:
        parts: tuple[Path, ...] = (source.blob(file.blob_id, file.sha256),)
    else:
        parts = tuple(source.shard(shard) for shard in file.shards)
    return ReadyFile(assignment, parts, _count_samples(file, parts))


def _count_samples(file: DataFile, parts: Sequence[Path]) -> int:
    """Read the sample count from the safetensors header, without loading the tensors."""
    where = f"data file {file.path}"
    prefix = _read_prefix(parts, 8)
    if len(prefix) < 8:
        raise DocumentError(where, None, "too short to be a safetensors file")
    (length,) = struct.unpack("<Q", prefix)
    if length > MAX_HEADER:
        raise DocumentError(where, None, f"safetensors header of {length} bytes is too large")
    try:
        header = json.loads(_read_prefix(parts, 8 + length)[8:])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DocumentError(where, None, f"not a safetensors file: {exc}") from exc
    if not isinstance(header, dict):
        raise DocumentError(where, None, "not a safetensors file: header is not an object")
    shapes = {}
    for name in ("x", "y"):
        entry = header.get(name)
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not isinstance(shape, list) or not shape:
            raise DocumentError(where, name, "missing: a data file holds tensors x and y")
        shapes[name] = shape
    if shapes["x"][0] != shapes["y"][0] or len(shapes["y"]) != 1:
        raise DocumentError(
            where, "y", f"shape {shapes['y']} is not one label per sample of x {shapes['x']}"
        )
    return int(shapes["x"][0])


def _read_prefix(parts: Sequence[Path], size: int) -> bytes:
    out = bytearray()
    for path in parts:
        with path.open("rb") as stream:
            out += stream.read(size - len(out))
        if len(out) >= size:
            break
    return bytes(out)


def read_verified(ready: ReadyFile) -> dict[str, torch.Tensor]:
    """Read a file's bytes once, check them against its digest, and decode those bytes."""
    file = ready.file
    data = b"".join(path.read_bytes() for path in ready.parts)
    actual = Digest.of_bytes(data)
    if actual != file.sha256:
        raise IntegrityError(f"data file {file.path}", file.sha256, actual)
    try:
        tensors = load_safetensors(data)
    except Exception as exc:  # safetensors raises its own untyped errors
        raise DocumentError(
            f"data file {file.path}", None, f"not a safetensors file: {exc}"
        ) from exc
    if tensors["y"].is_floating_point() or tensors["y"].is_complex():
        raise DocumentError(f"data file {file.path}", "y", "labels must be integers")
    return tensors


class RankStream:
    """Stage 2: this rank's samples as batches, in a shuffled order fixed by the job's seed."""

    def __init__(
        self, files: Sequence[ReadyFile], *, seed: int, rank: int, prefetch: int = 2
    ) -> None:
        self.files = list(files)
        self.seed = seed
        self.rank = rank
        self.prefetch = max(1, prefetch)
        self.wait_seconds = 0.0
        """Time the consumer spent blocked on the background reader, summed."""

    @property
    def samples(self) -> int:
        return sum(ready.share for ready in self.files)

    def batches(
        self, epoch: int, batch_size: int, *, start: int = 0, stop: int | None = None
    ) -> Iterator[Batch]:
        """Batches `start` to `stop` (exclusive) of `epoch`, all of exactly `batch_size` samples."""
        stop = self.samples // batch_size if stop is None else stop
        if stop * batch_size > self.samples:
            raise ValueError(f"rank {self.rank} has {self.samples} samples, fewer than asked")
        order = torch.randperm(
            len(self.files), generator=_generator(self.seed, "file-order", epoch, self.rank)
        )
        pieces = _window(
            [(self.files[i], epoch) for i in order.tolist()],
            start * batch_size,
            stop * batch_size,
        )
        yield from self._assemble(pieces, batch_size, keep_remainder=False)

    def ordered(self, batch_size: int) -> Iterator[Batch]:
        """All of this rank's samples in file order, unshuffled; the last batch may be short."""
        pieces = _window([(ready, None) for ready in self.files], 0, self.samples)
        yield from self._assemble(pieces, batch_size, keep_remainder=True)

    def _assemble(
        self, pieces: list[_Piece], batch_size: int, *, keep_remainder: bool
    ) -> Iterator[Batch]:
        reader = _Reader(pieces, self.seed, self.prefetch)
        try:
            rest_x: torch.Tensor | None = None
            rest_y: torch.Tensor | None = None
            while True:
                began = time.perf_counter()
                chunk = reader.next()
                self.wait_seconds += time.perf_counter() - began
                if chunk is None:
                    break
                x, y = chunk
                if rest_x is not None and rest_y is not None:
                    x, y = torch.cat([rest_x, x]), torch.cat([rest_y, y])
                full = len(y) - len(y) % batch_size
                for offset in range(0, full, batch_size):
                    yield x[offset : offset + batch_size], y[offset : offset + batch_size]
                rest_x, rest_y = x[full:], y[full:]
            if keep_remainder and rest_x is not None and rest_y is not None and len(rest_y):
                yield rest_x, rest_y
        finally:
            reader.close()


@dataclass(frozen=True)
class _Piece:
    ready: ReadyFile
    epoch: int | None
    """None: keep file order (evaluation)."""
    skip: int
    take: int


def _window(files: list[tuple[ReadyFile, int | None]], begin: int, end: int) -> list[_Piece]:
    """The pieces of the concatenated sample stream in [begin, end)."""
    pieces = []
    position = 0
    for ready, epoch in files:
        low, high = max(begin, position), min(end, position + ready.share)
        if low < high:
            pieces.append(_Piece(ready, epoch, low - position, high - low))
        position += ready.share
    return pieces


def _generator(seed: int, purpose: str, *position: int) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, purpose, *position))


def _select(piece: _Piece, seed: int) -> Batch:
    tensors = read_verified(piece.ready)
    assignment = piece.ready.assignment
    if piece.epoch is None:
        order = torch.arange(piece.ready.samples)
    else:
        order = torch.randperm(
            piece.ready.samples,
            generator=_generator(seed, "sample-order", piece.epoch, assignment.file.index),
        )
    own = order[assignment.start :: assignment.stride][piece.skip : piece.skip + piece.take]
    return tensors["x"][own], tensors["y"][own].long()


class _Reader:
    """Reads, verifies and decodes pieces on a background thread, `depth` ahead."""

    _END = object()

    def __init__(self, pieces: list[_Piece], seed: int, depth: int) -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(pieces, seed), name="okai-prefetch", daemon=True
        )
        self._thread.start()

    def _run(self, pieces: list[_Piece], seed: int) -> None:
        try:
            for piece in pieces:
                if not self._put(_select(piece, seed)):
                    return
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(exc)
            return
        self._put(self._END)

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def next(self) -> Batch | None:
        item = self._queue.get()
        if item is self._END:
            return None
        if isinstance(item, BaseException):
            raise item
        assert isinstance(item, tuple)
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
