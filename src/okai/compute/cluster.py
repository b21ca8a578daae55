"""Clusters, whatever the provider: bring nodes up, run the job on them, fetch the run, tear down.

A `Backend` (the local provider, Fluence) only creates and removes nodes and
hands out a `NodeChannel` per node; everything else happens here, the same way
for all of them:

1. `create`: the backend makes the nodes, recording every resource in the
   cluster state file (`okai.compute.state`) before and after it exists.
2. Each node is asked who it is (`okai node info`): its address on the
   cluster network. Rank 0's address becomes the rendezvous host.
3. Delivery, per node and in this order: `peers`, `job.json`, `cluster.json`
   (whose arrival starts the agent), then the agent is started.
4. Waiting: every node's status is read in turn; rank 0's progress is reported.
   An agent that died without a word is started again (it rejoins the run and
   torchrun resumes from checkpoints), up to `node_restarts` times per node; a
   node that reports a failure fails the job and the others are stopped.
5. Fetching: the node that hosted rank 0 names its model and receipt (blob IDs
   on Walrus and SHA-256). Both are read from Walrus, verified, and written with
   the rest of that node's run directory (job, metrics, logs) to
   `runs/<run id>/`; other nodes' logs go to `runs/<run id>/nodes/`. Without
   Walrus, the files that came over the channel are checked against the same
   digests.

Any failure or signal (Ctrl-C, SIGTERM, SIGHUP: `okai.compute.interrupt`)
before the job has ended rolls back every resource made, and the state file
records why the cluster stopped. A job that fails leaves the cluster up for
`okai cluster logs`, until `okai cluster down`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from okai.compute.channel import ChannelError, NodeChannel
from okai.compute.node.files import (
    CLUSTER_FILE,
    JOB_FILE,
    PEERS_FILE,
    ClusterFile,
    ImageExpectation,
    RendezvousSpec,
    WalrusEndpoints,
    peers_text,
)
from okai.compute.node.status import ErrorInfo, NodeState, NodeStatus, Outputs, ProgressInfo
from okai.compute.rollback import roll_back
from okai.compute.state import ClusterState, ClusterStatus
from okai.config import Settings
from okai.digest import Digest
from okai.errors import IntegrityError, OkaiError, OperationalError, UsageError
from okai.manifest import ImageManifest, JobSpec
from okai.provenance.receipt import Receipt
from okai.train.rundir import CHECKPOINTS_DIR, RECEIPT_FILE
from okai.train.rundir import JOB_FILE as RUN_JOB_FILE
from okai.walrus.tokens import TOKENS_ENV, PublisherTokens

AGENT_GONE = "AgentGone"
KEPT_RUN_STATES = ("failed", "fetching", "finished")
NODES_DIR = "nodes"


class JobFailed(OperationalError):
    """A node reported that the job failed; its error (and exit code) is carried over."""

    def __init__(self, rank: int, error: ErrorInfo, cluster: str) -> None:
        hint = (
            f"`okai cluster logs {cluster} --node {rank}` shows what happened; "
            f"`okai cluster down {cluster}` removes the cluster"
        )
        if error.hint:
            hint = f"{error.hint}\n{hint}"
        super().__init__(f"node {rank} failed: {error.message}", hint=hint)
        self.rank = rank
        self.error = error
        self.exit_code = error.exit_code  # type: ignore[assignment]


class NodeUnreachable(OperationalError):
    """A node stopped answering on its control channel."""


class Backend(Protocol):
    """What a provider does for a cluster: make nodes, reach them, remove them."""

    provider: str
    ready_timeout_s: float
    """How long a new node may take to answer on its channel."""

    def create(self, request: ClusterRequest) -> ClusterState:
        """Make the nodes, recording everything; roll back what was made on failure."""
        ...

    def channels(self, state: ClusterState) -> list[NodeChannel]:
        """One channel per node, in rank order."""
        ...

    def rendezvous_port(self, state: ClusterState) -> int: ...

    def destroy(self, state: ClusterState) -> None:
        """Remove everything the state file records; safe to repeat."""
        ...


@dataclass(frozen=True, kw_only=True)
class ClusterRequest:
    """What to run and how."""

    name: str
    job: JobSpec
    """The job as the nodes get it: its `nodes` and `procsPerNode` are the cluster's."""
    walrus: WalrusEndpoints | None = None
    image: ImageExpectation | None = None
    allow_unregistered_host: bool = False
    publish: bool = True
    runs_root: Path = Path("runs")
    max_restarts: int = 3
    """torchrun's restarts of a failed worker group, on each node."""
    node_restarts: int = 2
    """How often an agent that died is started again, per node."""
    join_timeout: int = 600
    node_wait_s: float | None = None
    """How long new nodes may take to answer on their channel (None: the backend's default)."""
    timeout_s: float | None = None
    """Longest the job may take once delivered; None waits as long as it runs."""
    poll_s: float = 1.0
    unreachable_s: float = 120.0
    """How long a node may fail to answer before the job is given up."""

    @property
    def nodes(self) -> int:
        return self.job.nodes


