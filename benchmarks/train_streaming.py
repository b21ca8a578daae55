"""Streaming start: time to the first training step, and data wait, fetching all first vs streaming.

A dataset of `--shards` safetensors files of 16 MiB each (64: 1 GiB) is pushed to
an in-process local Walrus server that delays every request by `--delay` seconds
(20 ms: a far aggregator). One rank that owns every file then trains `digits-cnn`
steps (batch 512, one thread) on it, twice, each from an empty cache:

- baseline: what okai did before streaming, every shard fetched (4 at a time) and
  verified before the first step;
- streaming: the first step as soon as the first file of the epoch's order is
  fetched and verified, the next files read `READ_AHEAD` ahead.

Both run for two dataset sizes (a quarter, then all of `--shards`): time to first
step should grow with the size for the baseline and stay flat when streaming.
Data wait is the time the loop was blocked on data over `--steps` steps after the
first, as a share of their time (target < 5 %).

    .venv/bin/python benchmarks/train_streaming.py [--shards 64] [--delay 0.02] [--steps 300]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save as save_safetensors

from okai.manifest import ManifestRef
from okai.train import DataPlan, WalrusShardSource, partition
from okai.train.loader import RankStream, fetch
from okai.train.models.digits_cnn import DigitsCNN
from okai.walrus.client import WalrusClient
from okai.walrus.dataset import push_dataset
from okai.walrus.server import WalrusServer

FILE_BYTES = 16 << 20
SAMPLE_BYTES = 64 * 4 + 8  # x: 1x8x8 float32, y: int64
BATCH = 512


def write_files(folder: Path, count: int) -> None:
    rng = np.random.default_rng(0)
    samples = (FILE_BYTES - 1024) // SAMPLE_BYTES
    for index in range(count):
        x = rng.random((samples, 1, 8, 8), dtype=np.float32)
        y = rng.integers(0, 10, samples, dtype=np.int64)
        path = folder / "train" / f"part-{index:03d}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(save_safetensors({"x": x, "y": y}))


def run(
    client: WalrusClient, ref: ManifestRef, cache: Path, *, streaming: bool, steps: int
) -> dict[str, float]:
    began = time.perf_counter()
    source = WalrusShardSource(client, cache)
    plan = DataPlan.build([source.manifest(ref)])
    ready = fetch(source, partition(plan.train, 0, 1))
    if not streaming:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda item: item.parts(), ready))
    stream = RankStream(ready, seed=0, rank=0)
    torch.manual_seed(0)
    model = DigitsCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.003)
    first = 0.0
    wait_after_first = 0.0
    steady_began = 0.0
    for index, (x, y) in enumerate(stream.batches(0, BATCH, stop=steps + 1)):
        if index == 0:
            first = time.perf_counter() - began
            wait_after_first = stream.wait_seconds
            steady_began = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    steady = time.perf_counter() - steady_began
    return {"first": first, "wait": stream.wait_seconds - wait_after_first, "steady": steady}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=64)
    parser.add_argument("--delay", type=float, default=0.02)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        limit = FILE_BYTES + (1 << 20)
        with (
            WalrusServer(root / "walrus", fake_blob_ids=True, max_body=limit).start() as server,
            WalrusClient(
                [server.url], server.url, compute_blob_ids_up_to=0, max_body=limit, timeout=120.0
            ) as client,
        ):
            sizes = sorted({max(1, args.shards // 4), args.shards})
            refs = {}
            for count in sizes:
                folder = root / f"data-{count}"
                write_files(folder, count)
                pushed = push_dataset(
                    client, [folder], name=f"bench-{count}", shard_size=FILE_BYTES,
                    journal_dir=root / "journals",
                )  # fmt: skip
                refs[count] = ManifestRef(
                    manifest_blob_id=pushed.manifest_blob_id, sha256=pushed.manifest_digest
                )
            # Warm-up: first use of torch, safetensors and the model costs seconds once.
            run(client, refs[sizes[0]], root / "cache-warm-up", streaming=True, steps=2)
            server.faults.set(delay=args.delay)
            print(f"{args.delay * 1000:.0f} ms per request, 16 MiB shards, batch {BATCH}")
            results = {}
            for count in sizes:
                for streaming in (False, True):
                    cache = root / f"cache-{count}-{streaming}"
                    result = run(client, refs[count], cache, streaming=streaming, steps=args.steps)
                    results[count, streaming] = result
                    print(
                        f"{count:3d} shards ({count * 16} MiB) "
                        f"{'streaming' if streaming else 'fetch all':9s}: first step "
                        f"{result['first']:6.2f} s, data wait {result['wait']:.3f} s of "
                        f"{result['steady']:.2f} s = {100 * result['wait'] / result['steady']:.2f}%"
                    )
            small, large = sizes[0], sizes[-1]
            print(
                f"time to first step, {large} vs {small} shards: fetch all x"
                f"{results[large, False]['first'] / results[small, False]['first']:.2f}, "
                f"streaming x{results[large, True]['first'] / results[small, True]['first']:.2f}"
            )
            print(
                f"time to first step at {large} shards, streaming / fetch all: "
                f"{results[large, True]['first'] / results[large, False]['first']:.3f}"
            )


if __name__ == "__main__":
    main()
