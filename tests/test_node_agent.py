"""The node agent's files and checks: cluster file, image identity, status, info, logs.

These run the real `okai node` commands, but stop the agent before training
(refused identities, inconsistent files); training itself is exercised by the
cluster tests.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, run_okai
from okai.compute.node import (
    DEFAULT_RENDEZVOUS_PORT,
    ClusterFile,
    ImageMismatch,
    NodeState,
    UnregisteredHost,
    read_status,
)
from okai.compute.node import logs as node_logs
from okai.compute.node.files import SECRETS_CREDENTIAL, environment_file, load_secrets
from okai.compute.node.host import check_identity, read_identity
from okai.compute.node.status import NodeStatus, write_status
from okai.errors import DocumentError, UsageError
from okai.manifest import ManifestRef
from okai.train import digits_job

TOPLEVEL = "/nix/store/" + "a" * 32 + "-nixos-system-okai-node-25.05"
OTHER_TOPLEVEL = "/nix/store/" + "b" * 32 + "-nixos-system-okai-node-25.05"
NIXPKGS = "5c623338d0c62d15a11b12e46ee8b04a48482c2f"
FLAKE = "3c1cacc11c9292ed498f01f798cf790f02ea5062"


def vm_test_cluster(rank: int = 0, nodes: int = 1) -> dict[str, Any]:
    """The document nix/tests/fixtures.nix `clusterDocument` writes, field for field."""
    return {
        "schema": "okai.cluster/v1",
        "clusterId": "vmtest",
        "nodes": nodes,
        "nodeRank": rank,
        "rendezvous": {"host": "192.168.1.1", "port": 29400, "id": "vmtest"},
    }


def identity_file(folder: Path, toplevel: str = TOPLEVEL) -> Path:
    path = folder / "image.json"
    path.write_text(
        json.dumps(
            {
                "schema": "okai.image-identity/v1",
                "flakeRevision": FLAKE,
                "nixpkgsRevision": NIXPKGS,
                "systemToplevel": toplevel,
            }
        )
    )
    return path


def job_files(folder: Path, cluster: dict[str, Any], nodes: int = 1) -> tuple[Path, Path]:
    ref = ManifestRef(manifest_blob_id="A" * 43, sha256="sha256:" + "0" * 64)
    job = folder / "job.json"
    job.write_bytes(digits_job((ref,), nodes=nodes, procs_per_node=1).canonical_bytes())
    path = folder / "cluster.json"
    path.write_text(json.dumps(cluster))
    return job, path


def expectation(toplevel: str = TOPLEVEL) -> dict[str, Any]:
    return {"systemToplevel": toplevel, "nixpkgsRevision": NIXPKGS, "flakeRevision": FLAKE}


# --- the cluster file ---------------------------------------------------------------------


def test_the_cluster_file_of_the_vm_tests_loads_with_safe_defaults() -> None:
    cluster = ClusterFile.from_data(vm_test_cluster(rank=1, nodes=2), "cluster.json")
    assert (cluster.cluster_id, cluster.nodes, cluster.node_rank) == ("vmtest", 2, 1)
    assert cluster.rendezvous.endpoint == "192.168.1.1:29400"
    assert cluster.run_id == "vmtest"
    assert cluster.allow_unregistered_host is False
    assert cluster.image is None and cluster.publish is True


def test_the_vm_tests_write_what_the_agent_reads() -> None:
    """nix/tests/fixtures.nix, evaluated: its cluster document is a valid cluster file."""
    nix = shutil.which("nix-instantiate")
    assert nix is not None, "nix-instantiate is missing: install nix-bin (`make setup` does)"
    expression = (
        "let fx = import %s { pkgs = { lib = {}; }; }; in "
        'fx.clusterDocument { rank = 1; nodes = 2; rendezvousHost = "192.168.1.1"; }'
    ) % (REPO / "nix" / "tests" / "fixtures.nix")
    evaluated = subprocess.run(
        [nix, "--eval", "--strict", "--json", "--expr", expression],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    document = json.loads(evaluated.stdout)
    assert document == vm_test_cluster(rank=1, nodes=2), "keep vm_test_cluster in step"
    cluster = ClusterFile.from_data(document, "nix/tests/fixtures.nix")
    assert cluster.rendezvous.port == DEFAULT_RENDEZVOUS_PORT


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"rendezvous": {"host": "10.0.0.1", "port": 0, "id": "r"}}, "rendezvous.port"),
        ({"rendezvous": {"host": "-oProxyCommand=x", "port": 1, "id": "r"}}, "rendezvous.host"),
        ({"rendezvous": {"host": "h", "port": 1, "id": "../../etc"}}, "rendezvous.id"),
        ({"nodeRank": -1}, "nodeRank"),
        ({"surprise": True}, "surprise"),
        ({"schema": "okai.job/v1"}, "schema"),
    ],
)
def test_a_malformed_cluster_file_names_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(DocumentError) as caught:
        ClusterFile.from_data({**vm_test_cluster(), **change}, "cluster.json")
    assert caught.value.field == field


# --- the image identity -------------------------------------------------------------------


def test_an_image_matching_the_expectation_passes(tmp_path: Path) -> None:
    identity = read_identity(identity_file(tmp_path))
    cluster = ClusterFile.from_data({**vm_test_cluster(), "image": expectation()}, "c")
    check_identity(cluster, identity)
    assert identity.host == "okai image"
    assert identity.image is not None and identity.image["systemToplevel"] == TOPLEVEL


def test_an_image_without_a_flake_revision_matches_on_its_toplevel(tmp_path: Path) -> None:
    """Images carry no flake revision (nix/identity.nix): the manifest's is not compared."""
    path = tmp_path / "image.json"
    path.write_text(json.dumps({"nixpkgsRevision": NIXPKGS, "systemToplevel": TOPLEVEL}))
    cluster = ClusterFile.from_data({**vm_test_cluster(), "image": expectation()}, "c")
    check_identity(cluster, read_identity(path))
    # One that states a revision must state the expected one.
    path.write_text(json.dumps({**expectation(), "flakeRevision": "0" * 40}))
    with pytest.raises(ImageMismatch, match="flake revision"):
        check_identity(cluster, read_identity(path))


