"""The node side of a cluster: the agent that runs on every node, and its files.

files    where job files live on a node; the cluster file `okai.cluster/v1`
status   the agent's status file `okai.node-status/v1`
host     the node's image identity (checked) and addresses
agent    `okai node run`: check, train with torchrun, publish rank 0's outputs
logs     `okai node logs`: the agent's and the run's logs, or following them
"""

from okai.compute.node.agent import AgentOptions, AgentStopped, run_agent
from okai.compute.node.files import (
    CLUSTER_FILE,
    DEFAULT_RENDEZVOUS_PORT,
    DELIVERY_ORDER,
    JOB_DIR,
    JOB_FILE,
    PEERS_FILE,
    RUNS_DIR,
    ClusterFile,
    ImageExpectation,
    RendezvousSpec,
    WalrusEndpoints,
    default_state_dir,
    peers_text,
)
from okai.compute.node.host import ImageMismatch, UnregisteredHost, node_info
from okai.compute.node.status import NodeState, NodeStatus, Outputs, read_status

__all__ = [
    "CLUSTER_FILE",
    "DEFAULT_RENDEZVOUS_PORT",
    "DELIVERY_ORDER",
    "JOB_DIR",
    "JOB_FILE",
    "PEERS_FILE",
    "RUNS_DIR",
    "AgentOptions",
    "AgentStopped",
    "ClusterFile",
    "ImageExpectation",
    "ImageMismatch",
    "NodeState",
    "NodeStatus",
    "Outputs",
    "RendezvousSpec",
    "UnregisteredHost",
    "WalrusEndpoints",
    "default_state_dir",
    "node_info",
    "peers_text",
    "read_status",
    "run_agent",
]
