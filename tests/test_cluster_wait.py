"""The cluster's waits, every timing path, in fake time.

`okai.compute.cluster.wait` takes its time from a `Clock`; here the clock moves
only when the code sleeps, and each node answers from a script written in that
time: what it says from which second on. Nodes that answer late, never answer,
vanish for a while, die and are started again, never start, or fail: each is
waited out as it would be on a real cluster, in no real time. The same loops
against real agents are in test_cluster_local.py and test_cluster_fluence.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from okai.compute.channel import ChannelError, NodeChannel, NodeInfo
from okai.compute.cluster import ClusterProgress, ClusterRequest, Events, JobFailed, NodeUnreachable
from okai.compute.cluster.wait import RESTART_GRACE_S, Clock, wait_for_job, wait_reachable
from okai.compute.node.status import ErrorInfo, NodeState, NodeStatus, ProgressInfo
from okai.errors import ExitCode, OperationalError
from okai.manifest import JobSpec

RUN = "wait-run-1"
DIGEST = "sha256:" + "ab" * 32


class FakeClock:
    """Time that passes only when the code sleeps."""

    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds

    def clock(self) -> Clock:
        return Clock(now=self.now, sleep=self.sleep)


Answer = NodeStatus | ChannelError


class ScriptedNode:
    """A node whose answers follow a script in fake time.

    `answers` maps an instant to what `status()` says from then on (a status, or a
    channel error for a node that does not answer); `info()` fails until
    `reachable_at`. Starting the agent may rewrite the script (`on_start`), as a
    restarted agent rewrites its status file.
    """

    def __init__(
        self,
        rank: int,
        clock: FakeClock,
        answers: Mapping[float, Answer],
        *,
        reachable_at: float = 0.0,
        address: str | None = None,
        on_start: Callable[[ScriptedNode], None] | None = None,
    ) -> None:
        self.rank = rank
        self.clock = clock
        self.answers = dict(answers)
        self.reachable_at = reachable_at
        self.address = address or f"10.0.0.{rank + 1}"
        self.on_start = on_start
        self.started: list[float] = []

    def describe(self) -> str:
        return f"node {self.rank}"

    def info(self) -> NodeInfo:
        if self.clock.now() < self.reachable_at:
            raise ChannelError(f"node {self.rank}: ssh: connect to host: Connection refused")
        return NodeInfo(address=self.address, hostname=f"vm-{self.rank}")

    def status(self) -> NodeStatus:
        now = self.clock.now()
        answer = self.answers[max(t for t in self.answers if t <= now)]
        if isinstance(answer, ChannelError):
            raise answer
        return answer

    def start_agent(self) -> None:
        self.started.append(self.clock.now())
        if self.on_start is not None:
            self.on_start(self)

    def stop_agent(self) -> None:
        raise AssertionError("the waits never stop an agent")

    def write_job_file(self, name: str, data: bytes) -> None:
        raise AssertionError("the waits deliver nothing")

    def write_secrets(self, values: Mapping[str, str]) -> None:
        raise AssertionError("the waits deliver nothing")

    def logs(self, *, follow: bool, lines: int | None) -> Iterator[str]:
        raise AssertionError("the waits read no logs")

    def fetch_run(self, run_id: str, dest: Path, *, exclude: Sequence[str] = ()) -> None:
        raise AssertionError("the waits fetch nothing")


def status(state: NodeState, rank: int, **fields: object) -> NodeStatus:
    return NodeStatus.model_validate({"state": state, "run_id": RUN, "node_rank": rank, **fields})


def running(rank: int, step: int = 1) -> NodeStatus:
    return status(NodeState.RUNNING, rank, progress=ProgressInfo(epoch=0, step=step, loss=0.5))


def finished(rank: int) -> NodeStatus:
    return status(NodeState.FINISHED, rank)


def died(rank: int) -> NodeStatus:
    error = ErrorInfo(type="AgentGone", message="the node agent stopped without reporting an end")
    return status(NodeState.FAILED, rank, error=error)


def gone(rank: int) -> ChannelError:
    return ChannelError(f"node {rank}: ssh: connect to host: No route to host")


def request(**settings: object) -> ClusterRequest:
    job = JobSpec.model_validate(
        {
            "name": "wait",
            "model": {"builtin": "mlp"},
            "datasets": [{"manifestBlobId": "M" * 43, "sha256": DIGEST}],
            "nodes": 2,
        }
    )
    return ClusterRequest(name="wait", job=job, poll_s=1.0, **settings)  # type: ignore[arg-type]


class Recorder:
    """What the waits report, kept for the assertions."""

    def __init__(self) -> None:
        self.reports: list[str] = []
        self.updates: list[ClusterProgress] = []
        self.events = Events(report=self.reports.append, progress=self.updates.append)

    def states(self, rank: int) -> list[str]:
        """Node `rank`'s states as `up` showed them, repeats collapsed."""
        seen: list[str] = []
        for update in self.updates:
            state = update.nodes[rank].state
            if not seen or seen[-1] != state:
                seen.append(state)
        return seen


