"""A rank's data: plan its files, then stream them, verified, as shuffled batches.

Two stages:

1. `fetch` (before the first step): the rank learns how many samples each of
   its files holds. A manifest that records the counts needs no download: the
   rank starts at once. Only data pushed without counts is fetched here (its
   shards verified against their SHA-256) to count its samples. The counts fix
   the number of steps of an epoch, agreed by all ranks once.
2. `batches` / `samples` (during training, streaming): a background thread
   walks the epoch's files in order. It keeps the shards of the next
   `read_ahead` files downloading (each verified by the source against its
   SHA-256, and a corrupted or substituted one stops the run with an
   IntegrityError naming the shard), hashes the exact bytes it is about to
   decode against the file's digest, decodes and shuffles them, while the
   current file trains. At most `prefetch` decoded files wait in memory. The
   order is the job's whatever the timing, so streaming changes no model byte.

Formats are those of `okai.formats`. A safetensors file's samples are rows of
its tensors `x` and `y` and batch without help; samples of the other formats
are dicts, which a `collate` function turns into a batch `(x, y)`.
"""

from __future__ import annotations

import functools
import io
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from safetensors.torch import load as load_safetensors

from okai.digest import Digest
from okai.errors import DocumentError, IntegrityError, UsageError
from okai.formats import MAX_SAFETENSORS_HEADER, Sample, decode, inspect, safetensors_samples
from okai.train.cache import BOUND_ENV, CacheFull
from okai.train.data import ShardSource
from okai.train.plan import Assignment, DataFile
from okai.train.seeding import derive_seed

Batch = tuple[torch.Tensor, torch.Tensor]
Collate = Callable[[list[Sample]], Batch]
"""Turns a list of samples (dicts) into a batch `(inputs, targets)`."""


READ_AHEAD = 4
"""Files whose shards a rank keeps downloading ahead of the one it decodes."""


class ReadyFile:
    """A file of this rank: its sample count is known; its shards are fetched (verified) on use."""

    def __init__(self, assignment: Assignment, samples: int, source: ShardSource) -> None:
        self.assignment = assignment
        self.samples = samples
        """Samples in the whole file; this rank keeps `share` of them."""
        self._source = source
        self._kept: tuple[Path, ...] | None = None
        self._lock = threading.Lock()

    @property
    def file(self) -> DataFile:
        return self.assignment.file

    @property
    def share(self) -> int:
        return len(range(self.assignment.start, self.samples, self.assignment.stride))

    def parts(self) -> tuple[Path, ...]:
        """Local files of the file's shards in offset order, each verified by the source, kept
        on disk for the rest of the run (for readers of one's own: `ctx.files()`)."""
        with self._lock:
            if self._kept is None:
                self._kept = _fetch_parts(self._source, self.file)
            return self._kept

    def hold(self) -> tuple[Path, ...]:
        """The file's shards, verified, on disk until `let_go`: what the stream reads.

        Fetched again (or found in the cache) on every call, so a bounded cache can
        evict a file between epochs; the kept ones of `parts` if there are any.
        """
        with self._lock:
            if self._kept is not None:
                return self._kept
        return _fetch_parts(self._source, self.file)

    def let_go(self, parts: tuple[Path, ...]) -> None:
        """Done with what `hold` returned."""
        with self._lock:
            if parts is self._kept:
                return
        _release(self._source, parts)


def fetch(
    source: ShardSource, assignments: Sequence[Assignment], *, workers: int = 4
) -> list[ReadyFile]:
    """Stage 1: each file's sample count: the manifest's, else fetched, verified and counted.

    Fails at once if the source's cache bound cannot hold what the read-ahead of
    this node's ranks holds at once (`check_read_ahead`).
    """
    if not assignments:
        return []
    check_read_ahead(source, [item.file for item in assignments])
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="okai-fetch") as pool:
        futures = [pool.submit(_fetch_one, source, item) for item in assignments]
        try:
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def read_ahead_bytes(files: Sequence[DataFile], read_ahead: int = READ_AHEAD) -> int:
    """The most bytes a rank's stream over `files` holds on disk at once: its largest
    `read_ahead` files (the reader holds the shards of that many files)."""
    sizes = sorted((_stored_size(file) for file in files), reverse=True)
    return sum(sizes[:read_ahead])


