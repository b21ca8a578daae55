"""The demo dataset and job: scikit-learn's bundled 8x8 digits, as okai dataset files.

No download: `sklearn.datasets.load_digits` ships with scikit-learn. The split is
fixed (seeded), so every machine writes byte-identical files and the same
dataset manifest digest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from okai.manifest import BuiltinModel, DatasetRef, JobSpec

TRAIN_SHARDS = 8
TEST_FRACTION = 0.2
SPLIT_SEED = 20_240_601

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