@dataclass(frozen=True)
class NodeView:
    rank: int
    state: str
    status: NodeStatus | None
    note: str | None = None


@dataclass(frozen=True)
class ClusterProgress:
    """What `up` reports while it waits."""

    nodes: tuple[NodeView, ...]
    progress: ProgressInfo | None


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


@dataclass
class Events:
    """Where the cluster layer reports to (the CLI draws these)."""

    report: Callable[[str], None] = lambda message: None
    progress: Callable[[ClusterProgress], None] = lambda update: None


@dataclass(frozen=True)
class Clock:
    """Time as the waits see it; tests pass a fake one to wait without sleeping."""

    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


# --- job and names ----------------------------------------------------------------------------


def cluster_job(job: JobSpec, nodes: int | None, procs_per_node: int | None) -> JobSpec:
    """The job as a cluster of `nodes` x `procs_per_node` runs it (the receipt records these)."""
    data = job.to_json()
    if nodes is not None:
        data["nodes"] = nodes
    if procs_per_node is not None:
        data["procsPerNode"] = procs_per_node
    return JobSpec.from_data(data, "the job with the cluster's size")


def default_name(job: JobSpec) -> str:
    """A cluster name from the job's: short enough for every provider's resource names."""
    slug = re.sub(r"[^a-z0-9]+", "-", job.name.lower()).strip("-")
    slug = slug if slug[:1].isalpha() else f"job-{slug}"
    return slug[:12].rstrip("-") or "job"


def new_run_id(job: JobSpec) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", job.name.lower()).strip("-")[:40] or "run"
    return f"{slug}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def walrus_endpoints(settings: Settings) -> WalrusEndpoints:
    """The Walrus endpoints of the configured network, as nodes will use them."""
    network = settings.network
    return WalrusEndpoints(
        network=network.name,
        aggregators=network.walrus_aggregators,
        publisher=network.walrus_publisher,
    )


NODE_TOKENS = 6
"""Publisher tokens a node gets: the model and the receipt, with room for retries."""


def node_secrets(settings: Settings) -> dict[str, str]:
    """The secrets the nodes need: publisher tokens, when the publisher wants them (rank 0's
    node stores the outputs, and which node hosts rank 0 is torchrun's choice). A token
    command runs here, never on a node."""
    tokens = PublisherTokens.from_secrets(settings.secrets)
    if tokens is None:
        return {}
    return {TOKENS_ENV: tokens.handover(NODE_TOKENS)}


def image_expectation(manifest_path: Path) -> ImageExpectation:
    """What nodes must run, from the image's `okai.image/v1` manifest."""
    manifest = ImageManifest.load(manifest_path)
    return ImageExpectation(
        system_toplevel=manifest.nixos.system_toplevel,
        nixpkgs_revision=manifest.nixos.nixpkgs_revision,
        flake_revision=manifest.nixos.flake_revision,
        sha256=manifest.sha256,
    )


def local_plan(request: ClusterRequest) -> dict[str, Any]:
    """What a local `up` would do: the dry run of the local provider."""
    return {
        "provider": "local",
        "cluster": request.name,
        "nodes": request.nodes,
        "procsPerNode": request.job.procs_per_node,
        "jobSha256": request.job.digest(),
        "job": request.job.to_json(),
        "walrus": None if request.walrus is None else request.walrus.to_json(),
    }


# --- up -------------------------------------------------------------------------------------


