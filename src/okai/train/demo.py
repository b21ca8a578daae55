"""The demo datasets and jobs, built from what the machine already has (no download).

- digits: scikit-learn's bundled 8x8 digits, as safetensors files. The split is
  fixed (seeded), so every machine writes byte-identical files and the same
  dataset manifest digest.
- Python source: the text of the running Python's standard library, as JSONL
  records for `byte-gpt`. Those bytes differ between Python versions (and
  distributions), so the recipe does not pin the data: the pushed dataset's
  manifest digest does, as for any dataset.
"""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path
from typing import TYPE_CHECKING

from okai.manifest import BuiltinModel, DatasetRef, JobSpec

TRAIN_SHARDS = 8
TEST_FRACTION = 0.2
SPLIT_SEED = 20_240_601
TEXT_HELD_OUT_EVERY = 20
"""Every 20th chunk of Python source is held out (test/python.jsonl)."""

if TYPE_CHECKING:
    import numpy as np


def digits_files(train_shards: int = TRAIN_SHARDS) -> dict[str, bytes]:
    """The digits as dataset files: `train/digits-NNN.safetensors` and `test/digits.safetensors`.

    Each file holds `x` (float32, [n, 1, 8, 8], pixel values scaled to [0, 1])
    and `y` (int64 labels 0-9). A fifth of the samples is held out for testing.
    """
    import numpy as np
    from sklearn.datasets import load_digits  # slow to import; only the demo needs it

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    held_out = int(len(labels) * TEST_FRACTION)
    test, train = order[:held_out], order[held_out:]
    files = {
        f"train/digits-{index:03d}.safetensors": _encode(images[part], labels[part])
        for index, part in enumerate(np.array_split(train, train_shards))
    }
    files["test/digits.safetensors"] = _encode(images[test], labels[test])
    return files


def _encode(x: np.ndarray, y: np.ndarray) -> bytes:
    import numpy as np
    from safetensors.numpy import save as save_safetensors

    return bytes(save_safetensors({"x": np.ascontiguousarray(x), "y": np.ascontiguousarray(y)}))


def digits_job(
    datasets: tuple[DatasetRef, ...],
    *,
    nodes: int = 1,
    procs_per_node: int = 2,
    epochs: int = 12,
    checkpoint_every: int = 0,
    seed: int = 0,
) -> JobSpec:
    """The demo job: `digits-cnn` on the digits dataset, deterministic."""
    return JobSpec(
        name="digits-cnn",
        model=BuiltinModel(builtin="digits-cnn"),
        hyperparameters={"epochs": epochs, "batch_size": 32, "lr": 0.003},
        seed=seed,
        deterministic=True,
        datasets=datasets,
        nodes=nodes,
        procs_per_node=procs_per_node,
        checkpoint_every=checkpoint_every,
    )


def python_source_files(
    *,
    limit_bytes: int = 256 << 10,
    chunk_chars: int = 129,
    train_files: int = 4,
    stdlib: Path | None = None,
) -> dict[str, bytes]:
    """The running Python's standard library as JSONL text, for `byte-gpt`.

    The top-level modules of the standard library, in name order, until
    `limit_bytes` of source; each cut into records of `chunk_chars` characters
    `{"text": ..., "source": "<module>.py"}`. Every 20th record goes to
    `test/python.jsonl`, the rest round-robin to `train/python-NNN.jsonl`.
    """
    folder = stdlib or Path(sysconfig.get_paths()["stdlib"])
    records: list[dict[str, str]] = []
    used = 0
    for path in sorted(folder.glob("*.py")):
        if used >= limit_bytes:
            break
        text = path.read_bytes()[: limit_bytes - used].decode("utf-8", errors="replace")
        used += len(text.encode("utf-8"))
        records.extend(
            {"text": text[start : start + chunk_chars], "source": path.name}
            for start in range(0, len(text), chunk_chars)
        )
    train: list[list[dict[str, str]]] = [[] for _ in range(train_files)]
    test = []
    for index, record in enumerate(records):
        if index % TEXT_HELD_OUT_EVERY == TEXT_HELD_OUT_EVERY - 1:
            test.append(record)
        else:
            train[index % train_files].append(record)
    files = {f"train/python-{index:03d}.jsonl": _jsonl(part) for index, part in enumerate(train)}
    files["test/python.jsonl"] = _jsonl(test)
    return files


def _jsonl(records: list[dict[str, str]]) -> bytes:
    lines = (json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)
    return "".join(lines).encode("utf-8")


GPT_DEMO_HYPERPARAMETERS: dict[str, int | float | str | bool] = {
    "epochs": 3,
    "batch_size": 16,
    "lr": 0.006,
    "width": 128,
    "depth": 2,
    "heads": 4,
    "context": 128,
    "evaluate_every": 25,
}
"""A small configuration for the demo: 0.4M parameters, 3 epochs of 57 steps, a few minutes
on 2 busy CPU processes."""


def gpt_job(
    datasets: tuple[DatasetRef, ...],
    *,
    nodes: int = 1,
    procs_per_node: int = 2,
    checkpoint_every: int = 0,
    seed: int = 0,
    hyperparameters: dict[str, int | float | str | bool] | None = None,
) -> JobSpec:
    """The language-model demo job: `byte-gpt` on Python source, deterministic."""
    return JobSpec(
        name="byte-gpt",
        model=BuiltinModel(builtin="byte-gpt"),
        hyperparameters=GPT_DEMO_HYPERPARAMETERS if hyperparameters is None else hyperparameters,
        seed=seed,
        deterministic=True,
        datasets=datasets,
        nodes=nodes,
        procs_per_node=procs_per_node,
        checkpoint_every=checkpoint_every,
    )
