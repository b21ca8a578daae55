"""`okai cluster` on Fluence, against the spec-checking fake API.

The VMs are the fake's; what would run on them runs here. `LocalChannel`
stands in for SSH as a test transport: each "VM" is a folder, the files the
cluster layer would deliver over SSH land there, and the very agent of the
image runs on them, reading data from a real local Walrus server. Everything
else (discovery, cost, creates recorded in the state file, teardown) is the
real code talking HTTP to the fake.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster_helpers import Stack, digits_stack
from conftest import run_okai
from fakes.fluence_support import FAST_POLL, FluenceFake, checked_fake, client_for, ssh_public_key
from okai.compute import cluster as clusters
from okai.compute.channel import LocalChannel, NodeChannel, NodeInfo
from okai.compute.fluence import FluenceClient
from okai.compute.fluence.backend import FluenceBackend, known_hosts
from okai.compute.fluence.provider import FluenceProvider
from okai.compute.local import free_port, node_address
from okai.compute.marks import MARK_ENV, marked_processes, stop_marked
from okai.compute.node.files import ImageExpectation
from okai.compute.node.host import ADDRESS_ENV
from okai.compute.state import ClusterState, ClusterStatus, NodeRecord
from okai.config import load_settings
from okai.digest import Digest
from okai.errors import OperationalError

pytestmark = pytest.mark.slow

IMAGE_URL = "https://aggregator.example/v1/blobs/by-quilt-id/q1/okai-node-qemu.qcow2"
TOPLEVEL = "/nix/store/" + "c" * 32 + "-nixos-system-okai-node-25.05"
NIXPKGS = "5c623338d0c62d15a11b12e46ee8b04a48482c2f"
FLAKE = "3c1cacc11c9292ed498f01f798cf790f02ea5062"
IMAGE_SHA256 = "sha256:" + "5a" * 32


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with digits_stack(tmp_path_factory.mktemp("fluence")) as ready:
        yield ready


@pytest.fixture
def fake(stack: Stack) -> Iterator[FluenceFake]:
    with checked_fake() as running:
        yield running
    assert running.billable() == [], "a test left Fluence resources billing"


@pytest.fixture
def client(fake: FluenceFake) -> Iterator[FluenceClient]:
    with client_for(fake) as opened:
        yield opened


class Transport:
    """Test transport: one folder per VM, the image's agent run here (see the module doc)."""

    def __init__(self, root: Path, image_file: Path) -> None:
        self.root = root
        self.image_file = image_file
        self.tokens: dict[str, str] = {}

    def __call__(self, state: ClusterState, node: NodeRecord) -> NodeChannel:
        token = self.tokens.setdefault(node.name, secrets.token_hex(16))
        folder = self.root / node.name
        # A loopback address of its own, as VMs have: sandboxed torchruns on one address
        # would share one rendezvous name (okai.compute.local).
        address = node_address(node.rank)
        env = {MARK_ENV: token, ADDRESS_ENV: address, "OKAI_HOME": str(folder / "home")}
        return LocalChannel(node.rank, folder, env=env, image_file=self.image_file)

    def stop_all(self) -> None:
        for token in self.tokens.values():
            stop_marked(token)

    def processes(self) -> list[int]:
        return [pid for token in self.tokens.values() for pid in marked_processes(token)]


@pytest.fixture
def transport(stack: Stack, tmp_path: Path) -> Iterator[Transport]:
    identity = tmp_path / "image.json"
    identity.write_text(
        json.dumps(
            {
                "schema": "okai.image-identity/v1",
                "flakeRevision": FLAKE,
                "nixpkgsRevision": NIXPKGS,
                "systemToplevel": TOPLEVEL,
            }
        )
    )
    made = Transport(tmp_path / "vms", identity)
    yield made
    made.stop_all()


def backend_for(
    client: FluenceClient, transport: Transport, **provider_options: Any
) -> FluenceBackend:
    return FluenceBackend(
        FluenceProvider(client, poll=FAST_POLL, **provider_options),
        image_url=IMAGE_URL,
        public_key=ssh_public_key(),
        channel_factory=transport,
        rendezvous_port=free_port(),
    )


