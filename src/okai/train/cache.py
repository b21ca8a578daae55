"""The node's shard cache: content-addressed, verified, optionally bounded, shared by its ranks.

Entries are `<root>/sha256/<hex>`, written whole (okai.atomic) once their bytes
hash to what a manifest pins, and hashed again on every hit. With a bound
(`OKAI_SHARD_CACHE_BYTES`), room for a new entry is made by deleting the least
recently used entries that no rank holds.

A rank holds ("pins") every entry it has been handed until it lets go of it: a
shared `flock` on `<root>/pins/<hex>`, taken before the entry is looked up.
Eviction takes an exclusive `flock` on the same file without waiting, so a held
entry is never deleted, and a killed rank's locks vanish with it. Pin files are
never deleted (a deleted lock file lets two processes lock different inodes).
All bookkeeping (the size of the cache, eviction, writing an entry) happens under
one exclusive lock, `<root>/.lock`, so the bound holds on disk at every moment.
"""

from __future__ import annotations

import fcntl
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from okai.atomic import write_atomically
from okai.digest import Digest
from okai.errors import IntegrityError, UsageError

BOUND_ENV = "OKAI_SHARD_CACHE_BYTES"
"""The bound, in bytes (suffixes K, M, G, T: powers of 1024); unset or empty: no bound."""

ROOM_WAIT_SECONDS = 300.0
"""How long a rank waits for other ranks to let go of entries before giving up."""

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_bound(text: str | None) -> int | None:
    """`OKAI_SHARD_CACHE_BYTES` as a number of bytes; None for no bound."""
    if text is None or not text.strip():
        return None
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*", text, flags=re.IGNORECASE)
    if match is None or int(match[1]) == 0:
        raise UsageError(
            f"{BOUND_ENV}={text!r} is not a positive size in bytes (e.g. 2147483648 or 2G)"
        )
    return int(match[1]) * _UNITS[match[2].upper()]


def bound_from_env() -> int | None:
    return parse_bound(os.environ.get(BOUND_ENV))


class CacheFull(UsageError):
    """The bound cannot hold what the node's ranks need at once."""


