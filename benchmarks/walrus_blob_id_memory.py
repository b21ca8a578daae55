"""Storing a small dataset's shards with real blob IDs: without the memory of computed IDs,
with it empty, and with it holding them (the user's next process, or the same data again).

The local Walrus server computes the real ID of each blob it stores, and the client
recomputes it to check the server's answer (about two seconds of CPU each, whatever the
size). Without a memory both compute every blob; with one, the second asker waits for
the first's result; a warm memory computes nothing. Stores one after another leave the
wall time of an empty memory alike (the two computations ran side by side on two
cores); the CPU of the Node helpers shows the work saved, which is time wherever the
cores are busy (a push stores several shards at once, other jobs run). The server is
in-process with its own computer, the client new per row: nothing is shared between
the rows but the memory folder. Target: Node CPU of an empty memory at most 0.6x the
baseline's; a warm memory under 0.1x in both.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from pathlib import Path

from okai.walrus.blob_id_memory import BlobIdMemory
from okai.walrus.blob_ids import SCHEME_WALRUS, BlobIdComputer
from okai.walrus.client import WalrusClient
from okai.walrus.server import WalrusServer
from walrus_common import MiB, workdir

SHARDS = 6
SHARD_SIZE = 256 << 10


def helpers_cpu() -> float:
    """CPU seconds of this process's exited children (the Node helpers, once closed)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def store_all(folder: Path, shards: list[Path], memory: BlobIdMemory | None) -> tuple[float, float]:
    """Wall seconds to store every shard, the client checking each blob ID the server
    answers, and the CPU seconds of the Node helpers that computed the IDs."""
    cpu_before = helpers_cpu()
    with (
        BlobIdComputer(memory=memory) as for_server,
        BlobIdComputer(memory=memory) as for_client,
        WalrusServer(folder / "server", blob_ids=for_server).start() as server,
        WalrusClient(
            [server.url], server.url, compute_blob_ids_up_to=MiB, blob_ids=for_client
        ) as client,
    ):
        start = time.perf_counter()
        for shard in shards:
            client.store_file(shard)
        elapsed = time.perf_counter() - start
    return elapsed, helpers_cpu() - cpu_before


def main() -> None:
    with workdir("blob-id-memory") as folder:
        memory = BlobIdMemory(Path(tempfile.mkdtemp(dir=folder)) / SCHEME_WALRUS)
        shards = [folder / f"shard-{index}.bin" for index in range(SHARDS)]
        for shard in shards:
            shard.write_bytes(os.urandom(SHARD_SIZE))
        rows = {
            "no memory": store_all(folder / "none", shards, None),
            "empty memory": store_all(folder / "empty", shards, memory),
            "warm memory": store_all(folder / "warm", shards, memory),
        }
    wall, cpu = rows["no memory"]
    print(f"store {SHARDS} shards of {SHARD_SIZE >> 10} KiB, blob IDs checked")
    print(f"  {'':<13} {'wall':>15}  {'Node CPU':>15}")
    for name, (seconds, used) in rows.items():
        print(
            f"  {name:<13} {seconds:7.3f} s {seconds / wall:5.2f}x  {used:7.3f} s {used / cpu:5.2f}x"
        )
    print("  target: Node CPU of an empty memory <= 0.6x; a warm memory < 0.1x in both")


if __name__ == "__main__":
    main()