def up(
    request: ClusterRequest,
    backend: Backend,
    settings: Settings,
    events: Events | None = None,
    clock: Clock | None = None,
) -> RunOutcome:
    """Create the cluster, run the job on it, fetch the run directory.

    Rolls everything back on failure or a signal, except when the job itself
    failed on a node (`JobFailed`): that cluster stays for its logs.
    """
    events = events or Events()
    state: ClusterState | None = None
    try:
        state = backend.create(request)  # rolls back what it made if it fails
        return run_job(state, request, backend, settings, events, clock or Clock())
    except BaseException as exc:
        # A signal right after the create finished, before it handed the state back.
        made = state or ClusterState.made_here(request.name)
        if made is None or (state is None and made.status != ClusterStatus.UP):
            raise
        # Once the job has ended (failed, or finished and being fetched), the nodes hold
        # what the user needs to look into it: keep them until `down`.
        if (made.details.get("run") or {}).get("state") not in KEPT_RUN_STATES:
            roll_back(made, exc, lambda: backend.destroy(made), events.report)
        raise


def run_job(
    state: ClusterState,
    request: ClusterRequest,
    backend: Backend,
    settings: Settings,
    events: Events,
    clock: Clock | None = None,
) -> RunOutcome:
    """Deliver the job to the nodes of `state`, wait for it, fetch the run."""
    channels = backend.channels(state)
    wait_s = request.node_wait_s if request.node_wait_s is not None else backend.ready_timeout_s
    infos = _wait_reachable(channels, wait_s, events, clock or Clock())
    run_id = new_run_id(request.job)
    rendezvous = RendezvousSpec(
        host=str(infos[0]["address"]), port=backend.rendezvous_port(state), id=run_id
    )
    state.details["run"] = {
        "runId": run_id,
        "jobName": request.job.name,
        "jobSha256": request.job.digest(),
        "rendezvous": rendezvous.endpoint,
        "state": "running",
    }
    state.save()
    addresses = _member_addresses(state, infos)
    events.report(f"delivering run {run_id} to {len(channels)} node(s)")
    job_bytes = request.job.canonical_bytes()
    for channel in channels:
        channel.write_job_file(PEERS_FILE, peers_text(addresses).encode())
        channel.write_job_file(JOB_FILE, job_bytes)
    node_env = node_secrets(settings)
    if node_env:  # before cluster.json, whose arrival starts the agent
        events.report(f"delivering {', '.join(node_env)} to the nodes")
        for channel in channels:
            channel.write_secrets(node_env)
    for channel, info in zip(channels, infos, strict=True):
        document = cluster_file(request, state, channel.rank, rendezvous, str(info["address"]))
        channel.write_job_file(CLUSTER_FILE, document.canonical_bytes())
    for channel in channels:
        channel.start_agent()
    try:
        statuses = _wait_for_job(channels, request, run_id, events, state.name)
    except JobFailed as failed:
        _record_run(state, state="failed", error=failed.message)
        _stop_all(channels)
        raise
    _record_run(state, state="fetching")
    outcome = fetch_run(channels, statuses, request, settings, state.name, run_id, events)
    _record_run(state, state="finished", runDir=str(outcome.run_dir))
    return outcome


def cluster_file(
    request: ClusterRequest,
    state: ClusterState,
    rank: int,
    rendezvous: RendezvousSpec,
    address: str,
) -> ClusterFile:
    """The cluster file of node `rank`."""
    provider = state.provider
    return ClusterFile(
        cluster_id=state.name,
        nodes=request.nodes,
        node_rank=rank,
        rendezvous=rendezvous,
        local_addr=address,
        image=request.image,
        allow_unregistered_host=request.allow_unregistered_host,
        walrus=request.walrus,
        publish=request.publish,
        provider=provider,
        max_restarts=request.max_restarts,
        join_timeout=request.join_timeout,
    )


def _member_addresses(state: ClusterState, infos: list[dict[str, Any]]) -> list[str]:
    """Every address a member may send from: cluster addresses, then provider addresses."""
    found = [str(info["address"]) for info in infos]
    found += [node.address for node in state.nodes if node.address]
    return found


def _record_run(cluster: ClusterState, **values: Any) -> None:
    run = dict(cluster.details.get("run") or {})
    run.update(values)
    cluster.details["run"] = run
    cluster.save()