class ShardCache:
    """Verified files by SHA-256 under `root`, at most `bound` bytes of them (None: no bound).

    Thread-safe, and safe for several processes sharing `root`.
    """

    def __init__(
        self, root: Path, bound: int | None = None, *, wait_seconds: float = ROOM_WAIT_SECONDS
    ) -> None:
        self.root = root
        self.bound = bound
        self.wait_seconds = wait_seconds
        self._entries = root / "sha256"
        self._pins_dir = root / "pins"
        self._entries.mkdir(parents=True, exist_ok=True)
        self._pins_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._pins: dict[str, tuple[int, int]] = {}
        """hex -> (descriptor holding the shared lock, how many holds of this process)."""

    # ------------------------------------------------------------ holding

    def get(
        self, digest: Digest, size: int | None, download: Callable[[], bytes], what: str
    ) -> Path:
        """The entry for `digest`, held until `release`: a verified hit, else `download()`ed.

        `download` returns the bytes (already checked by the client); they are
        checked again here against `digest` and `size` before they are stored.
        """
        digest = Digest.parse(digest)
        key = digest.hex
        path = self._entries / key
        self._hold(key)
        try:
            if _matches(path, digest, size):
                _touch(path)
                return path
            data = download()
            actual = Digest.of_bytes(data)
            if actual != digest:
                raise IntegrityError(what, digest, actual)
            if size is not None and len(data) != size:
                raise IntegrityError(what, f"{size} bytes", f"{len(data)} bytes")
            self._store(path, digest, data, what)
            return path
        except BaseException:
            self.release(path)
            raise

    def release(self, path: Path) -> None:
        """Let go of one hold on the entry at `path`; it may be evicted once no rank holds it."""
        key = path.name
        with self._lock:
            fd, count = self._pins[key]
            if count > 1:
                self._pins[key] = (fd, count - 1)
                return
            del self._pins[key]
        os.close(fd)  # drops the shared lock

    def held(self) -> int:
        """Entries this process holds (for tests and diagnostics)."""
        with self._lock:
            return len(self._pins)

    def _hold(self, key: str) -> None:
        with self._lock:
            if key in self._pins:
                fd, count = self._pins[key]
                self._pins[key] = (fd, count + 1)
                return
            fd = os.open(self._pins_dir / key, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                # Waits only while an evictor looks at this entry (under its bookkeeping).
                fcntl.flock(fd, fcntl.LOCK_SH)
            except BaseException:
                os.close(fd)
                raise
            self._pins[key] = (fd, 1)

    # ------------------------------------------------------------ storing

    def _store(self, path: Path, digest: Digest, data: bytes, what: str) -> None:
        if self.bound is not None and len(data) > self.bound:
            raise CacheFull(
                f"{what} is {len(data)} bytes, more than the shard cache's bound of "
                f"{self.bound} bytes ({BOUND_ENV})"
            )
        deadline = time.monotonic() + self.wait_seconds
        while True:
            with self._bookkeeping():
                if _matches(path, digest, len(data)):  # another rank stored it meanwhile
                    _touch(path)
                    return
                if self._make_room(len(data), keep=path.name):
                    write_atomically(path, data)
                    _touch(path)
                    return
                used, held = self._usage()
            if time.monotonic() >= deadline:
                raise CacheFull(
                    f"the shard cache's bound of {self.bound} bytes ({BOUND_ENV}) cannot take "
                    f"{what} ({len(data)} bytes): {held} of its {used} bytes are held by "
                    f"this node's ranks; raise the bound"
                )
            time.sleep(0.05)

    @contextmanager
    def _bookkeeping(self) -> Iterator[None]:
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _entries_by_age(self) -> list[tuple[int, int, Path]]:
        out = []
        for path in self._entries.iterdir():
            if path.name.startswith("."):
                # A temporary file left by a writer that died: writers write under the
                # bookkeeping lock, which we hold, so none is being written now.
                path.unlink(missing_ok=True)
                continue
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            out.append((stat.st_mtime_ns, stat.st_size, path))
        return sorted(out, key=lambda entry: (entry[0], entry[2].name))

    def _make_room(self, size: int, *, keep: str) -> bool:
        """Evict unheld entries, least recently used first, until `size` more bytes fit."""
        if self.bound is None:
            return True
        entries = self._entries_by_age()
        used = sum(entry[1] for entry in entries)
        for _, entry_size, path in entries:
            if used + size <= self.bound:
                break
            if path.name != keep and self._evict(path):
                used -= entry_size
        return used + size <= self.bound

    def _evict(self, path: Path) -> bool:
        fd = os.open(self._pins_dir / path.name, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False  # held by a rank
        try:
            path.unlink(missing_ok=True)
            return True
        finally:
            os.close(fd)

    def _usage(self) -> tuple[int, int]:
        """Bytes in the cache, and of those, bytes some rank holds."""
        used = held = 0
        for _, size, path in self._entries_by_age():
            used += size
            fd = os.open(self._pins_dir / path.name, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held += size
            finally:
                os.close(fd)
        return used, held


def _touch(path: Path) -> None:
    """Mark an entry most recently used: its modification time, to the nanosecond (the
    file system's own clock can be coarser than the gap between two uses)."""
    now = time.time_ns()
    os.utime(path, ns=(now, now))


def _matches(path: Path, digest: Digest | None, size: int | None) -> bool:
    """Whether `path` holds bytes of `size` hashing to `digest` (re-verified on every hit)."""
    try:
        if size is not None and path.stat().st_size != size:
            return False
        return digest is None or Digest.of_file(path) == digest
    except FileNotFoundError:
        return False