def check_read_ahead(source: ShardSource, files: Sequence[DataFile]) -> None:
    """Refuse a cache bound below the read-ahead of every rank on this node.

    Ranks of a node share one cache; each holds up to `READ_AHEAD` of its files
    at once (LOCAL_WORLD_SIZE, set by torchrun, says how many ranks share it).
    """
    bound = source.cache_bound
    if bound is None:
        return
    ranks = int(os.environ.get("LOCAL_WORLD_SIZE") or 1)
    needed = ranks * read_ahead_bytes(files)
    if needed > bound:
        raise CacheFull(
            f"the shard cache's bound of {bound} bytes ({BOUND_ENV}) is smaller than what "
            f"the read-ahead of this node's {ranks} rank(s) holds at once: {needed} bytes "
            f"({READ_AHEAD} files each); raise the bound to at least {needed} bytes"
        )


def _stored_size(file: DataFile) -> int:
    return sum(shard.size for shard in file.shards) if file.shards else file.size or 0


def _fetch_one(source: ShardSource, assignment: Assignment) -> ReadyFile:
    file = assignment.file
    if file.samples is not None:
        return ReadyFile(assignment, file.samples, source)
    parts = _fetch_parts(source, file)
    try:
        count = _count_samples(file, parts)
    finally:
        _release(source, parts)
    return ReadyFile(assignment, count, source)


def _fetch_parts(source: ShardSource, file: DataFile) -> tuple[Path, ...]:
    """The file's shards, verified, each held by the source until released."""
    if file.blob_id is not None:
        return (source.blob(file.blob_id, file.sha256),)
    held: list[Path] = []
    try:
        for shard in file.shards:
            held.append(source.shard(shard))
    except BaseException:
        _release(source, held)
        raise
    return tuple(held)


def _release(source: ShardSource, parts: Sequence[Path]) -> None:
    for path in parts:
        source.release(path)


def _count_samples(file: DataFile, parts: Sequence[Path]) -> int:
    """The sample count of a file pushed without one, read from its verified parts."""
    where = f"data file {file.path}"
    if file.format == "safetensors":
        return safetensors_samples(io.BytesIO(_header_bytes(parts)), where)
    return inspect(file.format, io.BytesIO(_read_all(parts)), where).samples


def _header_bytes(parts: Sequence[Path]) -> bytes:
    """The safetensors length prefix and header of a file stored as `parts`."""
    prefix = _read_prefix(parts, 8)
    length = int.from_bytes(prefix, "little") if len(prefix) == 8 else 0
    return _read_prefix(parts, 8 + min(length, MAX_SAFETENSORS_HEADER))


def _read_prefix(parts: Sequence[Path], size: int) -> bytes:
    out = bytearray()
    for path in parts:
        with path.open("rb") as stream:
            out += stream.read(size - len(out))
        if len(out) >= size:
            break
    return bytes(out)


def _read_all(parts: Sequence[Path]) -> bytes:
    return b"".join(path.read_bytes() for path in parts)


class Rows(Protocol):
    """Some samples of a file, in order: tensor rows, or a list of dicts."""

    def __len__(self) -> int: ...
    def take(self, index: torch.Tensor) -> Rows: ...
    def cut(self, begin: int, end: int) -> Rows: ...
    def join(self, other: Rows) -> Rows: ...
    def samples(self) -> list[Sample]: ...


