"""The node agent, `okai node run`: the same code on every node of a cluster.

It reads the job and cluster files, checks the node's image identity against
what the cluster expects, runs the job with torchrun (okai.train.launch) using
the cluster file's rendezvous, and keeps `<state dir>/status.json` current. The
node that ends up hosting rank 0 (torchrun assigns ranks; the one whose run
directory receives the receipt) stores the model and the receipt on Walrus,
reads both back to check them, and records their blob IDs and SHA-256 in its
status, so `okai cluster up` can fetch them; both also stay in
`<state dir>/runs/<run id>/` for retrieval over SSH.

Started again for the same run (a crash, a reboot, an elastic restart), the
agent joins the run again: torchrun resumes from the run's checkpoints. A run
that has already finished is reported, not repeated.

The job's entry point is anyone's code, so torchrun and its workers run in the
bubblewrap sandbox `okai verify --reproduce` uses (okai.train.sandbox), with the
node's network shared, on one node as on several: an allow-listed environment
(no secret of the agent's), no view of the agent's processes, files or
credentials, the system read-only, the run directory and a home of the job's own
the only writable folders. Where no sandbox can be set up the agent refuses the
job, unless `OKAI_NODE_UNSAFE_NO_SANDBOX=1` says to run it as the agent.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType

from okai.compute.marks import MARK_ENV
from okai.compute.node.files import AGENT_LOG, RUNS_DIR, ClusterFile, load_secrets
from okai.compute.node.host import check_identity, read_identity
from okai.compute.node.status import (
    ErrorInfo,
    NodeState,
    NodeStatus,
    Outputs,
    ProgressInfo,
    StoredFile,
    own_identity,
    read_status,
    utc_now,
    write_status,
)
from okai.config import load_settings
from okai.digest import Digest
from okai.errors import IntegrityError, OkaiError, OperationalError, UsageError
from okai.inert import inert
from okai.manifest import JobSpec
from okai.train import LaunchOptions, Progress, Receipt, Rendezvous, SourceSpec, launch, load_job
from okai.train.receipt import (
    IMAGE_DIGEST_ENV,
    IMAGE_FILE,
    IMAGE_FILE_ENV,
    IMAGE_FLAKE_REVISION_ENV,
)
from okai.train.rundir import PROVIDER_ENV, RECEIPT_FILE
from okai.train.sandbox import Sandbox, SandboxUnavailable, is_secret_name

LOCK_FILE = "agent.lock"
JOB_HOME = "job-home"
"""The job's own home in the state dir (okai's data cache): writable by the job, which
sees nothing else of the state dir but its run directory."""
_JOB_VARIABLES = frozenset(("OKAI_NETWORK", PROVIDER_ENV, MARK_ENV))
"""Of the agent's environment, what the job gets (with `OKAI_WALRUS_*` less its tokens)."""
UNSAFE_ENV = "OKAI_NODE_UNSAFE_NO_SANDBOX"
"""`1`: run the job without a sandbox, as the agent's user, where bubblewrap cannot run."""
PROGRESS_EVERY_S = 1.0
"""How often rank 0's progress is written to the status file, at most."""


class AgentStopped(OperationalError):
    """The agent was told to stop (SIGTERM, SIGINT) before the job ended."""


@dataclass(frozen=True, kw_only=True)
class AgentOptions:
    job_file: Path
    cluster_file: Path
    state_dir: Path
    image_file: Path = IMAGE_FILE


