"""A cluster of two hosts: network namespaces joined by a veth pair, the same agent on each.

Host A (10.77.1.1) runs the Walrus-compatible server and rank 0's rendezvous;
host B (10.77.1.2) reaches both only over the veth link. Each host gets the
files a VM would (job and cluster file) and runs `okai node run` in its own
namespace: the nodes read the dataset from Walrus, meet through torchrun's
c10d rendezvous and gloo across the link, and the node hosting rank 0 stores
the model and receipt on Walrus.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster_helpers import json_results, two_netns_hosts
from conftest import REPO
from okai.compute.node import ClusterFile, RendezvousSpec, WalrusEndpoints
from okai.digest import Digest
from okai.manifest import ManifestRef
from okai.train import Receipt, digits_files, digits_job

pytestmark = pytest.mark.slow

ADDRESSES = ("10.77.1.1", "10.77.1.2")
WALRUS_PORT = 31415
RUN_TIMEOUT = 400


@pytest.fixture
def two_hosts() -> Iterator[tuple[str, str]]:
    """Two namespaces, hosts 10.77.1.1/24 and 10.77.1.2/24 on a veth pair."""
    with two_netns_hosts(ADDRESSES) as hosts:
        yield hosts


def in_host(host: str, *command: str) -> list[str]:
    return ["ip", "netns", "exec", host, *command]


def okai_env(home: Path) -> dict[str, str]:
    env = os.environ.copy()
    env.update(
        OKAI_HOME=str(home),
        OKAI_NODE_MODULES=str(REPO / "node_modules"),
        OKAI_WALRUS_CHECK_BLOB_IDS_UP_TO="0",  # the server answers with stand-in blob IDs
        OKAI_WALRUS_AGGREGATORS=f"http://{ADDRESSES[0]}:{WALRUS_PORT}",
        OKAI_WALRUS_PUBLISHER=f"http://{ADDRESSES[0]}:{WALRUS_PORT}",
    )
    for name in ("OKAI_NETWORK", "OKAI_CONFIG", "OKAI_NODE_STATE_DIR"):
        env.pop(name, None)
    return env


@pytest.fixture
def walrus_on_host_a(two_hosts: tuple[str, str], tmp_path: Path) -> Iterator[str]:
    """`okai walrus serve` inside host A, listening on its veth address."""
    url = f"http://{ADDRESSES[0]}:{WALRUS_PORT}"
    command = in_host(
        two_hosts[0], sys.executable, "-m", "okai", "walrus", "serve",
        "--dir", str(tmp_path / "walrus"), "--host", ADDRESSES[0], "--port", str(WALRUS_PORT),
        "--fake-blob-ids", "--quiet",
    )  # fmt: skip
    server = subprocess.Popen(
        command, stderr=subprocess.PIPE, text=True, env=okai_env(tmp_path / "server-home")
    )
    try:
        assert server.stderr is not None
        first = server.stderr.readline()  # printed once the socket is bound
        assert "Walrus-compatible server at" in first, first + server.stderr.read()
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_two_hosts_train_across_the_link_with_the_same_agent(
    two_hosts: tuple[str, str], walrus_on_host_a: str, tmp_path: Path
) -> None:
    # The operator pushes the dataset from host A (only the hosts reach the server).
    files = tmp_path / "digits"
    for name, data in digits_files().items():
        (files / name).parent.mkdir(parents=True, exist_ok=True)
        (files / name).write_bytes(data)
    pushed = subprocess.run(
        in_host(two_hosts[0], sys.executable, "-m", "okai", "--json", "data", "push", str(files)),
        capture_output=True, text=True, timeout=120, env=okai_env(tmp_path / "operator"),
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    ref = json.loads(pushed.stdout)
    dataset = ManifestRef(manifest_blob_id=ref["manifestBlobId"], sha256=ref["manifestDigest"])
    job = digits_job((dataset,), nodes=2, procs_per_node=1, epochs=2)
    job_file = tmp_path / "job.json"
    job_file.write_bytes(job.canonical_bytes())

    nodes = []
    for rank, (host, address) in enumerate(zip(two_hosts, ADDRESSES, strict=True)):
        cluster = ClusterFile(
            cluster_id="netns",
            nodes=2,
            node_rank=rank,
            rendezvous=RendezvousSpec(host=ADDRESSES[0], port=29400, id=f"netns-{os.getpid()}"),
            local_addr=address,
            allow_unregistered_host=True,
            walrus=WalrusEndpoints(
                network="dev", aggregators=(walrus_on_host_a,), publisher=walrus_on_host_a
            ),
        )
        cluster_file = tmp_path / f"cluster-{rank}.json"
        cluster_file.write_bytes(cluster.canonical_bytes())
        state_dir = tmp_path / f"node-{rank}"
        command = in_host(
            host, sys.executable, "-m", "okai", "--json", "node", "run",
            "--job", str(job_file), "--cluster", str(cluster_file), "--state-dir", str(state_dir),
        )  # fmt: skip
        env = okai_env(state_dir / "home")
        del env["OKAI_WALRUS_AGGREGATORS"], env["OKAI_WALRUS_PUBLISHER"]  # the cluster file says
        nodes.append(
            subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
            )
        )
    results = json_results(nodes, RUN_TIMEOUT)

    assert [r["state"] for r in results] == ["finished", "finished"]
    hosts_rank0 = [r for r in results if r["hostsRank0"]]
    assert len(hosts_rank0) == 1, "exactly one node hosts rank 0"
    status = hosts_rank0[0]
    outputs = status["outputs"]
    assert outputs["publishError"] is None
    run_dir = Path(status["runDir"])
    receipt = Receipt.load(run_dir / "receipt.json")
    assert (receipt.world_size, receipt.nodes) == (2, 2)
    assert (
        outputs["modelSha256"]
        == receipt.model_sha256
        == Digest.of_file(run_dir / "model.safetensors")
    )
    assert outputs["receiptSha256"] == Digest.of_file(run_dir / "receipt.json")

    # Host B reads the stored model back from host A's Walrus server by its blob ID.
    blob = outputs["model"]["blobId"]
    read = subprocess.run(
        in_host(
            two_hosts[1], sys.executable, "-c",
            "import hashlib, sys, httpx; "
            "print(hashlib.sha256(httpx.get(sys.argv[1], timeout=30).content).hexdigest())",
            f"{walrus_on_host_a}/v1/blobs/{blob}",
        ),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert read.returncode == 0, read.stderr
    assert f"sha256:{read.stdout.strip()}" == outputs["modelSha256"]

    # `okai node status` on each host reports the same, from the status file.
    for rank, host in enumerate(two_hosts):
        shown = subprocess.run(
            in_host(host, sys.executable, "-m", "okai", "--json", "node", "status",
                    "--state-dir", str(tmp_path / f"node-{rank}")),
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        assert json.loads(shown.stdout)["state"] == "finished"