@dataclass(frozen=True)
class TensorRows:
    """Samples of a safetensors file: rows of `x` and their labels `y`."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def take(self, index: torch.Tensor) -> TensorRows:
        return TensorRows(self.x[index], self.y[index])

    def cut(self, begin: int, end: int) -> TensorRows:
        return TensorRows(self.x[begin:end], self.y[begin:end])

    def join(self, other: Rows) -> TensorRows:
        assert isinstance(other, TensorRows)
        return TensorRows(torch.cat([self.x, other.x]), torch.cat([self.y, other.y]))

    def samples(self) -> list[Sample]:
        return [{"x": x, "y": y} for x, y in zip(self.x, self.y, strict=True)]


@dataclass(frozen=True)
class RecordRows:
    """Samples of every other format: dicts (see okai.formats)."""

    items: list[Sample]

    def __len__(self) -> int:
        return len(self.items)

    def take(self, index: torch.Tensor) -> RecordRows:
        return RecordRows([self.items[i] for i in index.tolist()])

    def cut(self, begin: int, end: int) -> RecordRows:
        return RecordRows(self.items[begin:end])

    def join(self, other: Rows) -> RecordRows:
        assert isinstance(other, RecordRows)
        return RecordRows(self.items + other.items)

    def samples(self) -> list[Sample]:
        return self.items


def read_verified(ready: ReadyFile, held: tuple[Path, ...] | None = None) -> Rows:
    """Read a file's bytes once, check them against its digest, and decode those bytes.

    `held`: what `ready.hold()` returned (let go of here, once read); else held now.
    """
    file = ready.file
    parts = ready.hold() if held is None else held
    try:
        data = _read_all(parts)
    finally:
        ready.let_go(parts)
    actual = Digest.of_bytes(data)
    if actual != file.sha256:
        raise IntegrityError(f"data file {file.path}", file.sha256, actual)
    where = f"data file {file.path}"
    if file.format == "safetensors":
        try:
            tensors = load_safetensors(data)
        except Exception as exc:  # safetensors raises its own untyped errors
            raise DocumentError(where, None, f"not a safetensors file: {exc}") from exc
        if tensors["y"].is_floating_point() or tensors["y"].is_complex():
            raise DocumentError(where, "y", "labels must be integers")
        rows: Rows = TensorRows(tensors["x"], tensors["y"].long())
    else:
        rows = RecordRows(decode(file.format, data, file.path))
    if len(rows) != ready.samples:
        raise DocumentError(
            where, None, f"holds {len(rows)} samples; the manifest says {ready.samples}"
        )
    return rows


def collate_rows(rows: Rows, collate: Collate | None, fmt: str) -> Batch:
    """A batch from rows: tensor rows as they are, other samples through `collate`."""
    if collate is not None:
        return collate(rows.samples())
    if isinstance(rows, TensorRows):
        return rows.x, rows.y
    raise UsageError(
        f"{fmt} samples are dicts, not tensors: pass a collate function "
        "(ctx.fit(..., collate=...)) that turns a list of samples into (inputs, targets)"
    )


class RankStream:
    """Stage 2: this rank's samples as batches, in a shuffled order fixed by the job's seed."""

    def __init__(
        self,
        files: Sequence[ReadyFile],
        *,
        seed: int,
        rank: int,
        prefetch: int = 2,
        read_ahead: int = READ_AHEAD,
    ) -> None:
        self.files = list(files)
        self.seed = seed
        self.rank = rank
        self.prefetch = max(1, prefetch)
        self.read_ahead = max(1, read_ahead)
        self.format = self.files[0].file.format if self.files else "safetensors"
        self.wait_seconds = 0.0
        """Time the consumer spent blocked on the background reader, summed."""

    @property
    def samples(self) -> int:
        return sum(ready.share for ready in self.files)

    def batches(
        self,
        epoch: int,
        batch_size: int,
        *,
        start: int = 0,
        stop: int | None = None,
        collate: Collate | None = None,
    ) -> Iterator[Batch]:
        """Batches `start` to `stop` (exclusive) of `epoch`, all of exactly `batch_size` samples."""
        stop = self.samples // batch_size if stop is None else stop
        if stop * batch_size > self.samples:
            raise ValueError(f"rank {self.rank} has {self.samples} samples, fewer than asked")
        pieces = self._epoch_pieces(epoch, start * batch_size, stop * batch_size)
        for rows in self._assemble(pieces, batch_size, keep_remainder=False):
            yield collate_rows(rows, collate, self.format)

    def in_order(self, epoch: int) -> Iterator[Sample]:
        """Every sample of this rank's share in `epoch`'s order (the order batches take)."""
        for rows in self._rows(self._epoch_pieces(epoch, 0, self.samples)):
            yield from rows.samples()

    def ordered(self, batch_size: int, collate: Collate | None = None) -> Iterator[Batch]:
        """All of this rank's samples in file order, unshuffled; the last batch may be short."""
        pieces = _window([(ready, None) for ready in self.files], 0, self.samples)
        for rows in self._assemble(pieces, batch_size, keep_remainder=True):
            yield collate_rows(rows, collate, self.format)

    def _epoch_pieces(self, epoch: int, begin: int, end: int) -> list[_Piece]:
        order = torch.randperm(
            len(self.files), generator=_generator(self.seed, "file-order", epoch, self.rank)
        )
        return _window([(self.files[i], epoch) for i in order.tolist()], begin, end)

    def _rows(self, pieces: list[_Piece]) -> Iterator[Rows]:
        """Each piece's rows, decoded `prefetch` ahead; time blocked is added to wait_seconds."""
        reader = _Reader(pieces, self.seed, self.prefetch, self.read_ahead)
        try:
            while True:
                began = time.perf_counter()
                rows = reader.next()
                self.wait_seconds += time.perf_counter() - began
                if rows is None:
                    return
                yield rows
        finally:
            reader.close()

    def _assemble(
        self, pieces: list[_Piece], batch_size: int, *, keep_remainder: bool
    ) -> Iterator[Rows]:
        rest: Rows | None = None
        for chunk in self._rows(pieces):
            rows = chunk if rest is None else rest.join(chunk)
            full = len(rows) - len(rows) % batch_size
            for offset in range(0, full, batch_size):
                yield rows.cut(offset, offset + batch_size)
            rest = rows.cut(full, len(rows))
        if keep_remainder and rest is not None and len(rest):
            yield rest


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


