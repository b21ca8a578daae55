"""Planning a run: the job at the cluster's size, names, ranks, the rendezvous, each node's files.

Nothing here talks to a node: these are the documents and values the bring-up
(`okai.compute.cluster.bringup`) delivers.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from pathlib import Path

from okai.compute.channel import NodeInfo
from okai.compute.cluster.request import ClusterRequest
from okai.compute.node.files import ClusterFile, ImageExpectation, RendezvousSpec, WalrusEndpoints
from okai.compute.state import ClusterState
from okai.config import Settings
from okai.manifest import ImageManifest, JobSpec
from okai.walrus.tokens import TOKENS_ENV, PublisherTokens

NODE_TOKENS = 6
"""Publisher tokens a node gets: the model and the receipt, with room for retries."""


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


def rendezvous(infos: list[NodeInfo], port: int, run_id: str) -> RendezvousSpec:
    """Where the ranks meet: rank 0's address on the cluster network."""
    return RendezvousSpec(host=infos[0].address, port=port, id=run_id)


def member_addresses(state: ClusterState, infos: list[NodeInfo]) -> list[str]:
    """Every address a member may send from: cluster addresses, then provider addresses."""
    found = [info.address for info in infos]
    found += [node.address for node in state.nodes if node.address]
    return found


def cluster_file(
    request: ClusterRequest,
    state: ClusterState,
    rank: int,
    rendezvous: RendezvousSpec,
    address: str,
) -> ClusterFile:
    """The cluster file of node `rank`."""
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
        provider=state.provider,
        max_restarts=request.max_restarts,
        join_timeout=request.join_timeout,
    )