def _wait_reachable(
    channels: list[NodeChannel], timeout_s: float, events: Events, clock: Clock
) -> list[dict[str, Any]]:
    """Each node's `okai node info`, retried while nodes finish booting (`timeout_s` at most)."""
    started = clock.now()
    infos: dict[int, dict[str, Any]] = {}
    while True:
        last: ChannelError | None = None
        for channel in channels:
            if channel.rank in infos:
                continue
            try:
                infos[channel.rank] = _checked_info(channel, channel.info())
            except ChannelError as exc:
                last = exc
        if len(infos) == len(channels):
            return [infos[channel.rank] for channel in channels]
        elapsed = clock.now() - started
        missing = len(channels) - len(infos)
        if elapsed > timeout_s:
            assert last is not None
            raise NodeUnreachable(
                f"{missing} node(s) did not answer within {timeout_s:.0f} s: {last.message}",
                hint="the cluster is removed, so nothing of it stays billed; nodes that boot "
                f"slowly need a longer --node-wait (it was {timeout_s:.0f} s), and a node that "
                "never answers runs an image without the okai agent, or refuses your SSH key",
            )
        events.report(
            f"waiting for {missing} of {len(channels)} node(s) to answer: "
            f"{elapsed:.0f} s elapsed, {max(0.0, timeout_s - elapsed):.0f} s left of "
            f"{timeout_s:.0f} s"
        )
        clock.sleep(min(5.0, max(0.2, timeout_s / 60)))


def _checked_info(channel: NodeChannel, info: dict[str, Any]) -> dict[str, Any]:
    """A node's info, its address checked: it goes into every member's files."""
    address = info.get("address") if isinstance(info, dict) else None
    try:
        ipaddress.ip_address(str(address))
    except ValueError:
        raise OperationalError(
            f"{channel.describe()} reported {str(address)[:60]!r} as its address, "
            "which is not an IP address",
            hint="set OKAI_NODE_ADDRESS on the node to the address other members reach it at",
        ) from None
    return info


@dataclass
class _Watch:
    """What the wait loop remembers about one node."""

    restarts: int = 0
    grace_until: float = 0.0
    unreachable_since: float | None = None
    last_error: str | None = None
    status: NodeStatus | None = None


RESTART_GRACE_S = 60.0


def _wait_for_job(
    channels: list[NodeChannel],
    request: ClusterRequest,
    run_id: str,
    events: Events,
    cluster: str,
) -> list[NodeStatus]:
    deadline = None if request.timeout_s is None else time.monotonic() + request.timeout_s
    start_by = time.monotonic() + RESTART_GRACE_S
    watch = {channel.rank: _Watch() for channel in channels}
    while True:
        now = time.monotonic()
        for channel in channels:
            node = watch[channel.rank]
            try:
                node.status = channel.status()
                node.unreachable_since = None
            except ChannelError as exc:
                node.unreachable_since = node.unreachable_since or now
                node.last_error = exc.message
                if now - node.unreachable_since > request.unreachable_s:
                    raise NodeUnreachable(
                        f"{channel.describe()} has not answered for "
                        f"{request.unreachable_s:.0f} s: {exc.message}",
                        hint="the cluster is being removed; check the provider's console",
                    ) from exc
                continue
            _check_node(channel, node, run_id, request, events, cluster, now, start_by)
        views = tuple(_view(channel.rank, watch[channel.rank], run_id) for channel in channels)
        progress = next(
            (w.status.progress for w in watch.values() if w.status and w.status.progress), None
        )
        events.progress(ClusterProgress(views, progress))
        statuses = [watch[channel.rank].status for channel in channels]
        if all(
            s is not None and s.run_id == run_id and s.state == NodeState.FINISHED for s in statuses
        ):
            return [s for s in statuses if s is not None]
        if deadline is not None and now > deadline:
            raise OperationalError(
                f"the job did not finish within {request.timeout_s:.0f} s; "
                "the cluster is being removed",
                hint="raise --timeout, or run a smaller job",
            )
        time.sleep(request.poll_s)


def _check_node(
    channel: NodeChannel,
    node: _Watch,
    run_id: str,
    request: ClusterRequest,
    events: Events,
    cluster: str,
    now: float,
    start_by: float,
) -> None:
    status = node.status
    assert status is not None
    if status.run_id != run_id or status.state == NodeState.IDLE:
        if now > max(start_by, node.grace_until):
            raise JobFailed(
                channel.rank,
                ErrorInfo(
                    type="AgentNotStarted",
                    message=f"the agent did not start within {RESTART_GRACE_S:.0f} s",
                    hint="on an okai image, `journalctl -u okai-node` on the node says why",
                ),
                cluster,
            )
        return
    if status.state != NodeState.FAILED or now < node.grace_until:
        return
    error = status.error or ErrorInfo(type="Unknown", message="the node failed")
    if error.type == AGENT_GONE and node.restarts < request.node_restarts:
        node.restarts += 1
        node.grace_until = now + RESTART_GRACE_S
        events.report(
            f"{channel.describe()}: the agent died; starting it again "
            f"({node.restarts}/{request.node_restarts}), it rejoins the run"
        )
        channel.start_agent()
        return
    raise JobFailed(channel.rank, error, cluster)


