"""Pull a 32-shard dataset with a stalling aggregator listed first, against the honest one alone.

Two `okai walrus serve` processes share one store; the first one listed hangs
every read before its first byte. okai asks the next aggregator after
`OKAI_WALRUS_HEDGE_AFTER` (1.5 s by default), takes its answer and demotes the
stalled one for the rest of the client's life, so the whole pull costs about
one hedge delay more than a pull from the honest aggregator alone. Before
hedged reads, the stalled aggregator cost the 60 s request timeout per blob.
Each run uses a fresh client (demotions do not carry over) and a cold cache.
"""

from __future__ import annotations

import itertools
import shutil

import httpx

from okai.walrus.client import WalrusClient
from okai.walrus.dataset import parse_ref, pull_dataset, push_dataset
from okai.walrus.pacing import ReadPacing
from walrus_common import RUNS, MiB, best_of, random_file, server_process, set_faults, workdir

SHARD = 1 * MiB
FILES = 4
SHARDS_PER_FILE = 8


def main() -> None:
    with (
        workdir("hedge") as folder,
        server_process(folder) as stalled,
        server_process(folder) as honest,
    ):
        data = folder / "data"
        data.mkdir()
        for index in range(FILES):
            random_file(data / f"part-{index}.bin", SHARD * SHARDS_PER_FILE)
        with WalrusClient([honest], honest, max_body=0, compute_blob_ids_up_to=0) as client:
            pushed = push_dataset(
                client, [data], name="bench", shard_size=SHARD, journal_dir=folder / "journals"
            )
        assert len(pushed.manifest.shards) == FILES * SHARDS_PER_FILE
        set_faults(stalled, stall=-1)
        runs = itertools.count()
        demotions: list[int] = []

        def pull(aggregators: list[str]) -> None:
            run = next(runs)
            with WalrusClient(aggregators, honest, compute_blob_ids_up_to=0) as client:
                pull_dataset(
                    client,
                    parse_ref(pushed.ref),
                    folder / f"out-{run}",
                    cache_dir=folder / f"cache-{run}",
                )
            if len(aggregators) > 1:
                demotions.append(len(client.book.report()["demoted"]))

        seconds = best_of(
            RUNS,
            honest_only=lambda: pull([honest]),
            stalled_first=lambda: pull([stalled, honest]),
        )
        for used in itertools.chain(folder.glob("out-*"), folder.glob("cache-*")):
            shutil.rmtree(used)
        asked = httpx.get(f"{stalled}/_okai/test/stats", timeout=10).json().get("GET blob", 0)
        set_faults(stalled, stall=0)
        httpx.delete(f"{stalled}/_okai/test/faults", timeout=10)  # releases the stalled reads

    shards = FILES * SHARDS_PER_FILE
    hedge = ReadPacing().hedge_after
    print(
        f"pull {shards} shards of {SHARD // MiB} MiB, a stalling aggregator listed first "
        f"(best of {RUNS}; machine may be shared)"
    )
    for name, (elapsed, cpu) in seconds.items():
        ratio = elapsed / seconds["honest_only"][0]
        print(
            f"  {name:<14} {elapsed:7.3f} s  {ratio:6.2f}x the honest-only pull   CPU {cpu:.3f} s"
        )
    extra = seconds["stalled_first"][0] - seconds["honest_only"][0]
    print(f"  the stall cost {extra:.2f} s per pull (hedge delay {hedge:g} s)")
    print(
        f"  reads that reached the stalled aggregator: {asked} in {RUNS} pulls "
        f"(each of {shards + 1} reads); demoted in {sum(demotions)} of {len(demotions)} pulls"
    )
    print("  before hedged reads, every read waited out the 60 s timeout on it first")
    print("  target: a stalled first aggregator costs seconds per pull, not a timeout per blob")


if __name__ == "__main__":
    main()
