"""Verified, atomic writes: bytes reach their final path only once their SHA-256 matches.

Bytes are written to a uniquely named temporary file in the destination's
own folder, hashed as they arrive, and renamed over the destination only
after the digest matched (forced to disk first when asked). A failure at any point removes the
temporary file, so nothing unverified is ever left where a reader looks. The
rename is atomic, so several processes filling the same path concurrently
(ranks sharing a cache) each see either nothing or a complete, verified file.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from types import TracebackType

from okai.digest import Digest
from okai.errors import IntegrityError, OperationalError

PARTIAL_SUFFIX = ".okai-partial"


def partial_path(dest: Path) -> Path:
    """A fresh temporary name next to `dest` (same file system, so rename is atomic)."""
    return dest.with_name(f".{dest.name}.{os.getpid()}-{secrets.token_hex(6)}{PARTIAL_SUFFIX}")


class VerifiedFile:
    """A writer that commits to `dest` only if the bytes hash to `expected`.

    Use as a context manager; call `write` for each chunk, then `commit`.
    Leaving the block without `commit` (or with an exception) discards the
    bytes. `expected=None` defers the check: `commit(expected)` then decides.
    """

    def __init__(
        self, dest: Path, expected: Digest | None, what: str, *, durable: bool = False
    ) -> None:
        self.dest = dest
        self.durable = durable
        self.expected = expected
        self.what = what
        self.size = 0
        self._hasher = hashlib.sha256()
        self.temporary = partial_path(dest)
        self._committed = False
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.temporary, "xb")  # noqa: SIM115 - closed in commit/discard
        except OSError as exc:
            raise OperationalError(f"cannot write next to {dest}: {exc.strerror or exc}") from exc

    def write(self, chunk: bytes | memoryview) -> None:
        self._hasher.update(chunk)
        self._file.write(chunk)
        self.size += len(chunk)

    def digest(self) -> Digest:
        return Digest("sha256:" + self._hasher.hexdigest())

    def flush(self) -> None:
        """Push written bytes to the file, so another process can read the temporary file."""
        self._file.flush()

    def restart(self) -> None:
        """Forget what was written so far (a retried download starts over)."""
        self._file.seek(0)
        self._file.truncate()
        self._hasher = hashlib.sha256()
        self.size = 0

    def commit(self, expected: Digest | None = None) -> Digest:
        """Check the digest, then rename into place; returns the digest.

        With `durable`, the bytes are also forced to disk first (fsync), so the
        renamed file survives a power loss; without it they survive any process
        crash, which is what caches need (they re-verify what they find).
        """
        expected = expected or self.expected
        actual = self.digest()
        if expected is None:
            raise ValueError("VerifiedFile.commit needs an expected digest")
        if actual != expected:
            self.discard()
            raise IntegrityError(self.what, expected, actual)
        self._file.flush()
        if self.durable:
            os.fsync(self._file.fileno())
        self._file.close()
        try:
            os.replace(self.temporary, self.dest)
        except OSError as exc:
            self.discard()
            raise OperationalError(f"cannot write {self.dest}: {exc.strerror or exc}") from exc
        self._committed = True
        return actual

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        self.temporary.unlink(missing_ok=True)

    def __enter__(self) -> VerifiedFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self._committed:
            self.discard()
