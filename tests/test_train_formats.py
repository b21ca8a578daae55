"""Every format end to end: pushed to Walrus, trained on by 2 processes from Walrus, recorded
on chain and verified deep (every shard downloaded again and checked).

The local stack (anvil with the registry, the Walrus server) of provenance_support;
text and JSONL train the built-in byte-gpt, the others examples/any_format.py, an
entry point stored on Walrus and pinned by its digest.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import REPO
from format_samples import DATASETS
from okai.digest import Digest
from okai.manifest import EntrypointModel, JobSpec, ManifestRef
from okai.provenance.record import record_run
from okai.train import LaunchOptions, SourceSpec, launch
from okai.train.demo import gpt_job
from okai.verify import ModelTarget, Options, verify_model
from okai.walrus.dataset import push_dataset
from provenance_support import Stack
from provenance_support import stack_fixture as stack_fixture

pytestmark = pytest.mark.slow

TINY_GPT = {
    "epochs": 1,
    "batch_size": 8,
    "width": 16,
    "depth": 1,
    "heads": 2,
    "context": 16,
    "evaluate_every": 0,
    "sample_bytes": 16,
}


@pytest.fixture(scope="module")
def on_stack(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Workers read Walrus through the stack (their own cache), as `okai train` does."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in stack.env().items():
            patch.setenv(name, value)
        patch.setenv("OKAI_HOME", str(tmp_path_factory.mktemp("okai-home")))
        yield stack


def job_for(fmt: str, ref: ManifestRef, stack: Stack) -> JobSpec:
    if fmt in ("jsonl", "text"):
        return gpt_job((ref,), hyperparameters=TINY_GPT)
    code = (REPO / "examples" / "any_format.py").read_bytes()
    with stack.walrus_client() as walrus:
        blob_id = walrus.store_bytes(code).blob_id
    return JobSpec(
        name=f"any-format-{fmt}",
        model=EntrypointModel(entrypoint_blob_id=blob_id, sha256=Digest.of_bytes(code)),
        hyperparameters={"epochs": 2, "batch_size": 4, "classes": 2},
        datasets=(ref,),
        procs_per_node=2,
    )


@pytest.mark.parametrize("fmt", sorted(DATASETS))
def test_a_format_is_pushed_trained_on_recorded_and_verified_deep(
    on_stack: Stack, tmp_path: Path, fmt: str
) -> None:
    root = DATASETS[fmt](tmp_path / fmt)
    with on_stack.walrus_client() as walrus:
        pushed = push_dataset(
            walrus, [root], name=fmt, shard_size=1024, journal_dir=tmp_path / "journals"
        )
    assert {file.format for file in pushed.manifest.files} == {fmt}
    ref = ManifestRef(manifest_blob_id=pushed.manifest_blob_id, sha256=pushed.manifest_digest)
    job = job_for(fmt, ref, on_stack)

    result = launch(job, LaunchOptions(source=SourceSpec.walrus("dev"), run_dir=tmp_path / "run"))
    receipt = result.receipt
    assert receipt is not None and receipt.world_size == 2
    assert [d.sha256 for d in receipt.datasets] == [pushed.manifest_digest]
    assert "testAccuracy" in receipt.metrics

    with on_stack.walrus_client() as walrus:
        record_run(result.run_dir, registry=on_stack.registry(), walrus=walrus)
        report = verify_model(
            ModelTarget(path=result.run_dir / "model.safetensors"),
            Options(deep=True),
            registry=on_stack.registry(signer=None),
            walrus=walrus,
        )
    statuses = {check.id: check.status for check in report.checks}
    assert statuses["datasets.shards"] == "passed", report
    # The local provider runs no registered image; every other check passes.
    assert [check.id for check in report.failures] == ["image.registered"]