def wait_job(
    nodes: list[ScriptedNode], clock: FakeClock, recorder: Recorder, **settings: object
) -> list[NodeStatus]:
    channels: list[NodeChannel] = list(nodes)
    return wait_for_job(channels, request(**settings), RUN, recorder.events, "wait", clock.clock())


# --- nodes answering --------------------------------------------------------------------------


def test_a_node_that_answers_late_is_waited_for() -> None:
    clock = FakeClock()
    nodes = [ScriptedNode(0, clock, {}), ScriptedNode(1, clock, {}, reachable_at=42.0)]
    recorder = Recorder()
    infos = wait_reachable(list(nodes), 600.0, recorder.events, clock.clock())
    assert [info.address for info in infos] == ["10.0.0.1", "10.0.0.2"]
    assert 42.0 <= clock.t < 50.0, "no longer than the late node took"
    assert set(clock.sleeps) == {5.0}, "a long wait polls every 5 s"
    assert (
        recorder.reports[0]
        == "waiting for 1 of 2 node(s) to answer: 0 s elapsed, 600 s left of 600 s"
    )
    assert recorder.reports[-1].startswith("waiting for 1 of 2 node(s) to answer: 40 s elapsed")


def test_nodes_that_never_answer_end_the_wait_at_its_limit() -> None:
    clock = FakeClock()
    nodes = [ScriptedNode(0, clock, {}), ScriptedNode(1, clock, {}, reachable_at=float("inf"))]
    recorder = Recorder()
    with pytest.raises(NodeUnreachable) as caught:
        wait_reachable(list(nodes), 30.0, recorder.events, clock.clock())
    assert caught.value.message == (
        "1 node(s) did not answer within 30 s: node 1: ssh: connect to host: Connection refused"
    )
    assert "--node-wait (it was 30 s)" in (caught.value.hint or "")
    assert 30.0 < clock.t <= 30.5, "given up at the limit, not later"
    assert set(clock.sleeps) == {0.5}, "a short wait polls more often"


@pytest.mark.parametrize("address", ["not-an-ip", "10.0.0.1\n0.0.0.0/0", "10.0.0.1; rm -rf /"])
def test_a_bogus_address_is_refused_at_once_not_waited_out(address: str) -> None:
    clock = FakeClock()
    nodes = [ScriptedNode(0, clock, {}, address=address)]
    with pytest.raises(OperationalError, match="which is not an IP address") as caught:
        wait_reachable(list(nodes), 600.0, Recorder().events, clock.clock())
    assert not isinstance(caught.value, NodeUnreachable)
    assert clock.sleeps == []


def test_a_malformed_node_info_is_refused_with_what_is_wrong() -> None:
    with pytest.raises(OperationalError, match="node 3 answered `okai node info` with a malformed"):
        NodeInfo.parse({"hostname": "vm"}, "node 3")  # no address
    with pytest.raises(OperationalError, match="malformed interfaces"):
        NodeInfo.parse({"address": "10.0.0.1", "interfaces": "eth0"}, "node 3")
    info = NodeInfo.parse({"address": "10.0.0.1", "fromANewerAgent": 1}, "node 3")
    assert info.address == "10.0.0.1"


# --- the job ---------------------------------------------------------------------------------


def test_the_wait_ends_when_every_node_has_finished() -> None:
    clock = FakeClock()
    nodes = [
        ScriptedNode(0, clock, {0.0: running(0), 30.0: finished(0)}),
        ScriptedNode(
            1, clock, {0.0: status(NodeState.CHECKING, 1), 5.0: running(1), 50.0: finished(1)}
        ),
    ]
    recorder = Recorder()
    statuses = wait_job(nodes, clock, recorder)
    assert [(s.node_rank, s.state) for s in statuses] == [
        (0, NodeState.FINISHED),
        (1, NodeState.FINISHED),
    ]
    assert clock.t == 50.0 and set(clock.sleeps) == {1.0}
    assert recorder.states(0) == ["running", "finished"]
    assert recorder.states(1) == ["checking", "running", "finished"]
    assert recorder.updates[0].progress is not None and recorder.updates[0].progress.step == 1
    assert all(node.started == [] for node in nodes)


def test_a_job_past_its_timeout_is_given_up() -> None:
    clock = FakeClock()
    nodes = [ScriptedNode(0, clock, {0.0: running(0)}), ScriptedNode(1, clock, {0.0: running(1)})]
    with pytest.raises(OperationalError, match="did not finish within 100 s") as caught:
        wait_job(nodes, clock, Recorder(), timeout_s=100.0)
    assert "--timeout" in (caught.value.hint or "")
    assert 100.0 < clock.t <= 101.0


