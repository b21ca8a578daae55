"""okai.atomic: writers racing on one path never collide or leave a temporary file."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from okai.atomic import atomic_directory, atomic_path, replace_symlink, write_atomically


def test_racing_writers_each_land_whole_and_leave_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    payloads = [bytes([n]) * 100_000 for n in range(8)]
    start = threading.Barrier(len(payloads))

    def writer(data: bytes) -> None:
        start.wait()
        for _ in range(20):
            write_atomically(target, data)

    threads = [threading.Thread(target=writer, args=(data,)) for data in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert target.read_bytes() in payloads
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_text_is_utf8_and_the_mode_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "a" / "note.txt"
    write_atomically(target, "é\n", mode=0o600)
    assert target.read_bytes() == "é\n".encode()
    assert target.stat().st_mode & 0o777 == 0o600


def test_a_failed_writer_leaves_the_old_bytes_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "model.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.bin"]


def test_a_directory_replaces_the_old_one_whole_or_not_at_all(tmp_path: Path) -> None:
    final = tmp_path / "step-1"
    with atomic_directory(final) as folder:
        (folder / "state.pt").write_bytes(b"one")
    with pytest.raises(RuntimeError), atomic_directory(final) as folder:
        (folder / "state.pt").write_bytes(b"two")
        raise RuntimeError
    assert (final / "state.pt").read_bytes() == b"one"
    with atomic_directory(final) as folder:
        (folder / "other").write_bytes(b"three")
    assert [p.name for p in final.iterdir()] == ["other"]
    assert [p.name for p in tmp_path.iterdir()] == ["step-1"]


def test_a_symlink_is_replaced_in_one_rename(tmp_path: Path) -> None:
    link = tmp_path / "result"
    replace_symlink(link, tmp_path / "a")
    replace_symlink(link, tmp_path / "b")
    assert link.readlink() == tmp_path / "b"
    assert [p.name for p in tmp_path.iterdir()] == ["result"]
