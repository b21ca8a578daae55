"""byte-gpt with torchrun: 2 gloo processes on Python source text, deterministic and resumable.

A tiny configuration (width 32, two blocks, 32 bytes of context) keeps a run
to seconds; the model, loop and data path are those of the demo configuration.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from okai.digest import Digest
from okai.errors import DocumentError
from okai.manifest import JobSpec, ManifestRef
from okai.train import LaunchOptions, LocalShardSource, RunResult, SourceSpec, check_job, launch
from okai.train.demo import gpt_job, python_source_files
from train_helpers import kill_after_first_checkpoint

pytestmark = pytest.mark.slow

TINY = {
    "epochs": 2,
    "batch_size": 8,
    "lr": 0.003,
    "width": 32,
    "depth": 2,
    "heads": 2,
    "context": 32,
    "evaluate_every": 10,
    "sample_bytes": 80,
    "prompt": "import ",
}


@pytest.fixture(scope="module")
def data_source(tmp_path_factory: pytest.TempPathFactory) -> tuple[SourceSpec, ManifestRef]:
    """20 KiB of this Python's standard library as JSONL, in a store as a push leaves it."""
    root = tmp_path_factory.mktemp("store")
    files = python_source_files(limit_bytes=20 << 10, chunk_chars=33)
    ref, _ = LocalShardSource(root).put_dataset("python", files, shard_size=4096)
    return SourceSpec.local(root), ref


@pytest.fixture(scope="module")
def job(data_source: tuple[SourceSpec, ManifestRef]) -> JobSpec:
    return gpt_job((data_source[1],), checkpoint_every=20, hyperparameters=TINY)


@pytest.fixture(scope="module")
def reference(
    job: JobSpec,
    data_source: tuple[SourceSpec, ManifestRef],
    tmp_path_factory: pytest.TempPathFactory,
) -> RunResult:
    run_dir = tmp_path_factory.mktemp("runs") / "reference"
    return launch(job, LaunchOptions(source=data_source[0], run_dir=run_dir))


def events(run_dir: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_the_gpt_learns_reports_bits_per_byte_and_writes_a_sample(reference: RunResult) -> None:
    run = reference.run_dir
    receipt = reference.receipt
    assert receipt is not None and receipt.world_size == 2
    assert receipt.model_sha256 == Digest.of_file(run / "model.safetensors")
    assert "okai" in receipt.code.description  # a built-in: okai's own source
    lines = events(run)
    evals = [e for e in lines if e["event"] == "eval"]
    epochs = [e for e in lines if e["event"] == "epoch"]
    assert evals and all(e["step"] % 10 == 0 for e in evals)  # type: ignore[operator]
    assert len(epochs) == 2
    for line in evals + epochs:
        assert line["testBitsPerByte"] == pytest.approx(line["testLoss"] / 0.6931471805599453)  # type: ignore[operator]
    # Held-out loss goes down from the first evaluation to the end (8 bits is chance).
    first, last = evals[0]["testBitsPerByte"], epochs[-1]["testBitsPerByte"]
    assert last < first < 8  # type: ignore[operator]
    assert receipt.metrics["testBitsPerByte"] == epochs[-1]["testBitsPerByte"]
    sample = (run / "sample.txt").read_text(encoding="utf-8")
    assert sample.startswith("import ") and len(sample.encode()) >= 80
    assert (run / "training-curve.png").read_bytes().startswith(b"\x89PNG")


def test_a_killed_worker_resumes_to_the_same_model_and_sample(
    reference: RunResult, job: JobSpec, data_source: tuple[SourceSpec, ManifestRef], tmp_path: Path
) -> None:
    run_dir = tmp_path / "killed"
    killer, killed = kill_after_first_checkpoint(run_dir)
    result = launch(job, LaunchOptions(source=data_source[0], run_dir=run_dir))
    killer.join(timeout=5)
    assert killed, "the run finished before a checkpoint could be followed by a kill"
    assert result.receipt is not None and reference.receipt is not None
    assert result.receipt.model_sha256 == reference.receipt.model_sha256
    assert (run_dir / "sample.txt").read_bytes() == (reference.run_dir / "sample.txt").read_bytes()

    def figures(run: Path) -> list[tuple[object, ...]]:
        return [
            (e["event"], e.get("step"), e.get("loss"), e.get("testLoss"))
            for e in events(run)
            if e["event"] != "start"
        ]

    assert figures(run_dir) == figures(reference.run_dir)


def test_gpt_hyperparameters_are_checked_before_any_process_starts(job: JobSpec) -> None:
    odd = job.model_copy(update={"hyperparameters": {**TINY, "width": 30, "heads": 4}})
    with pytest.raises(DocumentError, match="width 30 is not a multiple of heads 4"):
        check_job(odd, "job.toml")
    unknown = job.model_copy(update={"hyperparameters": {**TINY, "layers": 3}})
    with pytest.raises(DocumentError, match=r"'hyperparameters\.layers': unknown field"):
        check_job(unknown, "job.toml")
