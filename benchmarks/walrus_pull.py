"""Pull a 64-shard dataset of 4 MiB shards: okai against a sequential curl loop, same server.

okai fetches shards in parallel into a cold content-addressed cache (each one
hashed and verified), then reassembles and re-verifies the files; the
baseline runs curl once per shard, one after the other, and verifies
nothing. Measured twice: on loopback as is, and with 50 ms of latency per
request added by the server (a real aggregator takes at least that to
rebuild a blob). Target: at least 2x the curl loop.
"""

from __future__ import annotations

import itertools
import shutil

from okai.walrus.client import WalrusClient
from okai.walrus.dataset import parse_ref, pull_dataset, push_dataset
from walrus_common import (
    RUNS,
    MiB,
    best_of,
    curl,
    random_file,
    report,
    server_process,
    set_faults,
    workdir,
)

SHARD = 4 * MiB
FILES = 8
SHARDS_PER_FILE = 8


def main() -> None:
    with workdir("pull") as folder, server_process(folder) as url:
        data = folder / "data"
        data.mkdir()
        for index in range(FILES):
            random_file(data / f"part-{index}.bin", SHARD * SHARDS_PER_FILE)
        with WalrusClient([url], url, max_body=0, compute_blob_ids_up_to=0) as client:
            pushed = push_dataset(
                client, [data], name="bench", shard_size=SHARD, journal_dir=folder / "journals"
            )
            shards = pushed.manifest.shards
            assert len(shards) == 64
            runs = itertools.count()

            def curl_loop() -> None:
                target = folder / f"curl-{next(runs)}"
                target.mkdir()
                for number, shard in enumerate(shards):
                    curl("-o", str(target / str(number)), f"{url}/v1/blobs/{shard.blob_id}")

            def okai_pull() -> None:
                run = next(runs)
                pull_dataset(
                    client,
                    parse_ref(pushed.ref),
                    folder / f"okai-{run}",
                    cache_dir=folder / f"cache-{run}",
                )

            size = pushed.manifest.totals.bytes
            for latency in (0.0, 0.05):
                set_faults(url, delay=latency)
                seconds = best_of(RUNS, curl_loop=curl_loop, okai_pull=okai_pull)
                for pattern in ("curl-*", "okai-*", "cache-*"):  # run outputs, cleaned untimed
                    for used in folder.glob(pattern):
                        shutil.rmtree(used)
                report(
                    f"pull 64 shards, {latency * 1000:.0f} ms added latency",
                    size,
                    seconds,
                    "curl_loop",
                    ">= 2x the curl loop",
                )


if __name__ == "__main__":
    main()
