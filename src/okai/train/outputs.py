"""What rank 0 leaves in the run directory when training ends.

`model.safetensors` holds only the tensors and the fixed metadata
`{"format": "pt"}`: no time, run ID or host, so that a deterministic job
yields the same bytes on every run. The receipt, written last, carries all of
those; its presence marks a finished run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from okai.atomic import atomic_path
from okai.digest import Digest
from okai.manifest import UNREGISTERED_HOST, JobSpec
from okai.provenance.receipt import Receipt, ReceiptCode, ReceiptImage
from okai.train.metrics import Summary, plot_curve, read_metrics
from okai.train.receipt import dataset_records, library_versions, utc_now
from okai.train.rundir import CURVE_FILE, METRICS_FILE, MODEL_FILE, RECEIPT_FILE

MODEL_METADATA = {"format": "pt"}


@dataclass(frozen=True, kw_only=True)
class RunFacts:
    """What the receipt says of the run besides its model and figures."""

    run_id: str
    job: JobSpec
    code: ReceiptCode
    image: ReceiptImage | None
    provider: str
    world_size: int
    nodes: int
    started_at: str


def model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state of `model` as the contiguous CPU tensors a safetensors file holds."""
    return {
        name: tensor.detach().to("cpu").clone().contiguous()
        for name, tensor in model.state_dict().items()
    }


def save_model(model: nn.Module, path: Path) -> Digest:
    """Write the model's state as safetensors, atomically; return the file's digest."""
    with atomic_path(path) as tmp:
        save_file(model_tensors(model), str(tmp), metadata=MODEL_METADATA)
    return Digest.of_file(path)


def write_outputs(run_dir: Path, model: nn.Module, summary: Summary, run: RunFacts) -> Receipt:
    """Model, training curve and receipt, in that order."""
    job = run.job
    model_sha256 = save_model(model, run_dir / MODEL_FILE)
    records = read_metrics(run_dir / METRICS_FILE)
    if records:
        plot_curve(records, run_dir / CURVE_FILE, f"{job.name} ({run.run_id})")
    metrics = {
        "finalLoss": summary.final_loss,
        "testAccuracy": summary.test_accuracy,
        "testLoss": summary.test_loss,
        "testBitsPerByte": summary.test_bits_per_byte,
        "samplesPerSecond": None
        if summary.samples_per_second is None
        else round(summary.samples_per_second, 1),
    }
    receipt = Receipt(
        run_id=run.run_id,
        provider=run.provider,
        model_file=MODEL_FILE,
        model_sha256=model_sha256,
        job_sha256=job.digest(),
        job=job,
        datasets=dataset_records(job),
        code=run.code,
        image=run.image,
        host=UNREGISTERED_HOST if run.image is None else None,
        libraries=library_versions(),
        world_size=run.world_size,
        nodes=run.nodes,
        started_at=run.started_at,
        finished_at=utc_now(),
        # A metric that was not measured is left out rather than written as null.
        metrics={name: value for name, value in metrics.items() if value is not None},
    )
    with atomic_path(run_dir / RECEIPT_FILE) as tmp:
        receipt.write(tmp)
    return receipt
