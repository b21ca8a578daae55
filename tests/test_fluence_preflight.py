"""The pre-flight of `okai cluster up --provider fluence`: nothing is rented for a job that
cannot train. Against the spec-checking fake Fluence API and a real local Walrus server.

Each refusal exits 2 and leaves the fake's view untouched (no VM, disk, public IP or
security group); the dry run shows the whole plan even when the balance is short.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from cluster_helpers import Stack, digits_stack
from conftest import call_okai
from fakes.fluence_fake import FluenceFake
from fakes.fluence_support import FAST_POLL, checked_fake, client_for, ssh_public_key
from okai.compute import cluster as clusters
from okai.compute import preflight
from okai.compute.channel import ChannelError, NodeChannel, NodeInfo
from okai.compute.fluence.backend import FluenceBackend
from okai.compute.fluence.provider import FluenceProvider
from okai.compute.node.files import WalrusEndpoints
from okai.compute.state import ClusterState, ClusterStatus, NodeRecord
from okai.config import load_settings
from okai.digest import Digest
from okai.manifest import BlobRef, EntrypointModel, ManifestRef

IMAGE_URL = "https://aggregator.example/v1/blobs/by-quilt-id/q1/okai-node-qemu.qcow2"
BILLABLE = ("vm", "storage", "public_ip", "security_group")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with digits_stack(tmp_path_factory.mktemp("preflight")) as ready:
        key = ready.home / "id_ed25519"
        key.write_text("not a real private key\n")
        key.with_name("id_ed25519.pub").write_text(ssh_public_key() + "\n")
        yield ready


@pytest.fixture
def fake(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[FluenceFake]:
    with checked_fake() as running:
        monkeypatch.setenv("OKAI_FLUENCE_URL", running.url)
        monkeypatch.setenv("OKAI_FLUENCE_API_KEY", running.api_key)
        yield running


def up(job: str, *extra: str) -> Any:
    """`okai cluster up` on Fluence as a user types it (the environment points at the fake)."""
    return call_okai("cluster", "up", job, "--provider", "fluence", "--image-url", IMAGE_URL,
                    "--ssh-key", "id_ed25519", *extra)  # fmt: skip


def assert_nothing_rented(fake: FluenceFake) -> None:
    assert fake.mutations() == []
    for kind in BILLABLE:
        assert fake.of_kind(kind) == [], kind


def walrus(stack: Stack) -> WalrusEndpoints:
    return WalrusEndpoints(network="dev", aggregators=(stack.walrus_url,), publisher=None)


# --- the job, as `okai train` checks it ------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"hyperparameters": {"epochs": -3}}, "hyperparameters.epochs"),
        ({"model": {"builtin": "no-such-model"}}, "model.builtin"),
    ],
)
def test_a_job_okai_train_refuses_rents_nothing(
    stack: Stack, fake: FluenceFake, changes: dict[str, Any], field: str
) -> None:
    data = {**stack.job().to_json(), **changes}
    path = stack.home / f"bad-{field}.json"
    path.write_text(json.dumps(data))
    done = up(str(path), "--yes", "--nodes-reach-endpoints")
    assert done.returncode == 2, done.stderr
    assert f"field '{field}'" in done.stderr
    assert fake.log == [], "refused before Fluence is even asked"
    # The very same refusal as `okai train`'s: one function decides.
    trained = call_okai("train", str(path))
    assert trained.returncode == 2 and f"field '{field}'" in trained.stderr


# --- endpoints the nodes cannot reach -------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "verdict"),
    [
        ("http://127.0.0.1:31415", "loopback"),
        ("http://localhost:31415", "loopback"),
        ("http://[::1]:9000", "loopback"),
        ("http://10.1.2.3", "not a public address"),
        ("http://192.168.0.7:80", "not a public address"),
        ("http://169.254.169.254", "not a public address"),
        ("https://8.8.8.8", None),
        ("https://aggregator.example", None),  # not resolvable here: the data check decides
    ],
)
def test_what_counts_as_unreachable_from_a_rented_vm(url: str, verdict: str | None) -> None:
    found = preflight.not_public(url)
    assert (found is None) if verdict is None else (verdict in str(found)), found


def test_the_dev_network_is_refused_unless_the_nodes_reach_it(
    stack: Stack, fake: FluenceFake
) -> None:
    done = up(str(stack.job_file("dev")), "--yes")
    assert done.returncode == 2, done.stderr
    assert f"aggregator {stack.walrus_url} is loopback" in done.stderr
    assert "--nodes-reach-endpoints" in done.stderr and "nothing was created" in done.stderr
    assert fake.log == []


def test_an_image_url_on_a_private_host_is_refused_whatever_the_nodes_reach() -> None:
    endpoints = WalrusEndpoints(network="x", aggregators=("http://10.0.0.2",), publisher=None)
    preflight.check_reachable(endpoints, IMAGE_URL, publish=True, nodes_reach=True)
    with pytest.raises(
        preflight.PreflightError, match=re.escape("image URL http://10.0.0.9/i.qcow2")
    ):
        preflight.check_reachable(
            endpoints, "http://10.0.0.9/i.qcow2", publish=True, nodes_reach=True
        )


class ImageServer(BaseHTTPRequestHandler):
    """Serves `/okai.qcow2` (its first byte, as asked) and refuses everything else."""

    def do_GET(self) -> None:
        found = self.path.split("?")[0] == "/okai.qcow2"
        self.send_response(206 if found else 404)
        self.send_header("Content-Length", "1" if found else "0")
        self.end_headers()
        if found:
            self.wfile.write(b"Q")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_the_image_url_is_asked_for_its_first_byte() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), ImageServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert preflight.check_image(f"{base}/okai.qcow2?X-Amz-Signature=abc") is None
        with pytest.raises(preflight.PreflightError, match="answers 404") as caught:
            preflight.check_image(f"{base}/typo.qcow2?X-Amz-Signature=abc")
        assert "X-Amz" not in str(caught.value), "a signature is never printed"
    finally:
        server.shutdown()
        server.server_close()
    unreachable = preflight.check_image("https://aggregator.example/okai.qcow2")
    assert unreachable is not None and "could not check" in unreachable


# --- the data, read from the nodes' aggregators ----------------------------------------------


def test_the_data_is_read_and_checked_from_the_nodes_aggregators(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = preflight.check_data(stack.job(), walrus(stack))
    assert "digits:" in summary and "hashed" in summary
    monkeypatch.setattr(preflight, "HASH_SHARDS_UP_TO", 0)  # a dataset too big to hash here
    assert "present" in preflight.check_data(stack.job(), walrus(stack))


def test_a_dataset_that_is_missing_or_altered_is_refused(stack: Stack) -> None:
    wrong = ManifestRef(
        manifest_blob_id=stack.dataset.manifest_blob_id, sha256="sha256:" + "1" * 64
    )
    with pytest.raises(preflight.PreflightError, match="dataset 0") as caught:
        preflight.check_data(stack.job(datasets=(wrong,)), walrus(stack))
    assert caught.value.exit_code == 2 and "nothing was created" in caught.value.message
    absent = BlobRef(blob_id="A" * 43, sha256="sha256:" + "2" * 64)
    with pytest.raises(preflight.PreflightError, match="blob AAAA"):
        preflight.check_data(stack.job(datasets=(stack.dataset, absent)), walrus(stack))


def test_the_entry_point_is_read_and_checked(stack: Stack) -> None:
    code = b"def train(ctx):\n    raise SystemExit('not run here')\n"
    with stack.client() as client:
        stored = client.store_bytes(code)
    good = EntrypointModel(entrypoint_blob_id=stored.blob_id, sha256=Digest.of_bytes(code))
    assert "entry point hashed" in preflight.check_data(stack.job(model=good), walrus(stack))
    bad = good.model_copy(update={"sha256": "sha256:" + "3" * 64})
    with pytest.raises(preflight.PreflightError, match="the entry point"):
        preflight.check_data(stack.job(model=bad), walrus(stack))


def test_a_job_whose_data_is_not_there_rents_nothing(stack: Stack, fake: FluenceFake) -> None:
    wrong = ManifestRef(
        manifest_blob_id=stack.dataset.manifest_blob_id, sha256="sha256:" + "4" * 64
    )
    job = stack.job_file("nodata", stack.job(datasets=(wrong,)))
    done = up(str(job), "--yes", "--nodes-reach-endpoints")
    assert done.returncode == 2, done.stderr
    assert "pre-flight: dataset 0" in done.stderr
    assert_nothing_rented(fake)


# --- the account: balance and sizes ------------------------------------------------------------


def test_a_short_balance_still_shows_the_plan_and_up_refuses_it(
    stack: Stack, fake: FluenceFake
) -> None:
    fake.balance = Decimal("0.05")
    job = str(stack.job_file("poor"))
    shown = up(job, "--dry-run", "--nodes-reach-endpoints")
    assert shown.returncode == 0, shown.stderr
    assert "BALANCE TOO LOW" in shown.stdout and f"POST {fake.url}/v2/vms" in shown.stdout
    assert "data checked on" in shown.stdout
    refused = up(job, "--yes", "--nodes-reach-endpoints")
    assert refused.returncode == 2, refused.stderr
    assert "balance is 0.05 USD" in refused.stderr and "nothing was created" in refused.stderr
    assert_nothing_rented(fake)


def test_impossible_node_sizes_are_refused(stack: Stack, fake: FluenceFake) -> None:
    job = str(stack.job_file("sizes"))
    for option in (["--vcpu", "0"], ["--ram-gb", "-4"]):
        done = up(job, "--dry-run", "--nodes-reach-endpoints", *option)
        assert done.returncode == 2, done.stderr
        assert option[0] in done.stderr
    assert fake.log == []


# --- the node wait -----------------------------------------------------------------------------


class Silent:
    """A node that never answers (an image without the agent, a refused key)."""

    def __init__(self, rank: int) -> None:
        self.rank = rank

    def describe(self) -> str:
        return f"node {self.rank}"

    def info(self) -> NodeInfo:
        raise ChannelError(f"node {self.rank}: ssh: connect to host: Connection timed out")


class FakeClock:
    """Time that passes only when the code sleeps: a 600 s wait in no time."""

    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


@pytest.mark.parametrize("node_wait", [None, 45.0])
def test_after_the_node_wait_the_cluster_is_gone_and_says_why(
    stack: Stack, fake: FluenceFake, node_wait: float | None
) -> None:
    def silent(state: ClusterState, node: NodeRecord) -> NodeChannel:
        return Silent(node.rank)  # type: ignore[return-value]

    name = f"slow{int(node_wait or 0)}"
    reports: list[str] = []
    with client_for(fake) as client:
        backend = FluenceBackend(
            FluenceProvider(client, poll=FAST_POLL),
            image_url=IMAGE_URL,
            public_key=ssh_public_key(),
            channel_factory=silent,
        )
        request = clusters.ClusterRequest(name=name, job=stack.job(), node_wait_s=node_wait)
        backend.plan(request)
        clock = FakeClock()
        with pytest.raises(clusters.NodeUnreachable) as caught:
            clusters.up(
                request,
                backend,
                load_settings(None),
                clusters.Events(report=reports.append),
                clusters.Clock(now=clock.now, sleep=clock.sleep),
            )
    limit = node_wait or backend.ready_timeout_s
    assert f"did not answer within {limit:.0f} s" in caught.value.message
    hint = caught.value.hint or ""
    assert "nothing of it stays billed" in hint and "--node-wait" in hint
    assert "okai cluster status" not in hint, "the cluster it would point at is gone"
    waits = [line for line in reports if line.startswith("waiting for")]
    assert (
        waits[0]
        == f"waiting for 2 of 2 node(s) to answer: 0 s elapsed, {limit:.0f} s left of {limit:.0f} s"
    )
    assert "s elapsed" in waits[-1] and waits[-1] != waits[0]
    assert fake.billable() == []
    state = ClusterState.load(name)
    assert state.status == ClusterStatus.STOPPED
    assert state.error is not None and f"within {limit:.0f} s" in state.error
