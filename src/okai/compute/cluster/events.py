"""What the cluster layer reports while it works, for the CLI to draw."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from okai.compute.node.status import NodeStatus, ProgressInfo


@dataclass(frozen=True)
class NodeView:
    """One node as `up` and `status` show it: its agent's state, or why it is unknown."""

    rank: int
    state: str
    status: NodeStatus | None
    note: str | None = None


@dataclass(frozen=True)
class ClusterProgress:
    """What `up` reports while it waits."""

    nodes: tuple[NodeView, ...]
    progress: ProgressInfo | None


@dataclass
class Events:
    """Where the cluster layer reports to (the CLI draws these)."""

    report: Callable[[str], None] = lambda message: None
    progress: Callable[[ClusterProgress], None] = lambda update: None
