"""Writing a file whole: readers and crashes see the old bytes or the new, never half.

Every write goes to a temporary name unique to its writer (mkstemp/mkdtemp, in the
same folder so the final rename stays on one file system), is synced, and is then
renamed into place: two writers racing on one path each rename their own
complete file, the last one wins, and neither leaves a temporary name behind.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def write_atomically(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    """Write `data` (text as UTF-8) to `path`: a synced temporary file, then a rename."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_path(path, mode) as tmp, tmp.open("wb") as handle:
        handle.write(raw)


@contextmanager
def atomic_path(path: Path, mode: int = 0o644) -> Iterator[Path]:
    """A fresh temporary path beside `path` for a writer that takes a path (safetensors,
    a receipt); when the block ends it is synced and renamed onto `path`, or removed if
    the block raised."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _sync(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """A fresh temporary folder beside `path` to fill; when the block ends its files are
    synced and it replaces `path` (a folder there is removed first), or it is removed if
    the block raised. Its name starts with `.<name>.`, so leftovers of a killed writer are
    easy to find."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        for file in tmp.rglob("*"):
            if file.is_file() and not file.is_symlink():
                _sync(file)
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_symlink(link: Path, target: Path) -> None:
    """Point `link` at `target`, replacing what was there in one rename."""
    while True:
        tmp = link.with_name(f".{link.name}.{secrets.token_hex(6)}.tmp")
        try:
            tmp.symlink_to(target)
            break
        except FileExistsError:
            continue  # another writer's name: draw again
    try:
        os.replace(tmp, link)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
