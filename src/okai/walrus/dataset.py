"""Datasets on Walrus: files split into shards, stored in parallel, described by a manifest.

Push: hash every file and shard locally, store the shards the journal does
not already list (in parallel), then store the `okai.dataset/v1` manifest in
its canonical JSON form, so the manifest's blob has exactly the manifest's
digest. A manifest is never stored before all of its shards are.

Pull: fetch the manifest (verified against the digest in the reference), fetch
every shard into a content-addressed cache (verified by SHA-256, atomic, so
several processes may share the cache), then reassemble each file from its
verified shards. A second pull of the same data is served from the cache.

A dataset reference (`REF`) is written one of two ways:

- `BLOBID@sha256:HEX`: the manifest's Walrus blob ID and the SHA-256 you trust
  (what `okai data push` prints);
- a path to a manifest JSON file on disk (trusted as it is).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import mimetypes
import os
import re
import shutil
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

from okai import paths
from okai.digest import Digest
from okai.errors import DocumentError, IntegrityError, UsageError
from okai.formats import SPANNING, detect, inspect
from okai.manifest import (
    DataFormat,
    DatasetFile,
    DatasetManifest,
    DatasetShard,
    DatasetTotals,
    ManifestRef,
)
from okai.walrus.client import ProgressFn, WalrusClient
from okai.walrus.errors import WalrusRequestError
from okai.walrus.integrity import partial_path
from okai.walrus.journal import PushJournal, journal_path
from okai.walrus.streams import CHUNK

DEFAULT_SHARD_SIZE = 10 * 1024 * 1024
"""The public publishers' body limit: the largest shard they accept."""
MANIFEST_LIMIT = 64 * 1024 * 1024
DEFAULT_WORKERS = 8

DatasetSource = ManifestRef | Path
"""What a REF names: a manifest on Walrus, or a manifest file on disk."""

