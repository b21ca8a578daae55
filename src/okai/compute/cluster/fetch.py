"""Bringing a finished run home: `runs/<run id>/`, every output checked against its digest.

The node that hosted rank 0 names its model and receipt (blob IDs on Walrus and
SHA-256). Both are read from Walrus, verified, and written with the rest of that
node's run directory (job, metrics, logs); other nodes' logs go to
`runs/<run id>/nodes/`. Without Walrus, the files that came over the channel are
checked against the same digests.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from okai.compute.channel import ChannelError, NodeChannel
from okai.compute.cluster.events import Events
from okai.compute.cluster.request import ClusterRequest
from okai.compute.node.status import NodeStatus, Outputs
from okai.config import Settings
from okai.digest import Digest
from okai.errors import IntegrityError, OkaiError, OperationalError, UsageError
from okai.manifest import JobSpec
from okai.provenance.receipt import Receipt
from okai.train.rundir import CHECKPOINTS_DIR, RECEIPT_FILE
from okai.train.rundir import JOB_FILE as RUN_JOB_FILE

NODES_DIR = "nodes"


@dataclass(frozen=True)
class RunOutcome:
    """A finished run, fetched."""

    cluster: str
    run_id: str
    run_dir: Path
    receipt: Receipt
    outputs: Outputs
    fetched_from: str
    """`walrus` when model and receipt came from Walrus, else `channel`."""

    def to_json(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "runId": self.run_id,
            "runDir": str(self.run_dir),
            "modelSha256": self.receipt.model_sha256,
            "receiptSha256": self.outputs.receipt_sha256,
            "jobSha256": self.receipt.job_sha256,
            "modelBlobId": None if self.outputs.model is None else self.outputs.model.blob_id,
            "receiptBlobId": None if self.outputs.receipt is None else self.outputs.receipt.blob_id,
            "fetchedFrom": self.fetched_from,
            "metrics": self.receipt.metrics,
        }


def fetch_run(
    channels: list[NodeChannel],
    statuses: list[NodeStatus],
    request: ClusterRequest,
    settings: Settings,
    cluster: str,
    run_id: str,
    events: Events,
) -> RunOutcome:
    """Bring the run directory home to `runs/<run id>/`, every output verified."""
    hosts = [s for s in statuses if s.hosts_rank0 and s.outputs is not None]
    if len(hosts) != 1:
        raise OperationalError(
            f"{len(hosts)} nodes say they hosted rank 0 (expected one)",
            hint=f"`okai cluster logs {cluster}` shows what each node did",
        )
    host = hosts[0]
    outputs = host.outputs
    assert outputs is not None and host.node_rank is not None
    dest = request.runs_root / run_id
    if dest.exists():
        raise UsageError(f"{dest} exists already", hint="move it away and fetch again")
    partial = dest.with_name(f".{run_id}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    by_rank = {channel.rank: channel for channel in channels}
    channel = by_rank[host.node_rank]
    events.report(f"fetching run {run_id} from {channel.describe()}")
    channel_error: ChannelError | None = None
    try:
        channel.fetch_run(run_id, partial, exclude=(CHECKPOINTS_DIR,))
    except ChannelError as exc:
        channel_error = exc
        events.report(f"the run directory did not come over the channel: {exc.message}")
    fetched_from = "channel"
    if outputs.model is not None and outputs.receipt is not None:
        try:
            _read_from_walrus(settings, outputs, partial, events)
            fetched_from = "walrus"
        except OkaiError as exc:
            if channel_error is not None:
                raise OperationalError(
                    f"the outputs are neither on Walrus ({exc.message}) nor reachable on "
                    f"{channel.describe()} ({channel_error.message})"
                ) from exc
            events.report(
                f"reading the outputs from Walrus failed ({exc.message}); kept the copy from the node"
            )
    elif channel_error is not None:
        raise channel_error
    receipt = _verify_outputs(partial, outputs)
    for other in channels:
        if other.rank == host.node_rank:
            continue
        with contextlib.suppress(ChannelError):
            other.fetch_run(
                run_id, partial / NODES_DIR / f"node-{other.rank}", exclude=(CHECKPOINTS_DIR,)
            )
    partial.rename(dest)
    return RunOutcome(
        cluster=cluster,
        run_id=run_id,
        run_dir=dest,
        receipt=receipt,
        outputs=outputs,
        fetched_from=fetched_from,
    )


def _read_from_walrus(settings: Settings, outputs: Outputs, into: Path, events: Events) -> None:
    from okai.walrus.client import WalrusClient

    assert outputs.model is not None and outputs.receipt is not None
    with WalrusClient.from_network(settings.network, settings.secrets) as client:
        for stored, name in ((outputs.model, "model.safetensors"), (outputs.receipt, RECEIPT_FILE)):
            events.report(f"reading {name} from Walrus (blob {stored.blob_id})")
            client.read_to_file(
                stored.blob_id, Digest(stored.sha256), into / name, expected_size=stored.size
            )


def _verify_outputs(run_dir: Path, outputs: Outputs) -> Receipt:
    """Check model, receipt and job files against the digests the node reported."""
    receipt_path = run_dir / RECEIPT_FILE
    _check_file(receipt_path, outputs.receipt_sha256, "the receipt")
    receipt = Receipt.load(receipt_path)
    if receipt.model_sha256 != outputs.model_sha256:
        raise IntegrityError(
            "the receipt's model digest", outputs.model_sha256, receipt.model_sha256
        )
    _check_file(run_dir / receipt.model_file, outputs.model_sha256, "the model")
    job_path = run_dir / RUN_JOB_FILE
    if not job_path.exists():
        # Only model and receipt came (from Walrus): the receipt holds the job.
        job = JobSpec.from_data(receipt.job, f"{receipt_path} job")
        job_path.write_bytes(job.canonical_bytes())
    _check_file(job_path, receipt.job_sha256, "the job")
    return receipt


def _check_file(path: Path, expected: str, what: str) -> None:
    if not path.exists():
        raise OperationalError(f"{what} ({path.name}) did not arrive")
    actual = Digest.of_file(path)
    if actual != expected:
        raise IntegrityError(f"{what} ({path.name})", expected, actual)
