"""The Walrus client against the local server over real HTTP: round trips and every failure."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from okai.digest import Digest
from okai.errors import IntegrityError
from okai.walrus.errors import (
    BlobNotFound,
    BlobTooLarge,
    PublisherAuthError,
    WalrusRequestError,
    WalrusShortBody,
    WalrusStatusError,
    WalrusUnavailable,
    WalrusUnreachable,
)
from okai.walrus.results import AlreadyCertified, NewlyCreated
from okai.walrus.server import WalrusServer, make_token
from okai.walrus.tokens import PublisherTokens
from walrus_helpers import MiB, dead_url, local_server, make_client


@pytest.fixture
def server(tmp_path: Path) -> Iterator[WalrusServer]:
    with local_server(tmp_path / "walrus") as running:
        yield running


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("size", [0, 1, 10 * MiB], ids=["empty", "one-byte", "10MiB"])
def test_file_round_trip(server: WalrusServer, tmp_path: Path, size: int) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(size))
    moved: list[int] = []
    with make_client(server.url) as client:
        stored = client.store_file(source, epochs=3, on_progress=moved.append)
        assert isinstance(stored.outcome, NewlyCreated)
        assert stored.size == size and stored.sha256 == Digest.of_file(source)
        assert stored.end_epoch == server.storage.epoch + 3
        assert sum(moved) == size
        dest = tmp_path / "out" / "copy.bin"
        read: list[int] = []
        digest = client.read_to_file(stored.blob_id, stored.sha256, dest, on_progress=read.append)
    assert digest == stored.sha256 and dest.read_bytes() == source.read_bytes()
    assert sum(read) == size
    assert leftovers(dest.parent) == ["copy.bin"]


def test_bytes_round_trip_and_restore_is_already_certified(server: WalrusServer) -> None:
    data = b"some other string"
    with make_client(server.url) as client:
        first = client.store_bytes(data)
        again = client.store_bytes(data)
        assert again.blob_id == first.blob_id
        assert isinstance(again.outcome, AlreadyCertified)
        assert again.outcome.object_id == first.outcome.blob_object.id  # type: ignore[union-attr]
        forced = client.store_bytes(data, force=True)
        assert isinstance(forced.outcome, NewlyCreated)
        longer = client.store_bytes(data, epochs=5)
        assert isinstance(longer.outcome, NewlyCreated)
        assert longer.outcome.resource_operation.kind == "reuseAndExtend"
        assert longer.end_epoch == server.storage.epoch + 5
        permanent = client.store_bytes(data, permanent=True, epochs=5)
        assert permanent.outcome.blob_object.deletable is False  # type: ignore[union-attr]
        certified = client.store_bytes(data, permanent=True)
        assert isinstance(certified.outcome, AlreadyCertified) and certified.outcome.event
        assert client.read_bytes(first.blob_id, Digest.of_bytes(data)) == data


def test_ranges_both_ways(server: WalrusServer) -> None:
    data = bytes(range(256)) * 40
    with make_client(server.url) as client:
        blob_id = client.store_bytes(data).blob_id
        assert client.read_range(blob_id, 100, 50) == data[100:150]
        assert client.read_range(blob_id, 100, 50, use_range_header=True) == data[100:150]
        piece = client.read_range(blob_id, 0, 10, expected=Digest.of_bytes(data[:10]))
        assert piece == data[:10]
        with pytest.raises(IntegrityError):
            client.read_range(blob_id, 0, 10, expected=Digest.of_bytes(b"other"))
        with pytest.raises(WalrusStatusError) as outside:
            client.read_range(blob_id, len(data) - 5, 10)
        assert outside.value.status == 400 and outside.value.reason == "INVALID_BYTE_RANGE"
        with pytest.raises(WalrusStatusError) as header:
            client.read_range(blob_id, len(data) - 5, 10, use_range_header=True)
        assert header.value.status == 416


def test_quilt_store_list_and_read(server: WalrusServer, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text('{"vocab": 32}')
    files = {"config.json": config, "weights-0.bin": os.urandom(5000)}
    with make_client(server.url) as client:
        quilt = client.store_quilt(files, tags={"config.json": {"kind": "config"}}, epochs=2)
        listed = {item.identifier: item for item in client.list_quilt_patches(quilt.quilt_id)}
        assert listed["config.json"].tags == {"kind": "config"}
        assert listed["weights-0.bin"].patch_id == quilt.patch_id("weights-0.bin")
        weights = files["weights-0.bin"]
        assert isinstance(weights, bytes)
        patch = quilt.patch_id("weights-0.bin")
        assert client.read_quilt_patch(patch, Digest.of_bytes(weights)) == weights
        expected = Digest.of_file(config)
        assert (
            client.read_quilt_file(quilt.quilt_id, "config.json", expected) == config.read_bytes()
        )
        dest = tmp_path / "w.bin"
        client.read_quilt_patch_to_file(patch, Digest.of_bytes(weights), dest)
        assert dest.read_bytes() == weights
        with pytest.raises(WalrusRequestError, match="expected SHA-256"):
            client.read_quilt_patch(patch, None)
        with pytest.raises(BlobNotFound) as missing:
            client.read_quilt_file(quilt.quilt_id, "absent.bin", expected)
        assert missing.value.reason == "QUILT_PATCH_NOT_FOUND"
        with pytest.raises(WalrusRequestError, match="identifier"):
            client.store_quilt({"_metadata": b"x"})


def test_quilt_store_reports_progress_once_despite_a_retry(
    server: WalrusServer, tmp_path: Path
) -> None:
    image = tmp_path / "image.qcow2"
    image.write_bytes(os.urandom(300_000))
    progress: list[int] = []
    with make_client(server.url) as client:
        server.faults.set(fail=1, fail_status=503, fail_scope="store")
        quilt = client.store_quilt(
            {"image.qcow2": image, "notes.txt": b"12345"}, on_progress=progress.append
        )
        assert (
            client.read_quilt_file(
                quilt.quilt_id, "image.qcow2", Digest.of_file(image), max_bytes=1 << 20
            )
            == image.read_bytes()
        )
    assert server.faults.counts()["PUT quilts"] == 2
    assert sum(progress) == 300_005  # the failed attempt is not counted twice


def test_quilt_file_check_hashes_and_names_the_aggregator(tmp_path: Path) -> None:
    data = os.urandom(5 * MiB)  # above READ_AHEAD_ABOVE
    with (
        local_server(tmp_path / "walrus") as bad,
        local_server(tmp_path / "walrus") as good,
        make_client(bad.url, good.url) as client,
    ):
        quilt = client.store_quilt({"okai.qcow2": data})
        expected = Digest.of_bytes(data)
        assert client.check_quilt_file(quilt.quilt_id, "okai.qcow2", expected) == bad.url
        bad.faults.set(corrupt=-1)
        progress: list[int] = []
        served = client.check_quilt_file(
            quilt.quilt_id,
            "okai.qcow2",
            expected,
            expected_size=len(data),
            on_progress=progress.append,
        )
        assert served == good.url and sum(progress) == len(data)
        good.faults.set(corrupt=-1)
        with pytest.raises(IntegrityError):
            client.check_quilt_file(quilt.quilt_id, "okai.qcow2", expected)
        with pytest.raises(BlobNotFound):
            client.check_quilt_file(quilt.quilt_id, "other.qcow2", expected)


def test_client_side_checks_send_nothing(server: WalrusServer, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"\0" * (MiB + 1))
    with make_client(server.url, max_body=MiB) as client:
        for epochs in (0, 54):
            with pytest.raises(WalrusRequestError, match="epochs"):
                client.store_bytes(b"x", epochs=epochs)
        with pytest.raises(WalrusRequestError, match="accepts at most"):
            client.store_file(big)
        with pytest.raises(WalrusRequestError, match="exclude"):
            client.store_bytes(b"x", share=True, send_object_to="0x" + "1" * 64)
        with pytest.raises(WalrusRequestError, match="blob ID"):
            client.read_bytes("not-a-blob-id", None)
        with pytest.raises(WalrusRequestError, match="not a file"):
            client.store_file(tmp_path)
    assert server.faults.counts() == {}


def test_server_body_limit_gives_413(tmp_path: Path) -> None:
    with (
        local_server(tmp_path / "walrus", max_body=1000) as server,
        make_client(server.url, max_body=0) as client,
        pytest.raises(BlobTooLarge) as refused,
    ):
        client.store_bytes(b"x" * 1001)
    assert refused.value.status == 413
    assert server.faults.counts() == {"PUT blobs": 1}


def test_corrupted_read_raises_and_leaves_nothing(server: WalrusServer, tmp_path: Path) -> None:
    data = os.urandom(100_000)
    with make_client(server.url) as client:
        stored = client.store_bytes(data)
        server.faults.set(corrupt=-1)
        dest = tmp_path / "out" / "data.bin"
        with pytest.raises(IntegrityError) as failed:
            client.read_to_file(stored.blob_id, stored.sha256, dest)
        assert failed.value.expected == stored.sha256
        assert not dest.parent.exists() or leftovers(dest.parent) == []
        with pytest.raises(IntegrityError):
            client.read_bytes(stored.blob_id, stored.sha256)
    # A corrupted answer is not retried on the same aggregator.
    assert server.faults.counts()["GET blob"] == 2


def test_corrupted_aggregator_is_skipped_for_a_good_one(tmp_path: Path) -> None:
    with (
        local_server(tmp_path / "walrus") as bad,
        local_server(tmp_path / "walrus") as good,
        make_client(bad.url, good.url) as client,
    ):
        stored = client.store_bytes(b"payload" * 1000)
        bad.faults.set(corrupt=-1)
        assert client.read_bytes(stored.blob_id, stored.sha256) == b"payload" * 1000


def test_truncated_then_complete(server: WalrusServer, tmp_path: Path) -> None:
    data = os.urandom(6 * MiB)  # above READ_AHEAD_ABOVE: the helper thread sees the cut
    with make_client(server.url) as client:
        stored = client.store_bytes(data)
        server.faults.set(truncate=1)
        progress: list[int] = []
        dest = tmp_path / "data.bin"
        client.read_to_file(stored.blob_id, stored.sha256, dest, on_progress=progress.append)
        assert dest.read_bytes() == data
        assert sum(progress) == len(data)  # the cut-off attempt is not counted twice
        server.faults.set(truncate=-1)
        client.unreachable_hint = "start the local stack with `okai dev up`"
        with pytest.raises(WalrusShortBody, match=r"3 rounds.*short body") as cut:
            client.read_to_file(stored.blob_id, stored.sha256, tmp_path / "again.bin")
        # It answered, so it is up: no "cannot reach", no advice to start the stack.
        assert "cannot reach" not in str(cut.value) and cut.value.hint is None
    assert not (tmp_path / "again.bin").exists()
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []


def test_slow_aggregator_times_out_and_fails_over(tmp_path: Path) -> None:
    with (
        local_server(tmp_path / "walrus") as slow,
        local_server(tmp_path / "walrus") as fast,
        make_client(slow.url, fast.url, timeout=0.5) as client,
    ):
        stored = client.store_bytes(b"data")
        slow.faults.set(delay=2.0)
        assert client.read_bytes(stored.blob_id, stored.sha256) == b"data"
        assert fast.faults.counts()["GET blob"] == 1


def test_slow_but_within_the_timeout(server: WalrusServer) -> None:
    with make_client(server.url, timeout=5) as client:
        stored = client.store_bytes(b"data")
        server.faults.set(delay=0.3)
        assert client.read_bytes(stored.blob_id, stored.sha256) == b"data"


def test_503_then_success(server: WalrusServer) -> None:
    with make_client(server.url) as client:
        stored = client.store_bytes(b"data")
        server.faults.set(fail=2, fail_status=503)
        assert client.read_bytes(stored.blob_id, stored.sha256) == b"data"
        assert server.faults.counts()["GET blob"] == 3
        server.faults.set(fail=-1)
        with pytest.raises(WalrusUnavailable) as exhausted:
            client.read_bytes(stored.blob_id, stored.sha256)
        assert exhausted.value.reason == "BLOB_UNAVAILABLE"
        assert server.faults.counts()["GET blob"] == 6


@pytest.mark.parametrize("status", [429, 500, 504])
def test_store_retries_transient_statuses(server: WalrusServer, status: int) -> None:
    server.faults.set(fail=1, fail_status=status, fail_scope="store")
    with make_client(server.url) as client:
        assert client.store_bytes(b"retried").size == 7
    assert server.faults.counts()["PUT blobs"] == 2


@pytest.mark.parametrize("status", [403, 451])
def test_permanent_read_failures_are_not_retried(server: WalrusServer, status: int) -> None:
    with make_client(server.url) as client:
        stored = client.store_bytes(b"data")
        server.faults.set(fail=-1, fail_status=status, fail_scope="read")
        with pytest.raises(WalrusStatusError) as refused:
            client.read_bytes(stored.blob_id, stored.sha256)
    assert refused.value.status == status
    assert server.faults.counts()["GET blob"] == 1


def test_not_found_is_final_unless_just_stored(server: WalrusServer) -> None:
    with make_client(server.url) as client:
        unknown = "A" * 43
        with pytest.raises(BlobNotFound):
            client.read_bytes(unknown, Digest.of_bytes(b""))
        assert server.faults.counts()["GET blob"] == 1
        stored = client.store_bytes(b"fresh")
        # A CDN in front of an aggregator may serve a cached 404 right after the store.
        server.faults.set(fail=2, fail_status=404, fail_scope="read")
        assert client.read_bytes(stored.blob_id, stored.sha256) == b"fresh"
        assert server.faults.counts()["GET blob"] == 4


def test_one_of_two_aggregators_dead(server: WalrusServer, tmp_path: Path) -> None:
    with make_client(dead_url(), server.url, publisher=server.url) as client:
        stored = client.store_bytes(b"x" * 5000)
        dest = tmp_path / "x.bin"
        client.read_to_file(stored.blob_id, stored.sha256, dest)
        assert dest.read_bytes() == b"x" * 5000
        assert client.blob_url(stored.blob_id).endswith(f"/v1/blobs/{stored.blob_id}")


def test_aggregator_stopping_between_reads(tmp_path: Path) -> None:
    with (
        local_server(tmp_path / "walrus") as first,
        local_server(tmp_path / "walrus") as second,
        make_client(first.url, second.url) as client,
    ):
        stored = client.store_bytes(b"kept")
        assert client.read_bytes(stored.blob_id, stored.sha256) == b"kept"
        first.stop()  # its pooled keep-alive connection is cut too
        assert client.read_bytes(stored.blob_id, stored.sha256) == b"kept"
        second.stop()
        with pytest.raises(WalrusUnreachable):
            client.read_bytes(stored.blob_id, stored.sha256)


def test_expired_blob_is_not_found(server: WalrusServer) -> None:
    with make_client(server.url) as client:
        stored = client.store_bytes(b"short-lived", epochs=2)
        server.storage.set_epoch(server.storage.epoch + 2)
        with pytest.raises(BlobNotFound):
            client.read_bytes(stored.blob_id, stored.sha256)


def test_publisher_jwt(tmp_path: Path) -> None:
    secret = "test-secret"
    exp = int(time.time()) + 600
    token = make_token(secret, {"exp": exp, "jti": "one"})
    with local_server(tmp_path / "walrus", jwt_secret=secret) as server:
        with make_client(server.url, tokens=PublisherTokens([token])) as client:
            assert client.store_bytes(b"authorised").size == 10
            assert "Bearer" not in repr(client) and token not in repr(client)
        with (
            make_client(server.url, tokens=PublisherTokens([token])) as client,
            pytest.raises(PublisherAuthError) as reused,
        ):
            client.store_bytes(b"again")
        assert reused.value.reason == "TOKEN_ALREADY_USED"
        assert "each publisher token is single-use" in str(reused.value)
        assert token not in str(reused.value)
        expired = make_token(secret, {"exp": int(time.time()) - 5, "jti": "two"})
        with (
            make_client(server.url, tokens=PublisherTokens([expired])) as client,
            pytest.raises(PublisherAuthError),
        ):
            client.store_bytes(b"late")
        forged = make_token("other-secret", {"exp": exp, "jti": "three"})
        with (
            make_client(server.url, tokens=PublisherTokens([forged])) as client,
            pytest.raises(PublisherAuthError) as bad,
        ):
            client.store_bytes(b"forged")
        assert bad.value.status == 401
        with make_client(server.url) as client, pytest.raises(WalrusStatusError) as missing:
            client.store_bytes(b"anonymous")
        assert missing.value.status == 400
        # Reads need no token; refused tokens are not retried.
        assert server.faults.counts()["PUT blobs"] == 5


def test_unverifiable_read_without_digest_is_refused(server: WalrusServer) -> None:
    with make_client(server.url) as client:
        stored = client.store_bytes(b"data")
        with pytest.raises(WalrusRequestError, match="limit for recomputing blob IDs"):
            client.read_bytes(stored.blob_id, None)


def test_stand_in_ids_fail_the_blob_id_check(server: WalrusServer, tmp_path: Path) -> None:
    """Against stand-in IDs a client that checks blob IDs refuses the answer."""
    with make_client(server.url, compute_blob_ids_up_to=MiB) as client:
        with pytest.raises(IntegrityError, match="blob ID") as on_store:
            client.store_bytes(b"checked")
        assert "fake-blob-ids" in str(on_store.value)
    with make_client(server.url) as unchecked:
        blob_id = unchecked.store_bytes(b"checked").blob_id
    with make_client(server.url, compute_blob_ids_up_to=MiB) as client:
        dest = tmp_path / "checked.bin"
        with pytest.raises(IntegrityError, match="blob ID"):
            client.read_to_file(blob_id, None, dest)
    assert leftovers(tmp_path) == ["walrus"]


def test_quilt_with_a_large_file_streams_through(server: WalrusServer, tmp_path: Path) -> None:
    """A multi-megabyte file, with bytes that look like multipart delimiters inside."""
    big = tmp_path / "image.qcow2"
    big.write_bytes(os.urandom(MiB) + b"\r\n--not-a-boundary\r\n" * 1000 + os.urandom(2 * MiB))
    with make_client(server.url) as client:
        quilt = client.store_quilt({"image.qcow2": big, "notes.txt": b"\r\n--"})
        dest = tmp_path / "copy.qcow2"
        patch = quilt.patch_id("image.qcow2")
        client.read_quilt_patch_to_file(patch, Digest.of_file(big), dest)
        notes = client.read_quilt_file(quilt.quilt_id, "notes.txt", Digest.of_bytes(b"\r\n--"))
    assert dest.read_bytes() == big.read_bytes() and notes == b"\r\n--"
    assert list((server.storage.root / "tmp").iterdir()) == []
