"""The local provider: a cluster's nodes as process groups on this machine.

Each node is a folder, `.okai/clusters/<name>/node-<rank>/`, used as the
agent's state dir, and a `python -m okai node run` process started on it
(`LocalChannel`), with torchrun and its workers below it. Node `rank` has the
loopback address 127.0.0.1 + rank (Linux routes all of 127/8 to the loopback
interface), as separate machines have addresses of their own: torchrun tells
nodes apart by address and process ID, and a sandboxed torchrun has the same
process ID on every node. The nodes rendezvous at node 0's address on a free
port and read their data from the Walrus endpoints of the configured network
(the local stack's server by default), each with its own cache.

Every process of a node carries a random token of that node in its
environment (`OKAI_NODE_MARK`, see `okai.compute.marks`), recorded in the
cluster state file; `down` finds the processes to stop by that token, so it
stops exactly the cluster's processes (agents, torchrun, workers), also after
`okai` itself crashed, and never one that merely reuses a recorded PID.
"""

from __future__ import annotations

import ipaddress
import secrets
import shutil
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from okai.compute.channel import LocalChannel, NodeChannel
from okai.compute.cluster.request import ClusterRequest
from okai.compute.marks import MARK_ENV, stop_marked
from okai.compute.node.host import ADDRESS_ENV
from okai.compute.rollback import failure_reason
from okai.compute.state import ClusterState, ClusterStatus, NodeRecord, clusters_dir
from okai.errors import OperationalError
from okai.processes import Launched
from okai.train.receipt import IMAGE_FILE

PROVIDER = "local"
LOOPBACK = "127.0.0.1"
FOLDER = "folder"
PROCESS = "process"


class LocalBackend:
    """Creates, reaches and removes local clusters (see the module docstring)."""

    provider = PROVIDER
    ready_timeout_s = 30.0

    def __init__(
        self,
        *,
        root: Path | None = None,
        image_file: Path = IMAGE_FILE,
        python: str = sys.executable,
        report: Callable[[str], None] | None = None,
    ) -> None:
        self.root = root
        self.image_file = image_file
        self.python = python
        self._report = report or (lambda message: None)

    def folder(self, name: str) -> Path:
        return clusters_dir(self.root) / name

    def plan(self, request: ClusterRequest) -> dict[str, Any]:
        """What `create` would make (the dry run): nothing is rented, so only the request."""
        return {
            "provider": PROVIDER,
            "cluster": request.name,
            "nodes": request.nodes,
            "procsPerNode": request.job.procs_per_node,
            "jobSha256": request.job.digest(),
            "job": request.job.to_json(),
            "walrus": None if request.walrus is None else request.walrus.to_json(),
        }

    def create(self, request: ClusterRequest) -> ClusterState:
        folder = self.folder(request.name)
        state = ClusterState.create(
            request.name,
            PROVIDER,
            details={"folder": str(folder.resolve()), "rendezvousPort": free_port()},
            root=self.root,
        )
        try:
            if folder.exists():  # left by a cluster of this name that was removed
                shutil.rmtree(folder)
            nodes = []
            for rank in range(request.nodes):
                path = (folder / f"node-{rank}").resolve()
                record = state.intend(FOLDER, path.name)
                path.mkdir(parents=True)
                state.created(record, str(path))
                nodes.append(
                    NodeRecord(
                        rank=rank,
                        name=f"{request.name}-node-{rank}",
                        address=node_address(rank),
                        resource_id=str(path),
                        attrs={"token": secrets.token_hex(16)},
                    )
                )
            state.set_nodes(nodes)
            state.set_status(ClusterStatus.UP)
            self._report(f"made {request.nodes} local node(s) in {folder}")
        except BaseException as exc:
            state.set_status(ClusterStatus.FAILED, failure_reason(exc))
            self.destroy(state)
            raise
        return state

    def channels(self, state: ClusterState) -> list[NodeChannel]:
        return [self.channel(state, node) for node in sorted(state.nodes, key=lambda n: n.rank)]

    def channel(self, state: ClusterState, node: NodeRecord) -> LocalChannel:
        path = Path(str(node.resource_id))
        env = {
            MARK_ENV: str(node.attrs["token"]),
            "OKAI_HOME": str(path / "home"),
            ADDRESS_ENV: node_address(node.rank),
        }

        def record(launched: Launched) -> None:
            state.add(PROCESS, f"{node.name}-agent", str(launched.pid), argv=list(launched.argv))

        return LocalChannel(
            node.rank,
            path,
            env=env,
            on_start=record,
            python=self.python,
            image_file=self.image_file,
        )

    def rendezvous_port(self, state: ClusterState) -> int:
        return int(state.details["rendezvousPort"])

    def destroy(self, state: ClusterState) -> None:
        """Stop every process of the cluster's nodes, remove their folders; safe to repeat."""
        if state.provider != PROVIDER:
            raise OperationalError(f"cluster {state.name} runs on {state.provider!r}, not locally")
        state.set_status(ClusterStatus.STOPPING, error=state.error)  # keeps why `up` failed
        for node in state.nodes:
            stopped = stop_marked(str(node.attrs.get("token", "")))
            if stopped:
                self._report(f"stopped {stopped} process(es) of node {node.rank}")
        for record in state.live_resources(PROCESS):
            state.removed(record)
        for record in state.live_resources(FOLDER):
            if record.id is not None:
                shutil.rmtree(record.id, ignore_errors=True)
                if Path(record.id).exists():
                    raise OperationalError(f"could not remove {record.id}")
            state.removed(record)
        folder = state.details.get("folder")
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
        state.set_status(ClusterStatus.STOPPED, error=state.error)


def node_address(rank: int) -> str:
    """Node `rank`'s loopback address: one of its own, as on separate machines."""
    return str(ipaddress.IPv4Address(LOOPBACK) + rank)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])