def _select(piece: _Piece, seed: int, held: tuple[Path, ...]) -> Rows:
    rows = read_verified(piece.ready, held)
    assignment = piece.ready.assignment
    if piece.epoch is None:
        order = torch.arange(piece.ready.samples)
    else:
        order = torch.randperm(
            piece.ready.samples,
            generator=_generator(seed, "sample-order", piece.epoch, assignment.file.index),
        )
    own = order[assignment.start :: assignment.stride][piece.skip : piece.skip + piece.take]
    return rows.take(own)


def _let_go_done(ready: ReadyFile, future: Future[tuple[Path, ...]]) -> None:
    if not future.cancelled() and future.exception() is None:
        ready.let_go(future.result())


class _Reader:
    """Reads, verifies and decodes pieces on a background thread, `depth` ahead."""

    _END = object()

    def __init__(self, pieces: list[_Piece], seed: int, depth: int, read_ahead: int) -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._read_ahead = read_ahead
        self._thread = threading.Thread(
            target=self._run, args=(pieces, seed), name="okai-prefetch", daemon=True
        )
        self._thread.start()

    def _run(self, pieces: list[_Piece], seed: int) -> None:
        downloads = ThreadPoolExecutor(self._read_ahead, thread_name_prefix="okai-read-ahead")
        fetching: dict[int, tuple[ReadyFile, Future[tuple[Path, ...]]]] = {}
        try:
            for index, piece in enumerate(pieces):
                for ahead in pieces[index : index + self._read_ahead]:
                    key = id(ahead)
                    if key not in fetching:
                        fetching[key] = (ahead.ready, downloads.submit(ahead.ready.hold))
                rows = _select(piece, seed, fetching.pop(id(piece))[1].result())
                if not self._put(rows):
                    return
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(exc)
            return
        finally:
            downloads.shutdown(wait=False, cancel_futures=True)
            # Let go of what was read ahead and will not be read now (once it arrives).
            for ready, future in fetching.values():
                future.add_done_callback(functools.partial(_let_go_done, ready))
        self._put(self._END)

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def next(self) -> Rows | None:
        item = self._queue.get()
        if item is self._END:
            return None
        if isinstance(item, BaseException):
            raise item
        assert isinstance(item, (TensorRows, RecordRows))
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
