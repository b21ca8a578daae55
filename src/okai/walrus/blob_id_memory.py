"""Blob IDs computed on this machine, kept for the next process that needs them.

A Walrus blob ID depends on the bytes alone, and computing one costs about two seconds
of CPU whatever the size (blob_ids.py): without a memory, a dataset pushed, read back
by each trainer and re-read by a verifier pays that again in every process, and a
client checking what it stores pays it beside the local server computing the same
blob. This folder maps the SHA-256 of some bytes to the ID computed for them.

Only IDs computed on this machine are written, never one a server answered; an entry
is one file, written whole, and one that is not a well-formed ID is computed again.
Two processes asking at once (a client checking a store while the local server
computes the same blob) hold a lock for the digest, so the second reads what the
first wrote. The folder must be the user's own (made with mode 0700, under
`$XDG_CACHE_HOME` or `~/.cache`; one that another account owns or others may write is
not used): whoever can write there can already change okai itself.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from okai.atomic import write_atomically
from okai.digest import Digest
from okai.manifest import BLOB_ID_PATTERN

_BLOB_ID = re.compile(BLOB_ID_PATTERN)


class BlobIdMemory:
    """Blob IDs by SHA-256, kept in a folder shared by this user's processes.

    A folder that cannot be made or written, or that others may write, leaves every ID
    computed as if there were no memory: it saves work, and is never needed to get an
    answer."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @classmethod
    def of_user(cls, scheme: str) -> BlobIdMemory:
        """This user's memory of the blob IDs of one encoding scheme."""
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        return cls(Path(base) / "okai" / "blob-ids" / scheme)

    def recall_or_compute(self, sha256: Digest, compute: Callable[[], str]) -> str:
        """The remembered ID of the bytes with this SHA-256, or `compute()`'s, remembered."""
        entry = self.folder / sha256.hex
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not _private(self.folder):
                return compute()
            if (known := _read(entry)) is not None:
                return known
            # Digests share 256 lock files (by their first byte), so the folder stays small.
            lock = os.open(self.folder / f".lock-{sha256.hex[:2]}", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return compute()
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be computing it now
            if (known := _read(entry)) is not None:
                return known
            blob_id = compute()
            if _BLOB_ID.fullmatch(blob_id):
                with suppress(OSError):  # not remembered: the next process computes it again
                    write_atomically(entry, blob_id, mode=0o600)
            return blob_id
        finally:
            os.close(lock)  # closing releases the lock


def _private(folder: Path) -> bool:
    """Whether only this user can write the folder: one that another account owns, or that
    others may write (a shared `$XDG_CACHE_HOME`), could hold any ID for any digest."""
    status = folder.stat()
    return status.st_uid == os.getuid() and not status.st_mode & 0o022


def _read(entry: Path) -> str | None:
    try:
        text = entry.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return None
    return text if _BLOB_ID.fullmatch(text) else None
