"""The nodes' data path: `WalrusShardSource` reading through the Walrus client, verified.

The cluster tests train from manifests and shards; this covers the whole-blob
path (training code, raw data blobs) that `fetch_blob` serves.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from okai.digest import Digest
from okai.errors import IntegrityError
from okai.train import WalrusShardSource
from okai.walrus import RetryPolicy, WalrusError
from okai.walrus.client import WalrusClient
from okai.walrus.server import WalrusServer


def test_a_blob_is_fetched_verified_and_cached(tmp_path: Path) -> None:
    data = b"def train(ctx):\n    return None\n" * 50
    digest = Digest.of_bytes(data)
    with (
        WalrusServer(tmp_path / "store", fake_blob_ids=True).start() as server,
        WalrusClient([server.url], server.url, compute_blob_ids_up_to=0) as client,
    ):
        blob_id = client.store_bytes(data).blob_id
        source = WalrusShardSource(client, tmp_path / "cache")
        path = source.blob(blob_id, digest)
        assert path.read_bytes() == data
        with pytest.raises(IntegrityError):
            source.blob(blob_id, Digest.of_bytes(b"something else"))

        # A cached copy is used only while it still hashes right.
        path.write_bytes(b"tampered")
        assert source.blob(blob_id, digest).read_bytes() == data
        # Then no request is made: with every read failing, the blob still comes.
        server.faults.set(fail=1000, fail_status=503, fail_scope="read")
        assert source.blob(blob_id, digest) == path
        impatient = RetryPolicy(rounds=1, first_wait=0.01, max_wait=0.01)
        with (
            WalrusClient([server.url], None, retry=impatient) as other,
            pytest.raises(WalrusError),
        ):
            other.read_bytes(blob_id, digest)