def request_for(stack: Stack, name: str) -> clusters.ClusterRequest:
    return clusters.ClusterRequest(
        name=name,
        job=stack.job(hyperparameters={"epochs": 2, "batch_size": 32, "lr": 0.003}),
        walrus=clusters.walrus_endpoints(load_settings(None)),
        image=ImageExpectation(
            system_toplevel=TOPLEVEL,
            nixpkgs_revision=NIXPKGS,
            flake_revision=FLAKE,
            sha256=IMAGE_SHA256,
        ),
        poll_s=0.5,
    )


def key_pair(folder: Path) -> Path:
    """A private key file path whose `.pub` holds a valid public key (never used to log in)."""
    key = folder / "id_ed25519"
    key.write_text("not a real private key\n")
    key.with_name("id_ed25519.pub").write_text(ssh_public_key() + "\n")
    return key


# --- dry run and consent ------------------------------------------------------------------


def test_the_dry_run_prints_the_exact_requests_and_creates_nothing(
    stack: Stack, fake: FluenceFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OKAI_FLUENCE_URL", fake.url)
    monkeypatch.setenv("OKAI_FLUENCE_API_KEY", fake.api_key)
    args = ["cluster", "up", str(stack.job_file("dry")), "--provider", "fluence", "--dry-run",
            "--image-url", IMAGE_URL, "--ssh-key", str(key_pair(stack.home)), "--name", "dry",
            "--nodes-reach-endpoints"]  # fmt: skip
    human = run_okai(*args)
    assert human.returncode == 0, human.stderr
    text = human.stdout
    assert text.count(f"POST {fake.url}/v2/vms") == 2
    assert f"POST {fake.url}/v1/security_groups" in text and "X-API-KEY: <redacted>" in text
    assert '"osImage": "' + IMAGE_URL in text
    assert "USD" in text
    machine = run_okai("--json", *args)
    plan = json.loads(machine.stdout)
    creates = [(r["method"], r["path"]) for r in plan["requests"] if r["method"] == "POST"]
    assert creates.count(("POST", "/v2/vms")) == 2 and plan["nodes"] == 2
    for output in (human.stdout, human.stderr, machine.stdout, machine.stderr):
        assert fake.api_key not in output
    assert fake.mutations() == []
    assert not (stack.home / ".okai" / "clusters" / "dry.json").exists()


def test_without_yes_and_no_terminal_nothing_is_created(
    stack: Stack, fake: FluenceFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OKAI_FLUENCE_URL", fake.url)
    monkeypatch.setenv("OKAI_FLUENCE_API_KEY", fake.api_key)
    base = ["cluster", "up", str(stack.job_file("consent")), "--provider", "fluence",
            "--image-url", IMAGE_URL, "--ssh-key", str(key_pair(stack.home)), "--name", "consent",
            "--nodes-reach-endpoints"]  # fmt: skip
    refused = run_okai(*base)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    too_dear = run_okai(*base, "--yes", "--max-usd", "0.01")
    assert too_dear.returncode == 2 and "above the limit of 0.01 USD" in too_dear.stderr
    assert fake.mutations() == []


# --- up and down --------------------------------------------------------------------------


def test_up_runs_the_job_on_the_vms_and_down_stops_every_charge(
    stack: Stack, fake: FluenceFake, client: FluenceClient, transport: Transport
) -> None:
    backend = backend_for(client, transport)
    request = request_for(stack, "flu")
    plan = backend.plan(request)
    assert plan.estimate.total > 0
    billed_while_running: list[int] = []

    def progress(update: clusters.ClusterProgress) -> None:
        if not billed_while_running:
            billed_while_running.append(len(fake.billable()))

    outcome = clusters.up(request, backend, load_settings(None), clusters.Events(progress=progress))
    assert billed_while_running == [6], "2 VMs, 2 boot disks, 2 public IPs while training"

    # The files each VM got over the channel: peers (private and public), job, cluster.
    state = ClusterState.load("flu")
    for node in state.nodes:
        job_dir = transport.root / node.name / "job"
        peers = (job_dir / "peers").read_text().split()
        assert "127.0.0.1" in peers and node.address in peers
        cluster = json.loads((job_dir / "cluster.json").read_text())
        assert cluster["image"]["systemToplevel"] == TOPLEVEL
        assert cluster["allowUnregisteredHost"] is False
        assert cluster["rendezvous"]["host"] == "127.0.0.1"
        assert Digest.of_file(job_dir / "job.json") == request.job.digest()
        status = json.loads((transport.root / node.name / "status.json").read_text())
        assert status["host"] == "okai image" and status["image"]["systemToplevel"] == TOPLEVEL

    run_dir = outcome.run_dir
    assert outcome.fetched_from == "walrus"
    assert Digest.of_file(run_dir / "model.safetensors") == outcome.receipt.model_sha256
    assert (outcome.receipt.nodes, outcome.receipt.provider) == (2, "fluence")
    # The receipt names the image the cluster expected, whose system the node matched.
    image = outcome.receipt.image
    assert image is not None and image.system_toplevel == TOPLEVEL
    assert outcome.receipt.chain_image_digest() == IMAGE_SHA256
    views = clusters.node_views(state, backend)
    assert [v.state for v in views] == ["finished", "finished"]

    pinned = known_hosts("flu")
    pinned.write_text("203.0.113.1 ssh-ed25519 AAAA...\n")  # as SSH would have left it
    clusters.down(ClusterState.load("flu"), backend)
    assert fake.billable() == []
    assert not pinned.exists(), "host keys of removed VMs are forgotten"
    assert ClusterState.load("flu").status == ClusterStatus.STOPPED
    for path in (stack.home / ".okai").rglob("*.json"):
        assert fake.api_key not in path.read_text()


def test_ctrl_c_while_the_vms_are_created_rolls_everything_back(
    stack: Stack, fake: FluenceFake, client: FluenceClient, transport: Transport
) -> None:
    def interrupt(message: str) -> None:
        if message == "creating VM halt-r1":
            raise KeyboardInterrupt

    backend = backend_for(client, transport, report=interrupt)
    request = request_for(stack, "halt")
    backend.plan(request)
    with pytest.raises(KeyboardInterrupt):
        clusters.up(request, backend, load_settings(None))
    assert fake.billable() == []
    assert ClusterState.load("halt").status == ClusterStatus.STOPPED
    assert transport.processes() == [], "no agent was started"


def test_ctrl_c_while_waiting_for_the_job_tears_the_cluster_down(
    stack: Stack, fake: FluenceFake, client: FluenceClient, transport: Transport
) -> None:
    def interrupt(update: clusters.ClusterProgress) -> None:
        raise KeyboardInterrupt

    backend = backend_for(client, transport)
    request = request_for(stack, "wait")
    backend.plan(request)
    reports: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        clusters.up(
            request,
            backend,
            load_settings(None),
            clusters.Events(report=reports.append, progress=interrupt),
        )
    assert any("rolling back cluster wait" in line for line in reports), reports
    assert fake.billable() == []
    state = ClusterState.load("wait")
    assert state.status == ClusterStatus.STOPPED and state.details["run"]["state"] == "running"


def test_a_node_reporting_a_bogus_address_is_refused_and_rolled_back(
    stack: Stack, fake: FluenceFake, client: FluenceClient, transport: Transport
) -> None:
    class Lying(LocalChannel):
        def info(self) -> NodeInfo:
            return super().info().model_copy(update={"address": "10.0.0.1\n0.0.0.0/0"})

    def lying(state: ClusterState, node: NodeRecord) -> NodeChannel:
        honest = transport(state, node)
        assert isinstance(honest, LocalChannel)
        return Lying(node.rank, honest.root, env=honest.env, image_file=honest.image_file)

    backend = backend_for(client, transport)
    backend.channel_factory = lying
    request = request_for(stack, "liar")
    backend.plan(request)
    with pytest.raises(OperationalError, match="not an IP address"):
        clusters.up(request, backend, load_settings(None))
    assert fake.billable() == []
    assert ClusterState.load("liar").status == ClusterStatus.STOPPED
    assert not (transport.root / "liar-r0" / "job" / "peers").exists(), "nothing was delivered"
