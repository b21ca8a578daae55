"""Real Walrus blob IDs from the Node helper equal the reference vectors (reference section 9)."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from okai.digest import Digest
from okai.nodejs import node_binary, node_package
from okai.walrus.blob_ids import (
    WASM_PACKAGE,
    BlobIdComputer,
    BlobIdError,
    fake_blob_id,
    helper_script,
)
from walrus_helpers import local_server, make_client

VECTORS = [
    (b"", "3GPQL3HZNnFhN_F7l5Aa-X1VOtAKwIsg9zuWk8R81v4"),
    (b"some other string", "M4hsZGQ1oCktdzegB6HnI6Mi28S2nqOPHxK-W7_4BUk"),
    (b"some string", "9k95lgtG9iPU8yk_wYz8m8CUY1snveemF8ypfpBLUUg"),
    (bytes(range(256)), "sji4t0yWFfIq1h2GqpfrWcCZqtf0MneRIxpQmBL42k0"),
    (
        bytes((7 * i + 13) % 256 for i in range(256)) * (1 << 12),  # 1 MiB; period 256
        "AOGLGy-xkgThw5z9o3as-P9c5YezAywHJRUEQCUu9AY",
    ),
]


def test_reference_vectors(tmp_path: Path) -> None:
    with BlobIdComputer(workers=2) as computer, ThreadPoolExecutor(len(VECTORS)) as pool:
        computed = list(pool.map(lambda vector: computer.of_bytes(vector[0]), VECTORS))
        assert computed == [blob_id for _, blob_id in VECTORS]
        # From a file slice: the 11 bytes "some string" inside a larger file.
        path = tmp_path / "slice.bin"
        path.write_bytes(b"prefix:some string:suffix")
        assert computer.of_file(path, 7, 11) == VECTORS[2][1]


def test_helper_command_line(tmp_path: Path) -> None:
    path = tmp_path / "v.txt"
    path.write_bytes(b"some other string")
    argv = [node_binary(), str(helper_script()), str(node_package(WASM_PACKAGE)), str(path)]
    output = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True).stdout
    assert output.split() == [VECTORS[1][1], str(path)]


def test_stand_in_ids_are_never_real_ones() -> None:
    digest = Digest.of_bytes(b"some other string")
    assert fake_blob_id(digest) == fake_blob_id(digest)
    assert fake_blob_id(digest) != VECTORS[1][1]
    assert len(fake_blob_id(digest)) == 43


def test_server_and_client_agree_on_real_ids(tmp_path: Path) -> None:
    data, blob_id = VECTORS[1]
    with (
        local_server(tmp_path / "walrus", fake_blob_ids=False) as server,
        make_client(server.url, compute_blob_ids_up_to=1 << 20, timeout=180) as client,
    ):
        stored = client.store_bytes(data)
        assert stored.blob_id == blob_id and stored.blob_id_verified
        # No trusted digest: the blob ID recomputed from the bytes is the check.
        assert client.read_bytes(blob_id, None) == data
        dest = tmp_path / "copy.txt"
        assert client.read_to_file(blob_id, None, dest) == Digest.of_bytes(data)
        assert "x-okai-blob-id-scheme" not in httpx.get(f"{server.url}/status").headers
    assert dest.read_bytes() == data


def test_unknown_helper_failure_is_reported(tmp_path: Path) -> None:
    with BlobIdComputer(workers=1) as computer, pytest.raises(BlobIdError, match="ends before"):
        path = tmp_path / "short.bin"
        path.write_bytes(b"abc")
        computer.of_file(path, 0, 10)
