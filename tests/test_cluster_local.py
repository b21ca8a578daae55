"""Local clusters end to end: real agents, torchrun, gloo and a real local Walrus server.

Every node is a `python -m okai node run` process group with its own state
dir and cache; the nodes read the demo dataset from a Walrus-compatible
server over HTTP and rank 0's node stores the model and receipt there. One
process per node spares the machine's two cores. The job runs in the agent's
bubblewrap sandbox (network shared) on one node as on several; a hostile
entry point gets none of the agent's credentials, and the sandbox changes no
byte of an honest model.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster_helpers import Stack, digits_stack
from conftest import run_okai
from okai.compute import cluster as clusters
from okai.compute.local import LocalBackend
from okai.compute.marks import kill_marked, marked_processes
from okai.compute.node import NodeState, read_status
from okai.compute.node.agent import JOB_HOME, UNSAFE_ENV
from okai.compute.node.files import SECRETS_CREDENTIAL
from okai.compute.state import ClusterState, ClusterStatus
from okai.config import load_settings
from okai.digest import Digest
from okai.manifest import EntrypointModel, JobSpec, ManifestRef
from okai.train import Receipt, digits_job

pytestmark = pytest.mark.slow

RUN_TIMEOUT = 400


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with digits_stack(tmp_path_factory.mktemp("cluster")) as ready:
        yield ready


def node_folders(stack: Stack, name: str) -> list[Path]:
    return sorted((stack.home / ".okai" / "clusters" / name).glob("node-*"))


def tokens(name: str) -> list[str]:
    return [str(node.attrs["token"]) for node in ClusterState.load(name).nodes]


def wait_until_running(stack: Stack, name: str, process: subprocess.Popen[str]) -> None:
    """Until every node's agent says running (the cluster's processes all exist)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        folders = node_folders(stack, name)
        if len(folders) == 2 and all(
            read_status(folder).state == NodeState.RUNNING for folder in folders
        ):
            return
        time.sleep(0.2)
    raise AssertionError("the nodes did not start running")


def start_up(stack: Stack, name: str) -> subprocess.Popen[str]:
    """`okai cluster up` in the background, on a job long enough to be stopped mid-training."""
    command = [sys.executable, "-m", "okai", "cluster", "up",
               str(stack.job_file(name, stack.long_job())), "--name", name]  # fmt: skip
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )


def assert_all_gone(name: str, marks: list[str]) -> None:
    state = ClusterState.load(name)
    assert state.status == ClusterStatus.STOPPED
    assert state.live_resources() == []
    for token in marks:
        assert marked_processes(token) == []


# --- the happy path -------------------------------------------------------------------------


