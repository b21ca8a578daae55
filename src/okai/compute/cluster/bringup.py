"""Bringing a cluster up and down: create the nodes, deliver the run, wait, fetch.

1. `create`: the backend makes the nodes, recording every resource in the
   cluster state file (`okai.compute.state`) before and after it exists.
2. Each node is asked who it is (`okai node info`): its address on the
   cluster network. Rank 0's address becomes the rendezvous host.
3. Delivery, per node and in this order: `peers`, `job.json`, the secrets,
   `cluster.json` (whose arrival starts the agent), then the agent is started.
4. Waiting (`okai.compute.cluster.wait`), then fetching
   (`okai.compute.cluster.fetch`).

Any failure or signal (Ctrl-C, SIGTERM, SIGHUP: `okai.compute.interrupt`)
before the job has ended rolls back every resource made, and the state file
records why the cluster stopped. A job that fails leaves the cluster up for
`okai cluster logs`, until `okai cluster down`.
"""

from __future__ import annotations

import contextlib
from typing import Any

from okai.compute.channel import ChannelError, NodeChannel
from okai.compute.cluster.errors import JobFailed
from okai.compute.cluster.events import Events
from okai.compute.cluster.fetch import RunOutcome, fetch_run
from okai.compute.cluster.plan import (
    cluster_file,
    member_addresses,
    new_run_id,
    node_secrets,
    rendezvous,
)
from okai.compute.cluster.request import Backend, ClusterRequest
from okai.compute.cluster.wait import Clock, wait_for_job, wait_reachable
from okai.compute.node.files import CLUSTER_FILE, JOB_FILE, PEERS_FILE, peers_text
from okai.compute.rollback import roll_back
from okai.compute.state import ClusterState, ClusterStatus
from okai.config import Settings

KEPT_RUN_STATES = ("failed", "fetching", "finished")
"""Run states whose nodes hold what the user needs: kept until `down`."""


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
    clock = clock or Clock()
    channels = backend.channels(state)
    wait_s = request.node_wait_s if request.node_wait_s is not None else backend.ready_timeout_s
    infos = wait_reachable(channels, wait_s, events, clock)
    run_id = new_run_id(request.job)
    meet = rendezvous(infos, backend.rendezvous_port(state), run_id)
    state.details["run"] = {
        "runId": run_id,
        "jobName": request.job.name,
        "jobSha256": request.job.digest(),
        "rendezvous": meet.endpoint,
        "state": "running",
    }
    state.save()
    addresses = member_addresses(state, infos)
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
        document = cluster_file(request, state, channel.rank, meet, info.address)
        channel.write_job_file(CLUSTER_FILE, document.canonical_bytes())
    for channel in channels:
        channel.start_agent()
    try:
        statuses = wait_for_job(channels, request, run_id, events, state.name, clock)
    except JobFailed as failed:
        _record_run(state, state="failed", error=failed.message)
        _stop_all(channels)
        raise
    _record_run(state, state="fetching")
    outcome = fetch_run(channels, statuses, request, settings, state.name, run_id, events)
    _record_run(state, state="finished", runDir=str(outcome.run_dir))
    return outcome


def down(state: ClusterState, backend: Backend) -> None:
    """Remove everything the cluster's state file records (also after a crash)."""
    backend.destroy(state)


def _record_run(cluster: ClusterState, **values: Any) -> None:
    run = dict(cluster.details.get("run") or {})
    run.update(values)
    cluster.details["run"] = run
    cluster.save()


def _stop_all(channels: list[NodeChannel]) -> None:
    for channel in channels:
        with contextlib.suppress(ChannelError):
            channel.stop_agent()
