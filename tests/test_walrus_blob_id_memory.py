"""The memory of computed blob IDs: what one process computed, the next reads; what a
server answered, or anyone else wrote there in a form no blob ID has, is never believed."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from okai.digest import Digest
from okai.errors import IntegrityError
from okai.walrus import blob_ids
from okai.walrus.blob_id_memory import BlobIdMemory
from okai.walrus.blob_ids import SCHEME_WALRUS, BlobIdComputer
from test_walrus_blob_ids import VECTORS
from walrus_helpers import MiB, local_server, make_client

SOME_STRING, SOME_STRING_ID = VECTORS[2]
OTHER_ID = VECTORS[1][1]


def _no_helper(*_: object) -> None:
    raise AssertionError("the blob ID was computed again")


def test_a_second_process_reads_the_id_the_first_computed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "memory"
    with BlobIdComputer(workers=1, memory=BlobIdMemory(folder)) as first:
        assert first.of_bytes(SOME_STRING) == SOME_STRING_ID
    entry = folder / Digest.of_bytes(SOME_STRING).hex
    assert entry.read_text() == SOME_STRING_ID
    assert (folder.stat().st_mode & 0o777, entry.stat().st_mode & 0o777) == (0o700, 0o600)

    # A new computer that cannot start Node answers from the memory, for bytes in memory
    # and for the same bytes inside a file.
    monkeypatch.setattr(blob_ids._Helper, "__init__", _no_helper)
    path = tmp_path / "slice.bin"
    path.write_bytes(b"prefix:" + SOME_STRING + b":suffix")
    with BlobIdComputer(workers=1, memory=BlobIdMemory(folder)) as second:
        assert second.of_bytes(SOME_STRING) == SOME_STRING_ID
        assert second.of_file(path, 7, len(SOME_STRING)) == SOME_STRING_ID
        with pytest.raises(blob_ids.BlobIdError, match="ends before byte 99"):
            second.of_file(path, 7, 92)


@pytest.mark.parametrize(
    "written",
    [
        "<img src=x onerror=alert(1)>",
        SOME_STRING_ID + "\n",  # not the form the memory writes: computed again
        SOME_STRING_ID[:-1],
        "\u202e" + SOME_STRING_ID[1:],
    ],
)
def test_an_entry_in_no_blob_id_form_is_computed_again_and_replaced(
    tmp_path: Path, written: str
) -> None:
    sha256 = Digest.of_bytes(SOME_STRING)
    entry = tmp_path / sha256.hex
    entry.write_text(written, encoding="utf-8")
    assert (
        BlobIdMemory(tmp_path).recall_or_compute(sha256, lambda: SOME_STRING_ID) == SOME_STRING_ID
    )
    assert entry.read_text() == SOME_STRING_ID


def test_a_folder_others_may_write_is_not_believed(tmp_path: Path) -> None:
    """In a shared folder anyone could pair a digest with the ID of other bytes: the ID
    written there is ignored, computed, and nothing is written back."""
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o777)
    sha256 = Digest.of_bytes(SOME_STRING)
    (folder / sha256.hex).write_text(OTHER_ID)
    assert BlobIdMemory(folder).recall_or_compute(sha256, lambda: SOME_STRING_ID) == SOME_STRING_ID
    assert (folder / sha256.hex).read_text() == OTHER_ID
    assert not list(folder.glob(".lock-*"))


def test_a_memory_that_cannot_be_written_still_answers(tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    memory = BlobIdMemory(blocked / "memory")
    calls: list[int] = []

    def compute() -> str:
        calls.append(1)
        return SOME_STRING_ID

    sha256 = Digest.of_bytes(SOME_STRING)
    assert memory.recall_or_compute(sha256, compute) == SOME_STRING_ID
    assert memory.recall_or_compute(sha256, compute) == SOME_STRING_ID
    assert calls == [1, 1]  # nothing remembered, nothing refused


def test_two_asking_at_once_compute_once(tmp_path: Path) -> None:
    """The second asker waits on the digest's lock, then reads what the first wrote."""
    sha256 = Digest.of_bytes(SOME_STRING)
    started, release = threading.Event(), threading.Event()
    calls: list[str] = []
    answers: dict[str, str] = {}

    def slow() -> str:
        calls.append("first")
        started.set()
        assert release.wait(30)
        return SOME_STRING_ID

    def ask(name: str, compute: object) -> None:
        answers[name] = BlobIdMemory(tmp_path).recall_or_compute(sha256, compute)  # type: ignore[arg-type]

    first = threading.Thread(target=ask, args=("first", slow))
    first.start()
    assert started.wait(30)
    second = threading.Thread(target=ask, args=("second", lambda: calls.append("second") or ""))
    second.start()
    release.set()
    first.join(30)
    second.join(30)
    assert calls == ["first"]
    assert answers == {"first": SOME_STRING_ID, "second": SOME_STRING_ID}


def test_an_id_a_server_answered_is_never_remembered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server answering stand-in IDs is refused, and the memory holds only the ID this
    machine computed for the bytes: the next check still refuses the stand-in."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = BlobIdMemory.of_user(SCHEME_WALRUS).folder
    with local_server(tmp_path / "walrus") as server:
        for _ in range(2):
            with (
                make_client(server.url, compute_blob_ids_up_to=MiB) as client,
                pytest.raises(IntegrityError, match="blob ID"),
            ):
                client.store_bytes(SOME_STRING)
    assert folder == tmp_path / "cache" / "okai" / "blob-ids" / SCHEME_WALRUS
    entries = {path.name: path.read_text() for path in folder.iterdir() if path.is_file()}
    entries = {name: text for name, text in entries.items() if not name.startswith(".lock-")}
    assert entries == {Digest.of_bytes(SOME_STRING).hex: SOME_STRING_ID}