def test_two_nodes_train_the_demo_and_leave_a_verified_run_dir(stack: Stack) -> None:
    job_file = stack.job_file("demo")
    done = run_okai(
        "--json", "cluster", "up", str(job_file), "--provider", "local",
        "--nodes", "2", "--procs-per-node", "1", "--name", "demo", timeout=RUN_TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    run_dir = stack.home / outcome["runDir"]
    assert run_dir == stack.home / "runs" / outcome["runId"]

    # What `okai record` needs: model, receipt and job, all consistent.
    receipt = Receipt.load(run_dir / "receipt.json")
    assert Digest.of_file(run_dir / "model.safetensors") == receipt.model_sha256
    assert Digest.of_file(run_dir / "job.json") == receipt.job_sha256
    assert receipt.run_id == outcome["runId"]
    assert (receipt.nodes, receipt.job.procs_per_node, receipt.world_size) == (2, 1, 2)
    assert receipt.provider == "local"
    assert receipt.host == "unregistered host" and receipt.image is None
    assert float(receipt.metrics["testAccuracy"]) > 0.8
    assert (run_dir / "metrics.jsonl").stat().st_size > 0
    assert (run_dir / "logs" / "torchrun.log").is_file()
    assert not (run_dir / "checkpoints").exists()
    other = run_dir / "nodes"
    assert len(list(other.glob("node-*/logs/torchrun.log"))) == 1

    # The model and receipt were stored on Walrus by rank 0's node, and read back from there.
    assert outcome["fetchedFrom"] == "walrus"
    with stack.client() as client:
        stored = client.read_bytes(outcome["modelBlobId"], Digest(outcome["modelSha256"]))
    assert stored == (run_dir / "model.safetensors").read_bytes()

    # Each node's sandboxed job read the dataset from Walrus into its own home's cache.
    for folder in node_folders(stack, "demo"):
        cached = list((folder / JOB_HOME / ".okai" / "cache").rglob("*"))
        assert any(p.is_file() for p in cached), f"{folder} fetched nothing"

    shown = run_okai("--json", "cluster", "status", "demo", check=True)
    status = json.loads(shown.stdout)
    assert status["status"] == "up" and status["run"]["state"] == "finished"
    agents = [node["agent"] for node in status["nodes"]]
    assert [a["state"] for a in agents] == ["finished", "finished"]
    assert sum(a["hostsRank0"] for a in agents) == 1

    logs = run_okai("cluster", "logs", "demo", "--node", "1", "--lines", "3", check=True)
    assert "==> agent.log <==" in logs.stdout and "finished" in logs.stdout
    every = run_okai("cluster", "logs", "--lines", "1", check=True)
    assert "[node 0] ==> agent.log <==" in every.stdout and "[node 1]" in every.stdout

    marks = tokens("demo")
    down = run_okai("--json", "cluster", "down", "demo", check=True)
    assert json.loads(down.stdout) == {"name": "demo", "status": "stopped", "resources": 0}
    assert node_folders(stack, "demo") == []
    assert_all_gone("demo", marks)
    assert run_dir.is_dir(), "down leaves the fetched run alone"
    listed = json.loads(run_okai("--json", "cluster", "status", check=True).stdout)
    assert {c["name"]: c["status"] for c in listed["clusters"]}["demo"] == "stopped"


# --- failures -------------------------------------------------------------------------------


def test_a_node_killed_mid_run_is_started_again_and_the_run_finishes(stack: Stack) -> None:
    settings = load_settings(None)
    request = clusters.ClusterRequest(
        name="killed",
        job=stack.long_job(),
        walrus=clusters.walrus_endpoints(settings),
        allow_unregistered_host=True,
        join_timeout=120,
        poll_s=0.5,
    )
    killed: list[int] = []
    reports: list[str] = []

    def progress(update: clusters.ClusterProgress) -> None:
        # Once rank 0 is past a checkpoint, node 1 dies: agent, torchrun and worker at once.
        if not killed and update.progress is not None and update.progress.step >= 25:
            killed.append(kill_marked(tokens("killed")[1]))

    events = clusters.Events(report=reports.append, progress=progress)
    outcome = clusters.up(request, LocalBackend(), settings, events)

    assert killed and killed[0] >= 2, "the agent and its training processes were killed"
    assert any("starting it again" in line for line in reports), reports
    restarted = read_status(node_folders(stack, "killed")[1])
    assert restarted.state == NodeState.FINISHED and restarted.restarts == 1
    receipt = outcome.receipt
    assert Digest.of_file(outcome.run_dir / "model.safetensors") == receipt.model_sha256
    assert float(receipt.metrics["testAccuracy"]) > 0.8
    marks = tokens("killed")
    clusters.down(ClusterState.load("killed"), LocalBackend())
    assert_all_gone("killed", marks)


def test_down_after_a_crashed_up_stops_every_process_of_the_cluster(stack: Stack) -> None:
    process = start_up(stack, "crashed")
    try:
        wait_until_running(stack, "crashed", process)
    finally:
        process.kill()  # `okai cluster up` dies; its nodes do not
        process.wait()
    marks = tokens("crashed")
    assert all(marked_processes(token) for token in marks)
    kill_marked(marks[0])  # one node's machine is gone too; the other still trains
    assert ClusterState.load("crashed").status == ClusterStatus.UP

    done = run_okai("--json", "cluster", "down", "crashed", timeout=120)
    assert done.returncode == 0, done.stderr
    assert node_folders(stack, "crashed") == []
    assert_all_gone("crashed", marks)
    again = run_okai("--json", "cluster", "down", "crashed")
    assert again.returncode == 0, "down is safe to repeat"


def test_ctrl_c_during_up_rolls_back_and_up_can_run_again(stack: Stack) -> None:
    process = start_up(stack, "interrupted")
    try:
        wait_until_running(stack, "interrupted", process)
        marks = tokens("interrupted")
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    assert "rolling back cluster interrupted" in stderr
    assert node_folders(stack, "interrupted") == []
    assert_all_gone("interrupted", marks)
    # The name is free again: a new cluster of that name starts (and is removed at once).
    state = LocalBackend().create(
        clusters.ClusterRequest(name="interrupted", job=stack.job(), allow_unregistered_host=True)
    )
    assert state.status == ClusterStatus.UP and len(node_folders(stack, "interrupted")) == 2
    clusters.down(state, LocalBackend())


def test_a_failing_job_is_reported_and_the_cluster_kept_for_its_logs(stack: Stack) -> None:
    wrong = ManifestRef(
        manifest_blob_id=stack.dataset.manifest_blob_id, sha256="sha256:" + "1" * 64
    )
    job = stack.job(datasets=(wrong,))
    done = run_okai(
        "cluster", "up", str(stack.job_file("failing", job)), "--name", "failing",
        "--max-restarts", "0", timeout=RUN_TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert "integrity check failed for blob" in done.stderr
    assert "okai cluster logs failing" in done.stderr
    state = ClusterState.load("failing")
    assert state.status == ClusterStatus.UP and state.details["run"]["state"] == "failed"
    logs = run_okai("cluster", "logs", "failing", check=True)
    assert "integrity check failed" in logs.stdout
    marks = tokens("failing")
    run_okai("cluster", "down", "failing", check=True)
    assert_all_gone("failing", marks)


# --- the job's sandbox ----------------------------------------------------------------------

PROBE = """
import json, os, pathlib, socket
import torch

def attempt(action):
    try:
        return "done: " + str(action())[:200]
    except Exception as exc:
        return "denied: " + type(exc).__name__

def environs():
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found.append((entry / "environ").read_bytes().decode(errors="replace"))
            except OSError:
                pass
    return found

def walrus():
    with socket.create_connection((HOST, PORT), timeout=5):
        return "connected"

def train(ctx):
    found = {
        "env": dict(os.environ),
        "environs": environs(),
        "read": {p: attempt(lambda p=p: pathlib.Path(p).read_text()) for p in READ},
        "write": {p: attempt(lambda p=p: pathlib.Path(p).write_text("forged")) for p in WRITE},
        "walrus": attempt(walrus),
    }
    (pathlib.Path(ctx.run_dir) / "probe.json").write_text(json.dumps(found))
    return torch.nn.Linear(2, 1)
"""
SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "aws-secret-of-the-node-0123456789",
    "OKAI_WALRUS_JWT": "eyJhbGciOiJIUzI1NiJ9.eyJub2RlIjoic3RvbGVuIn0.bm9kZS1zZWNyZXQ",
}
FILE_SECRET = "a-secret-file-of-the-operator-0123456789"


@pytest.mark.parametrize("nodes", [1, 2])
def test_a_hostile_entry_point_gets_none_of_the_agents_credentials(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nodes: int
) -> None:
    """The agent holds credentials (its environment, the systemd credential file); the job's
    code runs in its sandbox on every node and reaches none of them, nor any agent's state."""
    name = f"hostile{nodes}"
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / SECRETS_CREDENTIAL).write_text(f"OKAI_WALRUS_JWT={SECRETS['OKAI_WALRUS_JWT']}\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))  # as systemd hands it over
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRETS["AWS_SECRET_ACCESS_KEY"])
    operator_file = stack.home / "operator-secret.txt"
    operator_file.write_text(FILE_SECRET)
    folders = [stack.home / ".okai" / "clusters" / name / f"node-{rank}" for rank in range(nodes)]
    host, port = stack.walrus_url.removeprefix("http://").split(":")
    read = [str(credentials / SECRETS_CREDENTIAL), str(operator_file), "/etc/shadow"]
    # Every node's state, its own and (on one machine) its neighbour's.
    write = [str(stack.home / "x")]
    for node in folders:
        write += [str(node / "status.json"), str(node / "job" / "cluster.json")]
    code = f"HOST = {host!r}\nPORT = {int(port)}\nREAD = {read!r}\nWRITE = {write!r}\n" + PROBE
    with stack.client() as client:
        stored = client.store_bytes(code.encode())
    job = JobSpec(
        name="probe",
        model=EntrypointModel(
            entrypoint_blob_id=stored.blob_id, sha256=Digest.of_bytes(code.encode())
        ),
        hyperparameters={"epochs": 1},
        datasets=(stack.dataset,),
        nodes=nodes,
        procs_per_node=1,
    )
    settings = load_settings(None)
    request = clusters.ClusterRequest(
        name=name,
        job=job,
        walrus=clusters.walrus_endpoints(settings),
        allow_unregistered_host=True,
        max_restarts=0,
        poll_s=0.5,
    )
    outcome = clusters.up(request, LocalBackend(), settings, clusters.Events())
    assert outcome.receipt.model_sha256 == Digest.of_file(outcome.run_dir / "model.safetensors")
    assert outcome.receipt.world_size == nodes

    for node in folders:
        run = node / "runs" / outcome.receipt.run_id
        probe = json.loads((run / "probe.json").read_text())
        shown = json.dumps(probe)
        for value in [*SECRETS.values(), FILE_SECRET]:
            assert value not in shown, node
        assert "CREDENTIALS_DIRECTORY" not in probe["env"]
        assert probe["env"]["HOME"] == "/okai/home" and probe["env"]["OKAI_WALRUS_AGGREGATORS"]
        # Its own PID namespace: torchrun and the worker, never an agent.
        assert 2 <= len(probe["environs"]) <= 4
        assert all("CREDENTIALS_DIRECTORY" not in environ for environ in probe["environs"])
        assert all(result.startswith("denied: ") for result in probe["read"].values()), probe
        assert all(result.startswith("denied: ") for result in probe["write"].values()), probe
        assert read_status(node).state == NodeState.FINISHED
        # The network is shared (rendezvous, Walrus reads): documented, not isolated.
        assert probe["walrus"] == "done: connected"
        for path in node.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert FILE_SECRET.encode() not in path.read_bytes(), path
    assert not (stack.home / "x").exists()
    marks = tokens(name)
    clusters.down(ClusterState.load(name), LocalBackend())
    assert_all_gone(name, marks)