def _view(rank: int, node: _Watch, run_id: str) -> NodeView:
    status = node.status
    if node.unreachable_since is not None:
        return NodeView(rank, "unreachable", status, node.last_error)
    if status is None or status.run_id != run_id:
        return NodeView(rank, "starting", status)
    if status.state == NodeState.FAILED and time.monotonic() < node.grace_until:
        return NodeView(rank, "restarting", status)
    return NodeView(rank, status.state.value, status)


def _stop_all(channels: list[NodeChannel]) -> None:
    for channel in channels:
        with contextlib.suppress(ChannelError):
            channel.stop_agent()


# --- fetching ---------------------------------------------------------------------------------


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


# --- status, logs, down -----------------------------------------------------------------------


def node_views(state: ClusterState, backend: Backend) -> list[NodeView]:
    """Every node's agent status, or why it could not be read."""
    if state.status not in (ClusterStatus.UP,):
        return [NodeView(n.rank, state.status.value, None) for n in state.nodes]
    views = []
    for channel in backend.channels(state):
        try:
            status = channel.status()
        except ChannelError as exc:
            views.append(NodeView(channel.rank, "unreachable", None, exc.message))
            continue
        views.append(NodeView(channel.rank, status.state.value, status))
    return views


def logs(
    state: ClusterState,
    backend: Backend,
    *,
    node: int | None = None,
    follow: bool = False,
    lines: int | None = None,
) -> Iterator[str]:
    """Log lines of one node, or of each in turn (`[node N]` before every line)."""
    if state.status != ClusterStatus.UP:
        raise UsageError(
            f"cluster {state.name} is {state.status.value}: its nodes are gone",
            hint="the fetched run directory keeps the logs of a finished run",
        )
    channels = backend.channels(state)
    if node is not None:
        chosen = [c for c in channels if c.rank == node]
        if not chosen:
            raise UsageError(f"cluster {state.name} has no node {node} (0 to {len(channels) - 1})")
        yield from chosen[0].logs(follow=follow, lines=lines)
        return
    if follow and len(channels) > 1:
        yield from _interleave(channels, lines)
        return
    for channel in channels:
        for line in channel.logs(follow=False, lines=lines):
            yield f"[node {channel.rank}] {line}"


def _interleave(channels: list[NodeChannel], lines: int | None) -> Iterator[str]:
    """Follow every node at once, lines tagged by node, until all have ended."""
    import queue
    import threading

    done = object()
    out: queue.Queue[object] = queue.Queue()

    def pump(channel: NodeChannel) -> None:
        try:
            for line in channel.logs(follow=True, lines=lines):
                out.put(f"[node {channel.rank}] {line}")
        except ChannelError as exc:
            out.put(f"[node {channel.rank}] (log stream ended: {exc.message})")
        finally:
            out.put(done)

    for channel in channels:
        threading.Thread(target=pump, args=(channel,), daemon=True).start()
    remaining = len(channels)
    while remaining:
        item = out.get()
        if item is done:
            remaining -= 1
        else:
            yield str(item)


def down(state: ClusterState, backend: Backend) -> None:
    """Remove everything the cluster's state file records (also after a crash)."""
    backend.destroy(state)


@dataclass(frozen=True)
class ClusterSummary:
    state: ClusterState
    nodes: list[NodeView] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        state = self.state
        return {
            "name": state.name,
            "provider": state.provider,
            "status": state.status.value,
            "error": state.error,
            "run": state.details.get("run"),
            "resources": len(state.live_resources()),
            "nodes": [
                {
                    "rank": view.rank,
                    "address": next((n.address for n in state.nodes if n.rank == view.rank), None),
                    "state": view.state,
                    "note": view.note,
                    "agent": None if view.status is None else view.status.to_json(),
                }
                for view in self.nodes
            ],
        }
