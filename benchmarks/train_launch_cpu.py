"""CPU of a whole digits run, with and without the worker's garbage-collector pause.

The run is torchrun and its workers; runs with and without alternate in one command.

The worker imports torch with the cyclic garbage collector paused and freezes what the
imports left (`okai.collector.paused_then_frozen`, src/okai/train/worker.py). The baseline
runs the same code with that helper replaced by a no-op (a `sitecustomize` on the workers'
PYTHONPATH), so the difference is the pause alone. Figures: CPU seconds (user + system) of
the launch's processes, from this process's waited children, and wall seconds; medians.
Target: CPU ratio <= 0.95.

    PYTHONPATH=src python benchmarks/train_launch_cpu.py [--rounds 4] [--epochs 12]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path
from unittest import mock

from okai.manifest import JobSpec
from okai.train import SourceSpec
from train_common import digits_store, job, median, run_okai

Run = tuple[float, float]
"""CPU seconds and wall seconds of one launch."""

NO_PAUSE = """
import contextlib
import okai.collector

okai.collector.paused_then_frozen = contextlib.nullcontext
"""


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_run(spec: SourceSpec, the_job: JobSpec, run_dir: Path, env: dict[str, str]) -> Run:
    """(CPU seconds, wall seconds) of one launch with `env` added to this process's."""
    with mock.patch.dict(os.environ, env):
        cpu, wall = children_cpu(), time.perf_counter()
        run_okai(spec, the_job, run_dir)
        return children_cpu() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--procs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spec, ref, _ = digits_store(root, 1)
        the_job = job(ref, procs=args.procs, epochs=args.epochs)
        patch = root / "no-pause"
        patch.mkdir()
        (patch / "sitecustomize.py").write_text(NO_PAUSE)
        path = os.pathsep.join(p for p in (str(patch), os.environ.get("PYTHONPATH")) if p)
        sides: dict[str, list[Run]] = {"without": [], "with": []}
        for round_ in range(args.rounds):
            for side, env in (("without", {"PYTHONPATH": path}), ("with", {})):
                sides[side].append(timed_run(spec, the_job, root / f"{side}-{round_}", env))
    print(f"digits, {args.epochs} epochs, {args.procs} processes, {args.rounds} runs per side")
    for side, runs in sides.items():
        cpu, wall = median([c for c, _ in runs]), median([w for _, w in runs])
        print(f"{side:>7} the pause: {cpu:6.2f} s CPU, {wall:6.2f} s wall (medians)")
    ratio = median([c for c, _ in sides["with"]]) / median([c for c, _ in sides["without"]])
    wall_ratio = median([w for _, w in sides["with"]]) / median([w for _, w in sides["without"]])
    print(f"ratio with/without: CPU {ratio:.3f} (target <= 0.95), wall {wall_ratio:.3f}")


if __name__ == "__main__":
    main()
