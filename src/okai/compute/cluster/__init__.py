"""Clusters, whatever the provider: bring nodes up, run the job on them, fetch the run, tear down.

A `Backend` (the local provider, `okai.compute.local`; Fluence,
`okai.compute.fluence.backend`) only creates and removes nodes and hands out a
`NodeChannel` per node; everything else happens here, the same way for all:

    request   ClusterRequest (what to run, how) and the Backend protocol
    plan      the job at the cluster's size, names, rendezvous, each node's cluster file
    bringup   up / run_job / down: create, deliver, wait, fetch; roll back on failure
    wait      waiting for nodes to answer and for the job to end, on an injectable Clock
    fetch     the run directory brought home, every output checked against its digest
    observe   node views, the status summary, the nodes' logs
    events    what the layer reports while it works (NodeView, ClusterProgress, Events)
    errors    JobFailed, NodeUnreachable

While waiting, an agent that died without a word is started again (it rejoins
the run and torchrun resumes from checkpoints), up to `node_restarts` times per
node; a node that reports a failure fails the job and the others are stopped.
"""

from okai.compute.cluster.bringup import down, up
from okai.compute.cluster.errors import JobFailed, NodeUnreachable
from okai.compute.cluster.events import ClusterProgress, Events, NodeView
from okai.compute.cluster.fetch import RunOutcome
from okai.compute.cluster.observe import ClusterSummary, logs, node_views
from okai.compute.cluster.plan import (
    NODE_TOKENS,
    cluster_job,
    default_name,
    image_expectation,
    walrus_endpoints,
)
from okai.compute.cluster.request import Backend, ClusterRequest
from okai.compute.cluster.wait import Clock

__all__ = [
    "NODE_TOKENS",
    "Backend",
    "Clock",
    "ClusterProgress",
    "ClusterRequest",
    "ClusterSummary",
    "Events",
    "JobFailed",
    "NodeUnreachable",
    "NodeView",
    "RunOutcome",
    "cluster_job",
    "default_name",
    "down",
    "image_expectation",
    "logs",
    "node_views",
    "up",
    "walrus_endpoints",
]
