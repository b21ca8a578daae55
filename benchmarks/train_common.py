"""Shared setup of the train_* benchmarks: a local blob store of (enlarged) digits, runs, figures.

Not a benchmark itself. The digits dataset is tiny (an epoch takes a fraction
of a second), so benchmarks tile each file `repeat` times to make epochs long
enough to time.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save as save_safetensors

from okai.manifest import JobSpec, ManifestRef
from okai.train import LaunchOptions, LocalShardSource, SourceSpec, digits_files, digits_job, launch


def digits_store(root: Path, repeat: int) -> tuple[SourceSpec, ManifestRef, dict[str, bytes]]:
    """The digits files, each tiled `repeat` times, in a local blob store under `root`."""
    files = {}
    for path, data in digits_files().items():
        tensors = load_safetensors(data)
        if path.startswith("train/"):
            tensors = {name: np.concatenate([t] * repeat) for name, t in tensors.items()}
        files[path] = bytes(save_safetensors(tensors))
    source = LocalShardSource(root / "store")
    ref, _ = source.put_dataset("digits", files)
    return SourceSpec.local(source.root), ref, files


def job(ref: ManifestRef, *, procs: int, epochs: int) -> JobSpec:
    return digits_job((ref,), procs_per_node=procs, epochs=epochs, checkpoint_every=0)


def run_okai(spec: SourceSpec, job: JobSpec, run_dir: Path) -> list[dict[str, Any]]:
    """Run the job with `okai.train.launch`; return its metrics records."""
    launch(job, LaunchOptions(source=spec, run_dir=run_dir, max_restarts=0))
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def epochs_of(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Epoch records, the first (warm-up) left out."""
    return [r for r in records if r["event"] == "epoch"][1:]


def median(values: list[float]) -> float:
    return statistics.median(values)
