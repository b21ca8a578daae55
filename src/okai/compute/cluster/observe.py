"""Looking at a cluster that exists: each node's agent, a summary, the nodes' logs."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from okai.compute.channel import ChannelError, NodeChannel
from okai.compute.cluster.events import NodeView
from okai.compute.cluster.request import Backend
from okai.compute.state import ClusterState, ClusterStatus
from okai.errors import UsageError


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


@dataclass(frozen=True)
class ClusterSummary:
    """`okai cluster status`: the state file and, while it is up, each node's agent."""

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