@pytest.mark.parametrize("nodes", [1, 2])
def test_the_sandbox_changes_no_byte_of_an_honest_model(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, nodes: int
) -> None:
    """The same deterministic job, sandboxed and as the agent: one model."""
    settings = load_settings(None)
    job = digits_job((stack.dataset,), nodes=nodes, procs_per_node=1, epochs=1)
    digests = []
    for name, unsafe in ((f"boxed{nodes}", False), (f"plain{nodes}", True)):
        if unsafe:
            monkeypatch.setenv(UNSAFE_ENV, "1")
        request = clusters.ClusterRequest(
            name=name,
            job=job,
            walrus=clusters.walrus_endpoints(settings),
            allow_unregistered_host=True,
            poll_s=0.5,
        )
        outcome = clusters.up(request, LocalBackend(), settings, clusters.Events())
        assert outcome.receipt.world_size == nodes
        digests.append(outcome.receipt.model_sha256)
        for folder in node_folders(stack, name):
            log = (folder / "agent.log").read_text()
            assert (UNSAFE_ENV in log) == unsafe, log
            cached = (folder / JOB_HOME / ".okai" / "cache").rglob("*")
            assert any(path.is_file() for path in cached) != unsafe
        clusters.down(ClusterState.load(name), LocalBackend())
    assert digests[0] == digests[1]