_REF = re.compile(r"^(?P<blob>[A-Za-z0-9_-]{43})@(?P<digest>sha256:[0-9a-fA-F]{64})$")
_SIZE = re.compile(r"^\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[KMGT]?i?B?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4}


# ---------------------------------------------------------------- references and sizes


def parse_ref(text: str) -> DatasetSource:
    """A REF as written on the command line: `BLOBID@sha256:HEX`, or a manifest file path."""
    match = _REF.match(text.strip())
    if match:
        return ManifestRef(manifest_blob_id=match["blob"], sha256=Digest.parse(match["digest"]))
    path = Path(text)
    if path.is_file():
        return path
    if "@" in text:
        raise UsageError(
            f"not a dataset reference: {text[:120]!r}",
            hint="write BLOBID@sha256:HEX (43-character blob ID, 64 hex digits), "
            "as `okai data push` prints it",
        )
    raise UsageError(
        f"{text[:120]!r} is neither BLOBID@sha256:HEX nor a manifest file",
        hint="pass the reference `okai data push` printed, or the path of a manifest JSON file",
    )


def format_ref(blob_id: str, digest: Digest) -> str:
    return f"{blob_id}@{digest}"


def parse_size(text: str) -> int:
    """Sizes like `10MiB`, `4M`, `512k`, `1048576` (B, KiB/MiB/GiB binary, K/M/G decimal)."""
    match = _SIZE.match(text)
    if match is None:
        raise UsageError(f"not a size: {text!r} (try 10MiB, 4MB or 1048576)")
    unit = (match["unit"] or "").upper()
    binary = "I" in unit
    letter = unit.rstrip("B").rstrip("I")
    base = 1024 ** "KMGT".index(letter) * 1024 if binary and letter else _UNITS[letter]
    return int(float(match["number"]) * base)


# ---------------------------------------------------------------- planning a push


@dataclass(frozen=True)
class SourceFile:
    """A local file of the dataset and the path it gets in the manifest."""

    local: Path
    path: str
    size: int
    media_type: str


@dataclass(frozen=True)
class PushPlan:
    files: tuple[SourceFile, ...]
    shard_size: int

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def plan_push(paths: Sequence[Path], shard_size: int) -> PushPlan:
    """The files to push: a file keeps its name, a folder contributes its contents."""
    if shard_size < 1:
        raise UsageError(f"the shard size must be at least 1 byte, got {shard_size}")
    found: dict[str, SourceFile] = {}
    for given in paths:
        given = Path(given)
        if given.is_dir():
            entries = sorted(p for p in given.rglob("*") if p.is_file())
            pairs = [(p, p.relative_to(given).as_posix()) for p in entries]
        elif given.is_file():
            pairs = [(given, given.name)]
        else:
            raise UsageError(f"{given} is not a file or folder")
        for local, name in pairs:
            if name in found:
                raise UsageError(
                    f"two inputs would both be stored as {name!r}: {found[name].local} and {local}",
                    hint="push the folder that holds both, or rename one",
                )
            media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
            found[name] = SourceFile(local, name, local.stat().st_size, media_type)
    if not found:
        raise UsageError("nothing to push: the inputs hold no files")
    return PushPlan(files=tuple(found[name] for name in sorted(found)), shard_size=shard_size)


def _hash_file(source: SourceFile, shard_size: int) -> tuple[Digest, list[tuple[int, int, Digest]]]:
    """One pass over a file: its SHA-256 and each shard's (offset, size, SHA-256)."""
    whole = hashlib.sha256()
    shards: list[tuple[int, int, Digest]] = []
    with open(source.local, "rb") as stream:
        offset = 0
        while offset < source.size:
            size = min(shard_size, source.size - offset)
            part = hashlib.sha256()
            left = size
            while left:
                chunk = stream.read(min(CHUNK, left))
                if not chunk:
                    raise UsageError(f"{source.local} became shorter while it was being read")
                whole.update(chunk)
                part.update(chunk)
                left -= len(chunk)
            shards.append((offset, size, Digest("sha256:" + part.hexdigest())))
            offset += size
    return Digest("sha256:" + whole.hexdigest()), shards


# ---------------------------------------------------------------- push


@dataclass(frozen=True)
class PushResult:
    manifest: DatasetManifest
    manifest_blob_id: str
    manifest_digest: Digest
    stored_shards: int
    """Shards sent to the publisher in this run."""
    reused_shards: int
    """Shards an earlier, interrupted run had stored (from the journal) or repeated content."""

    @property
    def ref(self) -> str:
        return format_ref(self.manifest_blob_id, self.manifest_digest)


def push_dataset(
    client: WalrusClient,
    paths: Sequence[Path],
    *,
    name: str,
    shard_size: int = DEFAULT_SHARD_SIZE,
    journal_dir: Path,
    workers: int = DEFAULT_WORKERS,
    epochs: int = 1,
    permanent: bool = False,
    on_progress: ProgressFn | None = None,
    data_format: DataFormat | None = None,
) -> PushResult:
    """Store files as shards plus a manifest; resumes an interrupted push of the same data.

    Every file is inspected first (`okai.formats`): read as `data_format`, or as the
    format its name implies when None. A file that is not what its format says stops
    the push before anything is stored.
    """
    if client.max_body and shard_size > client.max_body:
        raise WalrusRequestError(
            f"shards of {shard_size} bytes exceed the publisher's limit of {client.max_body}",
            hint=f"use --shard-size {client.max_body} or less",
        )
    plan = plan_push(paths, shard_size)
    files: list[DatasetFile] = []
    shards: list[tuple[SourceFile, int, int, Digest]] = []
    first_sample: dict[tuple[str, int], int] = {}
    for source in plan.files:
        file_digest, pieces = _hash_file(source, shard_size)
        fmt = data_format or detect(source.path)
        offsets = [offset for offset, _, _ in pieces] if fmt in SPANNING else []
        with open(source.local, "rb") as stream:
            found = inspect(fmt, stream, str(source.local), boundaries=offsets)
        first_sample.update(
            ((source.path, offset), first)
            for offset, first in zip(offsets, found.first_samples, strict=True)
        )
        files.append(
            DatasetFile(
                path=source.path,
                size=source.size,
                sha256=file_digest,
                media_type=source.media_type,
                format=fmt,
                samples=found.samples,
            )
        )
        shards.extend((source, offset, size, digest) for offset, size, digest in pieces)

    journal = PushJournal(
        journal_path(journal_dir, name, client.publisher or "", epochs, permanent)
    )
    report = _locked(on_progress)
    first_of: dict[Digest, tuple[SourceFile, int, int, Digest]] = {}
    referenced: Counter[Digest] = Counter()
    for shard in shards:
        first_of.setdefault(shard[3], shard)
        referenced[shard[3]] += shard[2]
    missing = [shard for digest, shard in first_of.items() if digest not in journal.stored]
    report(sum(total for digest, total in referenced.items() if digest in journal.stored))

    def store(shard: tuple[SourceFile, int, int, Digest]) -> None:
        source, offset, size, digest = shard
        result = client.store_file(
            source.local,
            offset=offset,
            length=size,
            epochs=epochs,
            permanent=permanent,
            on_progress=report,
        )
        if result.sha256 != digest:
            raise UsageError(f"{source.local} changed while it was being pushed; push it again")
        journal.record(digest, result.blob_id, size)
        report(referenced[digest] - size)

    try:
        _run_all(store, missing, workers)
    finally:
        journal.close()
    manifest = DatasetManifest(
        name=name,
        files=tuple(files),
        shards=tuple(
            DatasetShard(
                path=source.path,
                offset=offset,
                size=size,
                sha256=digest,
                blob_id=journal.stored[digest],
                media_type=source.media_type,
                first_sample=first_sample.get((source.path, offset)),
            )
            for source, offset, size, digest in shards
        ),
        totals=DatasetTotals(files=len(files), shards=len(shards), bytes=plan.total_bytes),
    )
    stored = client.store_bytes(manifest.canonical_bytes(), epochs=epochs, permanent=permanent)
    if stored.sha256 != manifest.digest():
        raise AssertionError("the stored manifest bytes are not its canonical form")
    journal.remove()
    return PushResult(
        manifest=manifest,
        manifest_blob_id=stored.blob_id,
        manifest_digest=stored.sha256,
        stored_shards=len(missing),
        reused_shards=len(shards) - len(missing),
    )


def _locked(report: ProgressFn | None) -> ProgressFn:
    """A thread-safe progress callback (workers report concurrently)."""
    lock = threading.Lock()

    def advance(n: int) -> None:
        if report is not None and n:
            with lock:
                report(n)

    return advance


_Item = TypeVar("_Item")


def _run_all(job: Callable[[_Item], object], items: Iterable[_Item], workers: int) -> None:
    """Run `job` over `items` in parallel; the first failure cancels what has not started."""
    items = list(items)
    if not items:
        return
    with ThreadPoolExecutor(
        max(1, min(workers, len(items))), thread_name_prefix="okai-walrus"
    ) as pool:
        futures = [pool.submit(job, item) for item in items]
        try:
            for future in futures:
                future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise


# ---------------------------------------------------------------- pull


def cache_path(cache_dir: Path, digest: Digest) -> Path:
    """Where content with this SHA-256 lives in the cache."""
    return cache_dir / "walrus" / "sha256" / digest.hex


def _cached(cache_dir: Path, digest: Digest, size: int) -> Path | None:
    """A cache entry, re-verified: entries are written verified, but a crash of the machine
    (they are not fsynced) or a hand-edited file must not be trusted blindly."""
    path = cache_path(cache_dir, digest)
    try:
        if path.stat().st_size != size or Digest.of_file(path) != digest:
            path.unlink(missing_ok=True)
            return None
    except FileNotFoundError:
        return None
    return path


def fetch_manifest(
    client: WalrusClient, ref: ManifestRef, *, cache_dir: Path | None = None
) -> DatasetManifest:
    """The manifest a reference names, its bytes verified against `ref.sha256`."""
    digest = Digest.parse(ref.sha256)
    source = f"manifest {ref.manifest_blob_id}"
    if cache_dir is not None:
        try:
            raw = cache_path(cache_dir, digest).read_bytes()
        except FileNotFoundError:
            raw = b""
        if raw and Digest.of_bytes(raw) == digest:
            return DatasetManifest.from_json_bytes(raw, source)
    if cache_dir is None:
        raw = client.read_bytes(ref.manifest_blob_id, digest, max_bytes=MANIFEST_LIMIT)
    else:
        path = cache_path(cache_dir, digest)
        client.read_to_file(ref.manifest_blob_id, digest, path, max_bytes=MANIFEST_LIMIT)
        raw = path.read_bytes()
    return DatasetManifest.from_json_bytes(raw, source)


def load_manifest(
    client: WalrusClient, source: DatasetSource, *, cache_dir: Path | None = None
) -> tuple[DatasetManifest, Digest]:
    """The manifest of a REF and its digest (of the stored bytes, or of a local file's form)."""
    if isinstance(source, Path):
        manifest = DatasetManifest.load(source)
        return manifest, manifest.digest()
    return fetch_manifest(client, source, cache_dir=cache_dir), Digest.parse(source.sha256)


def fetch_shard(
    client: WalrusClient,
    shard: DatasetShard,
    cache_dir: Path,
    *,
    on_progress: ProgressFn | None = None,
) -> Path:
    """The cached, verified file holding a shard's bytes; fetched only if not cached.

    A cache hit is re-hashed before it is returned. Safe to call from several processes sharing `cache_dir`: each download goes
    to its own temporary file and is renamed into place only once verified.
    """
    digest = Digest.parse(shard.sha256)
    cached = _cached(cache_dir, digest, shard.size)
    if cached is not None:
        return cached
    path = cache_path(cache_dir, digest)
    client.read_to_file(
        shard.blob_id, digest, path, expected_size=shard.size, on_progress=on_progress
    )
    return path


def fetch_blob(client: WalrusClient, blob_id: str, sha256: Digest, cache_dir: Path) -> Path:
    """The cached, verified file holding a whole blob (training code, raw data).

    Cached by SHA-256 like shards, so ranks sharing `cache_dir` fetch it once.
    """
    digest = Digest.parse(sha256)
    path = cache_path(cache_dir, digest)
    with contextlib.suppress(FileNotFoundError):
        if Digest.of_file(path) == digest:  # re-verified, as `_cached` does for shards
            return path
    client.read_to_file(blob_id, digest, path)
    return path


def pull_dataset(
    client: WalrusClient,
    ref: DatasetSource,
    dest: Path,
    *,
    workers: int = DEFAULT_WORKERS,
    cache_dir: Path | None = None,
    on_progress: ProgressFn | None = None,
) -> DatasetManifest:
    """Fetch every shard (in parallel, verified, cached), reassemble the files under `dest`."""
    cache = cache_dir or paths.cache_dir()
    manifest, _ = load_manifest(client, ref, cache_dir=cache)
    report = _locked(on_progress)
    by_digest: dict[str, DatasetShard] = {}
    referenced: Counter[str] = Counter()
    for shard in manifest.shards:
        by_digest.setdefault(shard.sha256, shard)
        referenced[shard.sha256] += shard.size

    def fetch(shard: DatasetShard) -> None:
        repeats = referenced[shard.sha256]
        if _cached(cache, Digest.parse(shard.sha256), shard.size) is not None:
            report(repeats)
            return
        fetch_shard(client, shard, cache, on_progress=report)
        report(repeats - shard.size)

    _run_all(fetch, by_digest.values(), workers)
    root = Path(dest)
    root.mkdir(parents=True, exist_ok=True)
    _run_all(lambda file: _assemble(manifest, file, root, cache), manifest.files, workers)
    return manifest


def _assemble(manifest: DatasetManifest, file: DatasetFile, root: Path, cache: Path) -> None:
    """Write one file as the concatenation of its verified cached shards, atomically.

    The copy runs in the kernel (copy_file_range) and the file is not hashed
    again: every shard was verified on its way into the cache (or re-verified
    when found there), and the manifest, verified itself, fixes their order.
    """
    target = root / file.path
    if not target.parent.resolve().is_relative_to(root.resolve()):
        raise DocumentError("manifest", "files", f"{file.path!r} would be written outside {root}")
    if target.is_symlink():
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    pieces = sorted((s for s in manifest.shards if s.path == file.path), key=lambda s: s.offset)
    if len(pieces) <= 1:  # then the file's digest is its one shard's (or the empty one's)
        implied = pieces[0].sha256 if pieces else Digest.of_bytes(b"")
        if implied != file.sha256:
            raise IntegrityError(f"file {file.path} in the manifest", file.sha256, implied)
    temporary = partial_path(target)
    try:
        with open(temporary, "xb") as out:
            for shard in pieces:
                with open(cache_path(cache, Digest.parse(shard.sha256)), "rb") as stream:
                    _copy(stream, out, shard.size)
        if temporary.stat().st_size != file.size:
            raise IntegrityError(
                f"file {file.path}", f"{file.size} bytes", f"{temporary.stat().st_size} bytes"
            )
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def _copy(source: BinaryIO, dest: BinaryIO, size: int) -> None:
    """Append `size` bytes of `source` to `dest`, in the kernel where it can."""
    left = size
    try:
        while left:
            copied = os.copy_file_range(source.fileno(), dest.fileno(), left)
            if copied == 0:
                raise IntegrityError("a cached shard", f"{size} bytes", f"{size - left} bytes")
            left -= copied
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
        shutil.copyfileobj(source, dest, CHUNK)  # file systems without copy_file_range


__all__ = [
    "DEFAULT_SHARD_SIZE",
    "DatasetSource",
    "PushPlan",
    "PushResult",
    "cache_path",
    "fetch_manifest",
    "fetch_shard",
    "format_ref",
    "load_manifest",
    "parse_ref",
    "parse_size",
    "plan_push",
    "pull_dataset",
    "push_dataset",
]
