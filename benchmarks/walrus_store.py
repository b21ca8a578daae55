"""Store one 256 MiB blob: okai's throughput against `curl -T`, same server.

Each run changes the first bytes of the file so that every store is new
content (a re-store would be answered `alreadyCertified`). okai hashes the
bytes as it sends them; blobs over 64 MiB skip the blob-ID recomputation by
default, as here. Target: at least 0.8x curl.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from okai.walrus.client import WalrusClient
from walrus_common import RUNS, MiB, best_of, curl, random_file, report, server_process, workdir

SIZE = 256 * MiB
_counter = itertools.count()


def fresh(path: Path) -> Path:
    """Make the file new content: rewrite its first 16 bytes."""
    with open(path, "r+b") as stream:
        stream.write(next(_counter).to_bytes(8, "little") + os.urandom(8))
    return path


def main() -> None:
    with workdir("store") as folder, server_process(folder) as url:
        source = random_file(folder / "blob.bin", SIZE)
        with WalrusClient([url], url, max_body=0) as client:
            seconds = best_of(
                RUNS,
                curl=lambda: curl("-T", str(fresh(source)), f"{url}/v1/blobs?epochs=1"),
                okai=lambda: client.store_file(fresh(source)),
            )
        report("store one blob", SIZE, seconds, "curl", ">= 0.8x curl")


if __name__ == "__main__":
    main()
