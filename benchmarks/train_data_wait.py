"""Share of step time spent waiting for data, and time to fetch and verify before training.

Runs `digits-cnn` with okai and reads rank 0's metrics: `dataWaitSeconds`
(time the loop was blocked on the background reader) over `stepSeconds`, per
epoch, plus `fetchSeconds` (fetch and verify the rank's shards before the first
step). Target: under 5%.

Data comes from a local blob store by default. With `--network NAME --manifest
BLOB_ID:sha256:HEX` it comes from Walrus (a dataset pushed with `okai data
push`), through okai.walrus.

    PYTHONPATH=src python benchmarks/train_data_wait.py [--repeat 8] [--epochs 4]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from okai.manifest import ManifestRef
from okai.train import SourceSpec
from train_common import digits_store, epochs_of, job, run_okai


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=8, help="tile each training file N times")
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--network", help="read from Walrus on this network instead")
    parser.add_argument("--manifest", help="BLOB_ID:sha256:HEX of the pushed dataset manifest")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.network:
            blob_id, _, sha256 = args.manifest.partition(":")
            spec, ref = (
                SourceSpec.walrus(args.network),
                ManifestRef(manifest_blob_id=blob_id, sha256=sha256),
            )
            where = f"Walrus ({args.network})"
        else:
            spec, ref, _ = digits_store(root, args.repeat)
            where = f"local blob store, {args.repeat}x digits"
        records = run_okai(spec, job(ref, procs=args.procs, epochs=args.epochs), root / "run")
    start = next(r for r in records if r["event"] == "start")
    epochs = epochs_of(records)
    wait = sum(r["dataWaitSeconds"] for r in epochs)
    step = sum(r["stepSeconds"] for r in epochs)
    first = next(r for r in records if r["event"] == "epoch")
    print(f"data from {where}, {args.procs} processes, {start['stepsPerEpoch']} steps/epoch")
    print(f"fetch and verify before training (rank 0): {start['fetchSeconds']:.3f} s")
    print(f"first epoch: waited {first['dataWaitSeconds']:.4f} s of {first['stepSeconds']:.3f} s")
    print(
        f"later epochs: waited {wait:.4f} s of {step:.3f} s = {100 * wait / step:.2f}% (target < 5%)"
    )


if __name__ == "__main__":
    main()
