"""The waits of a run: for new nodes to answer, then for the job to end.

Time comes from a `Clock`, so that every timing path (a node answering late,
one never answering, an agent that dies or never starts, a job past its
timeout) is tested without sleeping (tests/test_cluster_wait.py).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass

from okai.compute.channel import ChannelError, NodeChannel, NodeInfo
from okai.compute.cluster.errors import JobFailed, NodeUnreachable
from okai.compute.cluster.events import ClusterProgress, Events, NodeView
from okai.compute.cluster.request import ClusterRequest
from okai.compute.node.status import ErrorInfo, NodeState, NodeStatus
from okai.errors import OperationalError

AGENT_GONE = "AgentGone"
RESTART_GRACE_S = 60.0
"""How long an agent may take to start (and to report again after a restart)."""


@dataclass(frozen=True)
class Clock:
    """Time as the waits see it; tests pass a fake one to wait without sleeping."""

    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


def wait_reachable(
    channels: list[NodeChannel], timeout_s: float, events: Events, clock: Clock
) -> list[NodeInfo]:
    """Each node's `okai node info`, retried while nodes finish booting (`timeout_s` at most)."""
    started = clock.now()
    infos: dict[int, NodeInfo] = {}
    while True:
        last: ChannelError | None = None
        for channel in channels:
            if channel.rank in infos:
                continue
            try:
                infos[channel.rank] = checked_info(channel, channel.info())
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


def checked_info(channel: NodeChannel, info: NodeInfo) -> NodeInfo:
    """A node's info, its address checked: it goes into every member's files."""
    try:
        ipaddress.ip_address(info.address)
    except ValueError:
        raise OperationalError(
            f"{channel.describe()} reported {info.address[:60]!r} as its address, "
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


def wait_for_job(
    channels: list[NodeChannel],
    request: ClusterRequest,
    run_id: str,
    events: Events,
    cluster: str,
    clock: Clock,
) -> list[NodeStatus]:
    """Every node's status, in rank order, once all have finished run `run_id`.

    An agent that died is started again (`request.node_restarts` times per node);
    a node that reports a failure, or does not answer for `request.unreachable_s`,
    ends the wait with an error, as does `request.timeout_s`.
    """
    started = clock.now()
    deadline = None if request.timeout_s is None else started + request.timeout_s
    start_by = started + RESTART_GRACE_S
    watch = {channel.rank: _Watch() for channel in channels}
    while True:
        now = clock.now()
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
        views = tuple(_view(channel.rank, watch[channel.rank], run_id, now) for channel in channels)
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
        clock.sleep(request.poll_s)


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


def _view(rank: int, node: _Watch, run_id: str, now: float) -> NodeView:
    status = node.status
    if node.unreachable_since is not None:
        return NodeView(rank, "unreachable", status, node.last_error)
    if status is None or status.run_id != run_id:
        return NodeView(rank, "starting", status)
    if status.state == NodeState.FAILED and now < node.grace_until:
        return NodeView(rank, "restarting", status)
    return NodeView(rank, status.state.value, status)