def test_a_node_silent_for_too_long_ends_the_wait() -> None:
    clock = FakeClock()
    nodes = [
        ScriptedNode(0, clock, {0.0: running(0)}),
        ScriptedNode(1, clock, {0.0: running(1), 20.0: gone(1)}),
    ]
    recorder = Recorder()
    with pytest.raises(NodeUnreachable, match=r"node 1 has not answered for 120 s: .*No route"):
        wait_job(nodes, clock, recorder, unreachable_s=120.0)
    assert 140.0 < clock.t <= 141.0, "counted from the first unanswered call"
    assert recorder.states(1) == ["running", "unreachable"]
    assert "No route to host" in (recorder.updates[-1].nodes[1].note or "")


def test_a_node_unreachable_for_a_while_is_waited_for() -> None:
    clock = FakeClock()
    nodes = [
        ScriptedNode(0, clock, {0.0: running(0), 80.0: finished(0)}),
        ScriptedNode(
            1, clock, {0.0: running(1), 20.0: gone(1), 60.0: running(1), 80.0: finished(1)}
        ),
    ]
    recorder = Recorder()
    wait_job(nodes, clock, recorder, unreachable_s=120.0)
    assert clock.t == 80.0
    assert recorder.states(1) == ["running", "unreachable", "running", "finished"]


def test_an_agent_that_died_is_started_again_and_the_run_goes_on() -> None:
    clock = FakeClock()

    def rejoin(node: ScriptedNode) -> None:  # the new agent rejoins the run, resumes
        now = clock.now()
        node.answers.update({now + 30.0: running(1, step=7), now + 90.0: finished(1)})

    nodes = [
        ScriptedNode(0, clock, {0.0: running(0), 200.0: finished(0)}),
        ScriptedNode(1, clock, {0.0: running(1), 10.0: died(1)}, on_start=rejoin),
    ]
    recorder = Recorder()
    statuses = wait_job(nodes, clock, recorder, node_restarts=2)
    assert statuses[1].state == NodeState.FINISHED
    assert nodes[1].started == [10.0] and nodes[0].started == []
    assert "node 1: the agent died; starting it again (1/2), it rejoins the run" in recorder.reports
    assert recorder.states(1) == ["running", "restarting", "running", "finished"]
    assert clock.t == 200.0


def test_an_agent_that_keeps_dying_fails_the_job_after_its_restarts() -> None:
    clock = FakeClock()
    nodes = [
        ScriptedNode(0, clock, {0.0: running(0)}),
        ScriptedNode(1, clock, {0.0: running(1), 10.0: died(1)}),
    ]
    recorder = Recorder()
    with pytest.raises(JobFailed) as caught:
        wait_job(nodes, clock, recorder, node_restarts=2)
    assert caught.value.rank == 1 and caught.value.error.type == "AgentGone"
    first, second = nodes[1].started
    assert first == 10.0 and second - first == RESTART_GRACE_S, "each restart gets its grace"
    assert clock.t == second + RESTART_GRACE_S
    assert "okai cluster logs wait --node 1" in (caught.value.hint or "")


def test_an_agent_that_never_starts_fails_the_job_after_the_grace() -> None:
    clock = FakeClock()
    idle = NodeStatus()  # no status file: the agent never ran
    nodes = [ScriptedNode(0, clock, {0.0: running(0)}), ScriptedNode(1, clock, {0.0: idle})]
    recorder = Recorder()
    with pytest.raises(
        JobFailed, match="node 1 failed: the agent did not start within 60 s"
    ) as caught:
        wait_job(nodes, clock, recorder)
    assert caught.value.error.type == "AgentNotStarted"
    assert RESTART_GRACE_S < clock.t <= RESTART_GRACE_S + 1.0
    assert recorder.states(1) == ["starting"]


def test_a_node_reporting_a_failure_fails_the_job_with_its_exit_code() -> None:
    clock = FakeClock()
    error = ErrorInfo(
        type="IntegrityError",
        message="shard 3 does not match its digest",
        hint="the dataset changed",
        exit_code=int(ExitCode.VERIFICATION_FAILED),
    )
    nodes = [
        ScriptedNode(0, clock, {0.0: running(0)}),
        ScriptedNode(1, clock, {0.0: running(1), 12.0: status(NodeState.FAILED, 1, error=error)}),
    ]
    with pytest.raises(JobFailed) as caught:
        wait_job(nodes, clock, Recorder())
    assert caught.value.message == "node 1 failed: shard 3 does not match its digest"
    assert caught.value.exit_code == ExitCode.VERIFICATION_FAILED
    assert (caught.value.hint or "").startswith("the dataset changed\n")
    assert nodes[1].started == [], "a reported failure is not restarted"
    assert clock.t == 12.0
