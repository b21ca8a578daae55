"""Epoch time of okai's training loop against a bare torchrun script, in the same run.

Both train the same model (`digits-cnn`) with the same optimizer, batch size,
data files and process count, on CPU with gloo, one thread per process. The
bare script reads the dataset files from a folder and loops over tensors in
memory; okai verifies the files, streams them through its prefetcher and
writes metrics. Figures are the median training-loop time of an epoch (first
epoch left out), alternating bare and okai runs. Target: ratio <= 1.05.

    PYTHONPATH=src python benchmarks/train_overhead.py [--epochs 6] [--repeat 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from train_common import digits_store, epochs_of, job, median, run_okai

BARE = """
import json, os, sys, time
from pathlib import Path
import torch, torch.distributed as dist
from safetensors.torch import load_file
from okai.train.models.digits_cnn import DigitsCNN

torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
folder, epochs, batch = Path(sys.argv[1]), int(sys.argv[2]), 32
files = sorted((folder / "train").glob("*.safetensors"))
mine = [load_file(str(f)) for i, f in enumerate(files) if i % world == rank]
x = torch.cat([t["x"] for t in mine]); y = torch.cat([t["y"] for t in mine]).long()
steps = torch.tensor([len(y) // batch]); dist.all_reduce(steps, op=dist.ReduceOp.MIN)
torch.manual_seed(0)
model = torch.nn.parallel.DistributedDataParallel(DigitsCNN())
optimizer = torch.optim.Adam(model.parameters(), lr=0.003)
for epoch in range(epochs):
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(epoch))
    began = time.perf_counter()
    for step in range(int(steps)):
        index = order[step * batch:(step + 1) * batch]
        loss = torch.nn.functional.cross_entropy(model(x[index]), y[index])
        optimizer.zero_grad(set_to_none=True); loss.backward(); optimizer.step()
    if rank == 0:
        print(json.dumps({"epoch": epoch, "seconds": time.perf_counter() - began}), flush=True)
dist.destroy_process_group()
"""


def run_bare(folder: Path, epochs: int, procs: int) -> list[float]:
    script = folder / "bare_ddp.py"
    script.write_text(BARE)
    output = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone",
         f"--nproc-per-node={procs}", str(script), str(folder), str(epochs)],
        capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    ).stdout  # fmt: skip
    seconds = [json.loads(line)["seconds"] for line in output.splitlines() if line.startswith("{")]
    return seconds[1:]


def bookkeeping_share(tmp: Path, steps: int = 300) -> tuple[float, float]:
    """(microseconds okai adds to a step, seconds of a plain step), timed in this process.

    The per-step work okai's loop does beyond forward, backward and optimizer
    step: reseeding, running sums, the loss read-out and the metrics line. A
    direct measure, less exposed to other load than whole-run timings.
    """
    import time

    import torch

    from okai.train.metrics import MetricsLog
    from okai.train.models.digits_cnn import DigitsCNN
    from okai.train.seeding import derive_seed, step_seed

    torch.set_num_threads(1)
    model = DigitsCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.003)
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))
    metrics = MetricsLog(tmp / "bookkeeping.jsonl", enabled=True)
    loss_sum = 0.0
    correct = 0
    plain = extra = 0.0
    base = derive_seed(0, "step", 0)
    for step in range(steps):
        began = time.perf_counter()
        output = model(x)
        loss = torch.nn.functional.cross_entropy(output, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        middle = time.perf_counter()
        torch.default_generator.manual_seed(step_seed(base, step))
        value = loss.item()
        loss_sum += value * len(y)
        correct += int(torch.count_nonzero(output.argmax(1) == y))
        metrics.write("step", epoch=0, step=step, loss=value, samplesPerSecond=1.0)
        ended = time.perf_counter()
        plain += middle - began
        extra += ended - middle
    metrics.close()
    return 1e6 * extra / steps, plain / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=4, help="tile each training file N times")
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spec, ref, files = digits_store(root, args.repeat)
        folder = root / "files"
        for path, data in files.items():
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            (folder / path).write_bytes(data)
        bare: list[float] = []
        okai: list[float] = []
        for round_ in range(args.rounds):
            bare += run_bare(folder, args.epochs, args.procs)
            records = run_okai(
                spec, job(ref, procs=args.procs, epochs=args.epochs), root / f"run-{round_}"
            )
            okai += [r["stepSeconds"] for r in epochs_of(records)]
        extra_us, step_s = bookkeeping_share(root)
    b, o = median(bare), median(okai)
    print(f"processes {args.procs}, epochs timed {len(okai)} per side, {args.repeat}x digits")
    print(f"bare torchrun script : {b:.3f} s/epoch median, {min(bare):.3f} best")
    print(f"okai training loop   : {o:.3f} s/epoch median, {min(okai):.3f} best")
    print(
        f"ratio okai/bare      : {o / b:.3f} median, {min(okai) / min(bare):.3f} best  (target <= 1.05)"
    )
    print(
        f"okai's per-step bookkeeping: {extra_us:.0f} us on a {1e3 * step_s:.2f} ms step "
        f"(1 process, no DDP) = {100 * extra_us / (1e6 * step_s):.2f}%"
    )


if __name__ == "__main__":
    main()
