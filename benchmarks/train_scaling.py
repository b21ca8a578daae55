"""Samples per second of okai training at 1 and 2 processes, and the scaling efficiency.

Weak scaling: each process keeps batch size 32, so 2 processes train 64
samples a step. Throughput is the median over epochs (first left out) of
samples trained / training-loop seconds, from rank 0's metrics. Efficiency =
samples/s at 2 / (2 x samples/s at 1). On a machine with 2 cores shared with
other work, expect well under 100%.

    PYTHONPATH=src python benchmarks/train_scaling.py [--epochs 5] [--repeat 4]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from train_common import digits_store, epochs_of, job, median, run_okai


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=4, help="tile each training file N times")
    args = parser.parse_args()
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spec, ref, _ = digits_store(root, args.repeat)
        for procs in (1, 2):
            records = run_okai(spec, job(ref, procs=procs, epochs=args.epochs), root / f"p{procs}")
            rates[procs] = median([r["samplesPerSecond"] for r in epochs_of(records)])
    print(f"{args.repeat}x digits, batch 32 per process")
    for procs, rate in rates.items():
        print(f"{procs} process{'es' if procs > 1 else ''}: {rate:,.0f} samples/s")
    print(
        f"speed-up {rates[2] / rates[1]:.2f}x, scaling efficiency {rates[2] / (2 * rates[1]):.0%}"
    )


if __name__ == "__main__":
    main()
