"""What a cluster is asked to run, and what a provider does for it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from okai.compute.channel import NodeChannel
from okai.compute.node.files import ImageExpectation, WalrusEndpoints
from okai.compute.state import ClusterState
from okai.manifest import JobSpec


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


class Backend(Protocol):
    """What a provider does for a cluster: make nodes, reach them, remove them.

    The providers: `okai.compute.local.LocalBackend` and
    `okai.compute.fluence.backend.FluenceBackend`.
    """

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