def test_another_system_is_refused(tmp_path: Path) -> None:
    identity = read_identity(identity_file(tmp_path, OTHER_TOPLEVEL))
    cluster = ClusterFile.from_data({**vm_test_cluster(), "image": expectation()}, "c")
    with pytest.raises(ImageMismatch) as caught:
        check_identity(cluster, identity)
    assert caught.value.expected == TOPLEVEL and caught.value.actual == OTHER_TOPLEVEL


def test_an_unregistered_host_runs_only_where_the_cluster_allows_it(tmp_path: Path) -> None:
    identity = read_identity(tmp_path / "absent.json")
    assert identity.host == "unregistered host"
    with pytest.raises(UnregisteredHost):
        check_identity(ClusterFile.from_data(vm_test_cluster(), "c"), identity)
    allowed = ClusterFile.from_data({**vm_test_cluster(), "allowUnregisteredHost": True}, "c")
    check_identity(allowed, identity)


def test_the_agent_refuses_to_train_on_the_wrong_image(okai_home: Path) -> None:
    state_dir = okai_home / "node"
    cluster = {**vm_test_cluster(), "image": expectation()}
    job, cluster_path = job_files(okai_home, cluster)
    image = identity_file(okai_home, OTHER_TOPLEVEL)
    done = run_okai(
        "node", "run", "--job", str(job), "--cluster", str(cluster_path),
        "--state-dir", str(state_dir), "--image-identity", str(image),
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert "system toplevel" in done.stderr
    shown = run_okai("--json", "node", "status", "--state-dir", str(state_dir), check=True)
    status = json.loads(shown.stdout)
    assert status["schema"] == "okai.node-status/v1"
    assert status["state"] == "failed"
    assert status["error"]["type"] == "ImageMismatch" and status["error"]["exitCode"] == 3
    assert (status["clusterId"], status["nodeRank"], status["runId"]) == ("vmtest", 0, "vmtest")
    assert status["host"] == "okai image"
    human = run_okai("node", "status", "--state-dir", str(state_dir), check=True)
    assert "failed" in human.stdout


def test_the_agent_refuses_a_job_for_another_cluster_size(okai_home: Path) -> None:
    job, cluster_path = job_files(okai_home, vm_test_cluster(nodes=2), nodes=1)
    done = run_okai(
        "node", "run", "--job", str(job), "--cluster", str(cluster_path),
        "--state-dir", str(okai_home / "node"), "--image-identity", str(identity_file(okai_home)),
    )  # fmt: skip
    assert done.returncode == 2
    assert "1 node(s) but the cluster file says 2" in done.stderr


def test_a_finished_run_is_reported_not_repeated(okai_home: Path) -> None:
    state_dir = okai_home / "node"
    write_status(
        state_dir,
        NodeStatus(state=NodeState.FINISHED, cluster_id="vmtest", node_rank=0, run_id="vmtest"),
    )
    job, cluster_path = job_files(okai_home, vm_test_cluster())
    done = run_okai(
        "--json", "node", "run", "--job", str(job), "--cluster", str(cluster_path),
        "--state-dir", str(state_dir), "--image-identity", str(identity_file(okai_home)),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["state"] == "finished"
    assert "already finished" in (state_dir / "agent.log").read_text()


# --- status, info, logs -------------------------------------------------------------------


def test_a_node_without_a_job_is_idle(okai_home: Path) -> None:
    done = run_okai("--json", "node", "status", "--state-dir", str(okai_home / "none"), check=True)
    assert json.loads(done.stdout)["state"] == "idle"


def test_a_running_status_whose_agent_is_gone_reads_as_failed(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    write_status(tmp_path, NodeStatus(state=NodeState.RUNNING, run_id="r", pid=gone.pid))
    status = read_status(tmp_path)
    assert status.state == NodeState.FAILED
    assert status.error is not None and status.error.type == "AgentGone"
    # A live process that is not the agent (its start time differs) does not count either.
    write_status(
        tmp_path, NodeStatus(state=NodeState.RUNNING, run_id="r", pid=os.getpid(), pid_start=1)
    )
    assert read_status(tmp_path).state == NodeState.FAILED


def test_a_malformed_status_file_is_a_document_error(okai_home: Path) -> None:
    folder = okai_home / "node"
    folder.mkdir()
    (folder / "status.json").write_text('{"schema": "okai.node-status/v1", "state": "dancing"}')
    done = run_okai("node", "status", "--state-dir", str(folder))
    assert done.returncode == 2
    assert "status.json" in done.stderr and "state" in done.stderr


def test_node_info_reports_the_identity_and_the_cluster_address(
    okai_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OKAI_NODE_ADDRESS", "10.9.8.7")
    done = run_okai(
        "--json", "node", "info", "--image-identity", str(identity_file(okai_home)), check=True
    )
    info = json.loads(done.stdout)
    assert info["address"] == "10.9.8.7"
    assert info["registered"] is True and info["image"]["systemToplevel"] == TOPLEVEL
    assert any(i["address"] == "127.0.0.1" for i in info["interfaces"])


def test_node_logs_show_the_agent_then_the_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "r1"
    (run_dir / "logs" / "attempt_0" / "0").mkdir(parents=True)
    (tmp_path / "agent.log").write_text("agent line 1\nagent line 2\n")
    (run_dir / "logs" / "torchrun.log").write_text("torchrun says hello\n")
    (run_dir / "logs" / "attempt_0" / "0" / "stderr.log").write_text("[rank0] <b>not markup</b>\n")
    write_status(tmp_path, NodeStatus(state=NodeState.FINISHED, run_id="r1", run_dir=str(run_dir)))
    shown = list(node_logs.tail(tmp_path, lines=1))
    assert shown == [
        "==> agent.log <==",
        "agent line 2",
        "==> runs/r1/logs/torchrun.log <==",
        "torchrun says hello",
        "==> runs/r1/logs/attempt_0/0/stderr.log <==",
        "[rank0] <b>not markup</b>",
    ]
    followed = list(node_logs.follow(tmp_path, poll_s=0.01))
    assert "agent.log: agent line 1" in followed
    assert "runs/r1/logs/attempt_0/0/stderr.log: [rank0] <b>not markup</b>" in followed


def test_a_second_agent_on_the_same_node_is_refused(okai_home: Path) -> None:
    state_dir = okai_home / "node"
    state_dir.mkdir()
    job, cluster_path = job_files(okai_home, vm_test_cluster())
    with (state_dir / "agent.lock").open("a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # as a running agent holds it
        done = run_okai(
            "node", "run", "--job", str(job), "--cluster", str(cluster_path),
            "--state-dir", str(state_dir), "--image-identity", str(identity_file(okai_home)),
        )  # fmt: skip
    assert done.returncode == 2
    assert "another node agent is running" in done.stderr
    assert read_status(state_dir).state == NodeState.IDLE, "the running agent's status is untouched"


# ------------------------------------------------------------ secrets credential


def test_the_secrets_credential_reaches_the_environment(tmp_path: Path) -> None:
    (tmp_path / SECRETS_CREDENTIAL).write_bytes(
        environment_file({"OKAI_WALRUS_JWT": "a.b.c", "OTHER": "x"}) + b"\n# note\n"
    )
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path), "OTHER": "before"}
    assert load_secrets(env) == ["OKAI_WALRUS_JWT", "OTHER"]
    assert env["OKAI_WALRUS_JWT"] == "a.b.c" and env["OTHER"] == "x"


def test_no_credential_means_no_secrets(tmp_path: Path) -> None:
    env: dict[str, str] = {}
    assert load_secrets(env) == [] and env == {}  # not run by systemd
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    assert load_secrets(env) == []  # ImportCredential found none: a job without secrets
    assert set(env) == {"CREDENTIALS_DIRECTORY"}


@pytest.mark.parametrize(
    "line",
    [b"NOT A LINE", b"lower=case", b"OKAI_WALRUS_JWT=", b"=value", b"1ST=x", b"LD_PRELOAD x"],
)
def test_a_malformed_credential_is_refused_without_quoting_it(tmp_path: Path, line: bytes) -> None:
    (tmp_path / SECRETS_CREDENTIAL).write_bytes(b"GOOD=secret-value\n" + line + b"\n")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    with pytest.raises(UsageError, match="line 2: not a NAME=value line") as caught:
        load_secrets(env)
    assert "secret-value" not in str(caught.value) and "GOOD" not in env