class Agent:
    """One run of the agent on one node; `run()` returns the final status."""

    def __init__(self, options: AgentOptions) -> None:
        self.options = options
        self.state_dir = options.state_dir
        pid, start = own_identity()
        self.status = NodeStatus(
            state=NodeState.CHECKING, pid=pid, pid_start=start, started_at=utc_now()
        )
        self._last_progress = 0.0
        self._sandbox: Sandbox | None = None

    # --- the run ---------------------------------------------------------------------------

    def run(self) -> NodeStatus:
        """Check, train, publish; the status file says how it went. Raises on failure."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with _only_agent(self.state_dir):
            return self._run()

    def _run(self) -> NodeStatus:
        previous = read_status(self.state_dir)
        try:
            with _stop_on_signals():
                cluster = ClusterFile.load(self.options.cluster_file)
                self._identify(cluster, previous)
                if previous.state == NodeState.FINISHED and previous.run_id == cluster.run_id:
                    self.log(f"run {cluster.run_id} has already finished here; nothing to do")
                    self.status = previous
                    return previous
                self._save()
                job = load_job(self.options.job_file)
                self._check(job, cluster)
                self._train(job, cluster)
        except BaseException as exc:
            self.status.state = NodeState.FAILED
            self.status.error = ErrorInfo.of(exc)
            self.status.finished_at = utc_now()
            self._save()
            self.log(f"failed: {self.status.error.message}")
            raise
        return self.status

    def _identify(self, cluster: ClusterFile, previous: NodeStatus) -> None:
        self.status.cluster_id = cluster.cluster_id
        self.status.node_rank = cluster.node_rank
        self.status.run_id = cluster.run_id
        self.status.run_dir = str(self.run_dir(cluster))
        if previous.run_id == cluster.run_id and previous.state != NodeState.IDLE:
            self.status.restarts = previous.restarts + 1

    def _check(self, job: JobSpec, cluster: ClusterFile) -> None:
        self.log(
            f"cluster {cluster.cluster_id}: node {cluster.node_rank} of {cluster.nodes}, "
            f"run {cluster.run_id}, rendezvous {cluster.rendezvous.endpoint}"
        )
        if job.nodes != cluster.nodes:
            raise UsageError(
                f"the job runs on {job.nodes} node(s) but the cluster file says {cluster.nodes}",
                hint="deliver the job and cluster files of the same cluster",
            )
        if cluster.node_rank >= cluster.nodes:
            raise UsageError(
                f"nodeRank {cluster.node_rank} is not below the cluster's {cluster.nodes} nodes"
            )
        if names := load_secrets(os.environ):
            self.log(f"secrets from the credential: {', '.join(names)}")
        identity = read_identity(self.options.image_file)
        self.status.host = identity.host
        self.status.image = identity.image
        check_identity(cluster, identity)
        self.log(f"host: {identity.host}")
        self._configure_walrus(cluster)
        self._sandbox = self._find_sandbox()

    def _find_sandbox(self) -> Sandbox | None:
        """The sandbox the job's code runs in; refuses the job where there is none."""
        if os.environ.get(UNSAFE_ENV) == "1":
            self.log(
                f"WARNING: {UNSAFE_ENV}=1: the job's code runs as this agent, with its files, "
                "processes and credentials within reach"
            )
            return None
        try:
            sandbox = Sandbox.find(network=True)
        except SandboxUnavailable as exc:
            raise SandboxUnavailable(
                exc.message.replace("the recorded code", "the job's code"),
                hint="install bubblewrap and allow unprivileged user namespaces on the node "
                f"(the okai NixOS module does both), or set {UNSAFE_ENV}=1 in the agent's "
                "environment to run a job you trust as the agent",
            ) from None
        home = self.state_dir / JOB_HOME
        home.mkdir(mode=0o700, exist_ok=True)
        return replace(sandbox, readable=(self.options.image_file,), home=home)

    def _configure_walrus(self, cluster: ClusterFile) -> None:
        """Point this process and torchrun's workers at the cluster's Walrus endpoints."""
        # Without a home of its own, okai would keep its cache in the working directory.
        os.environ.setdefault("OKAI_HOME", str(self.state_dir / "home"))
        if cluster.provider:
            os.environ[PROVIDER_ENV] = cluster.provider
        walrus = cluster.walrus
        if walrus is None:
            return
        if walrus.network:
            os.environ["OKAI_NETWORK"] = walrus.network
        if walrus.aggregators:
            os.environ["OKAI_WALRUS_AGGREGATORS"] = ",".join(walrus.aggregators)
        if walrus.publisher:
            os.environ["OKAI_WALRUS_PUBLISHER"] = walrus.publisher

    def _train(self, job: JobSpec, cluster: ClusterFile) -> None:
        run_dir = self.run_dir(cluster)
        receipt_path = run_dir / RECEIPT_FILE
        self.status.state = NodeState.RUNNING
        self._save()
        if receipt_path.exists():
            # An earlier agent finished training and stopped before it could publish.
            self.log("the run has a receipt already: publishing it")
            receipt = Receipt.load(receipt_path)
        else:
            network = cluster.walrus.network if cluster.walrus else None
            options = LaunchOptions(
                source=SourceSpec.walrus(network or os.environ.get("OKAI_NETWORK")),
                nnodes=cluster.nodes,
                rendezvous=Rendezvous(
                    endpoint=cluster.rendezvous.endpoint,
                    run_id=cluster.run_id,
                    node_rank=cluster.node_rank,
                    local_addr=cluster.local_addr,
                    hosts_store=cluster.node_rank == 0,
                    join_timeout=cluster.join_timeout,
                ),
                run_dir=run_dir,
                max_restarts=cluster.max_restarts,
                env=self._job_env(cluster),
                sandbox=self._sandbox,
            )
            self.log(f"starting torchrun: {job.procs_per_node} process(es) on this node")
            result = launch(
                job, options, source_name=self.options.job_file, progress=self._progress
            )
            self._save()  # the last progress, which the throttle may have held back
            if result.receipt is None:
                self._finish(None)
                return
            receipt = result.receipt
        self.status.hosts_rank0 = True
        self._finish(self._publish(cluster, run_dir, receipt))

    def _job_env(self, cluster: ClusterFile) -> dict[str, str]:
        """What the workers need beyond the sandbox's allow-list: where Walrus is, this
        node's mark (for `okai cluster down`), and, for rank 0's receipt, the identity file
        this agent checked and the image digest and flake revision of the cluster's
        expectation, which `_check` matched against the running system (an image carries
        neither). Never a credential: the job reads public blobs and stores nothing."""
        env = {
            name: value
            for name, value in os.environ.items()
            if (name in _JOB_VARIABLES or name.startswith("OKAI_WALRUS_"))
            and not is_secret_name(name)
        }
        env[IMAGE_FILE_ENV] = str(self.options.image_file)
        if cluster.image is not None and cluster.image.sha256 is not None:
            env[IMAGE_DIGEST_ENV] = str(cluster.image.sha256)
        if cluster.image is not None and cluster.image.flake_revision is not None:
            env[IMAGE_FLAKE_REVISION_ENV] = cluster.image.flake_revision
        return env

    def _finish(self, outputs: Outputs | None) -> None:
        self.status.outputs = outputs
        self.status.state = NodeState.FINISHED
        self.status.finished_at = utc_now()
        self._save()
        self.log("finished" + (" (this node hosted rank 0)" if self.status.hosts_rank0 else ""))

    # --- outputs -----------------------------------------------------------------------------

    def _publish(self, cluster: ClusterFile, run_dir: Path, receipt: Receipt) -> Outputs:
        """Check the outputs, then store model and receipt on Walrus and read them back."""
        model_path = run_dir / receipt.model_file
        receipt_path = run_dir / RECEIPT_FILE
        model_sha256 = Digest.of_file(model_path)
        if model_sha256 != receipt.model_sha256:
            raise IntegrityError(f"the model {model_path}", receipt.model_sha256, model_sha256)
        outputs = Outputs(
            model_sha256=model_sha256,
            receipt_sha256=Digest.of_file(receipt_path),
            job_sha256=receipt.job_sha256,
        )
        if not cluster.publish:
            outputs.publish_error = "publishing is turned off in the cluster file"
            return outputs
        try:
            outputs.model = self._store(model_path, Digest(outputs.model_sha256))
            outputs.receipt = self._store(receipt_path, Digest(outputs.receipt_sha256))
        except OkaiError as exc:
            # Training succeeded; the files stay in the run directory for SSH retrieval.
            outputs.model = outputs.receipt = None
            outputs.publish_error = exc.message
            self.log(f"could not store the outputs on Walrus: {exc.message}")
        return outputs

    def _store(self, path: Path, digest: Digest) -> StoredFile:
        from okai.walrus.client import WalrusClient  # the network client, only on rank 0's node

        settings = load_settings(os.environ.get("OKAI_NETWORK"))
        if not settings.network.walrus_publisher:
            raise OperationalError(f"no Walrus publisher is configured ({settings.network.name})")
        with WalrusClient.from_network(settings.network, settings.secrets) as client:
            self.log(f"storing {path.name} on Walrus")
            stored = client.store_file(path)
            if stored.sha256 != digest:
                raise IntegrityError(f"{path.name} as sent to Walrus", digest, stored.sha256)
            check = path.with_name(f".{path.name}.readback")
            try:
                client.read_to_file(stored.blob_id, digest, check)
            finally:
                check.unlink(missing_ok=True)
        self.log(f"stored {path.name}: blob {stored.blob_id} ({digest})")
        return StoredFile(blob_id=stored.blob_id, sha256=digest, size=stored.size)

    # --- reporting ---------------------------------------------------------------------------

    def _progress(self, update: Progress) -> None:
        self.status.hosts_rank0 = True
        self.status.progress = ProgressInfo(
            epoch=update.epoch,
            epochs=update.epochs,
            step=update.step,
            total_steps=update.total_steps,
            loss=update.loss,
            samples_per_second=update.samples_per_second,
            advice=update.advice,
        )
        now = time.monotonic()
        if now - self._last_progress >= PROGRESS_EVERY_S:
            self._last_progress = now
            self._save()

    def run_dir(self, cluster: ClusterFile) -> Path:
        return self.state_dir / RUNS_DIR / cluster.run_id

    def _save(self) -> None:
        write_status(self.state_dir, self.status)

    def log(self, message: str) -> None:
        """A line in `<state dir>/agent.log` (and on stderr, which the journal keeps).

        Messages quote jobs, records and peers: inert, so the log stays one line each."""
        message = inert(message)
        line = f"{utc_now()} {message}\n"
        with contextlib.suppress(OSError), (self.state_dir / AGENT_LOG).open("a") as log:
            log.write(line)
        print(f"okai-node: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _only_agent(state_dir: Path) -> Iterator[None]:
    """Hold the state dir's lock: two agents must never drive one node's status and run."""
    with (state_dir / LOCK_FILE).open("a") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(
                f"another node agent is running on {state_dir}",
                hint="`okai node status` shows what it is doing",
            ) from None
        yield


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM into an exception, so torchrun and its workers are stopped too."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        raise AgentStopped(f"stopped by signal {signal.Signals(signum).name}")

    previous: dict[signal.Signals, Callable[[int, FrameType | None], object] | int | None] = {}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        previous[signum] = signal.signal(signum, stop)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_agent(options: AgentOptions) -> NodeStatus:
    """Run the agent once (what `okai node run` does)."""
    return Agent(options).run()
