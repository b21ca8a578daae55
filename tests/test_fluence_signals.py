"""`okai cluster up --provider fluence` stopped by a signal at every step of bring-up.

The real command runs in a subprocess against the spec-checking fake Fluence
API (and a real local Walrus server holding the job's data). The fake signals
the process right after it has answered the Nth create, or while the command
waits (for VMs to launch, for nodes to answer over SSH). Every verdict is the
provider's own view: after the rollback nothing is billed, or, when a second
signal stopped the rollback, the printed `okai cluster down` command removes
what is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from cluster_helpers import Stack, digits_stack
from fakes.fluence_fake import FluenceFake, Logged, Timing
from fakes.fluence_support import checked_fake, ssh_public_key
from okai.compute.state import ClusterState, ClusterStatus

pytestmark = pytest.mark.slow

IMAGE_URL = "https://aggregator.example/v1/blobs/by-quilt-id/q1/okai-node-qemu.qcow2"
CREATES = [
    ("POST", "/v1/ssh_keys"),
    ("POST", "/v1/public_ips"),
    ("POST", "/v1/public_ips"),
    ("POST", "/v1/security_groups"),
    ("PATCH", "/v1/security_groups/"),
    ("POST", "/v2/vms"),
    ("POST", "/v2/vms"),
]
"""The writes of a 2-node bring-up, in order, until the VMs launch."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with digits_stack(tmp_path_factory.mktemp("signals")) as ready:
        key = ready.home / "id_ed25519"
        key.write_text("not a real private key\n")
        key.with_name("id_ed25519.pub").write_text(ssh_public_key() + "\n")
        yield ready


@pytest.fixture
def fake(stack: Stack) -> Iterator[FluenceFake]:
    # Instant lifecycles (a wait's first look sees the change), except where a test slows one.
    instant = Timing(**{name: 0.0 for name in Timing.__dataclass_fields__})
    with checked_fake(timing=instant) as running:
        yield running


def writes(fake: FluenceFake) -> list[Logged]:
    return [e for e in fake.log if e.method != "GET" and e.path != "/v1/prices/cost"]


def fluence_env(fake: FluenceFake, key: str | None = None) -> dict[str, str]:
    return {**os.environ, "OKAI_FLUENCE_URL": fake.url, "OKAI_FLUENCE_API_KEY": key or fake.api_key}


def run_down(
    fake: FluenceFake, name: str, key: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`okai cluster down NAME`, the command the user is told to run."""
    command = [sys.executable, "-m", "okai", "cluster", "down", name]
    env = fluence_env(fake, key)
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def start_up(stack: Stack, fake: FluenceFake, name: str, *extra: str) -> subprocess.Popen[str]:
    env = fluence_env(fake)
    command = [sys.executable, "-m", "okai", "cluster", "up", str(stack.job_file(name)),
               "--provider", "fluence", "--yes", "--name", name, "--image-url", IMAGE_URL,
               "--ssh-key", "id_ed25519", "--nodes-reach-endpoints", "--node-wait", "120", *extra]  # fmt: skip
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def signal_when(
    fake: FluenceFake,
    process: subprocess.Popen[str],
    sig: int,
    when: Callable[[Logged], bool],
    *,
    in_flight: bool = False,
) -> list[Logged]:
    """Send `sig` to `process` once, right after the fake answers a request `when` accepts
    (with `in_flight`, as that request arrives: the process is waiting for its answer)."""
    sent: list[Logged] = []

    def hook(entry: Logged) -> None:
        if not sent and when(entry):
            sent.append(entry)
            process.send_signal(sig)

    (fake.on_received if in_flight else fake.on_answered).append(hook)
    return sent


def after_write(fake: FluenceFake, n: int) -> Callable[[Logged], bool]:
    def nth(entry: Logged) -> bool:
        return entry in writes(fake) and len(writes(fake)) == n

    return nth


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, stderr


def assert_rolled_back(fake: FluenceFake, name: str, code: int, stderr: str, sig: str) -> None:
    assert code == 130, stderr
    assert f"interrupted by {sig}" in stderr
    assert f"cluster {name} was rolled back: nothing of it is billed" in stderr, stderr
    assert fake.billable() == []
    state = ClusterState.load(name)
    assert state.status == ClusterStatus.STOPPED and state.live_resources() == []
    assert state.error == f"interrupted by {sig}", "the state file says why it stopped"


@pytest.mark.parametrize("step", range(1, len(CREATES) + 1))
def test_sigterm_after_each_create_rolls_everything_back(
    stack: Stack, fake: FluenceFake, step: int
) -> None:
    name = f"term{step}"
    process = start_up(stack, fake, name)
    sent = signal_when(fake, process, signal.SIGTERM, after_write(fake, step))
    code, stderr = finish(process)
    assert sent, f"the bring-up never reached write {step}: {stderr}"
    method, path = CREATES[step - 1]
    assert sent[0].method == method and sent[0].path.startswith(path)
    assert_rolled_back(fake, name, code, stderr, "SIGTERM")
    # `--ssh-key id_ed25519` was given relative: `status` and `logs` run from anywhere.
    assert ClusterState.load(name).details["sshKey"] == str(stack.home / "id_ed25519")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP])
def test_sigint_and_sighup_roll_back_the_same_way(
    stack: Stack, fake: FluenceFake, sig: signal.Signals
) -> None:
    name = f"sig{sig.value}"
    process = start_up(stack, fake, name)
    sent = signal_when(fake, process, sig, after_write(fake, 6))  # after the first VM
    code, stderr = finish(process)
    assert sent
    assert_rolled_back(fake, name, code, stderr, sig.name)


def test_a_signal_while_the_vms_launch_rolls_back(stack: Stack, fake: FluenceFake) -> None:
    fake.timing.vm_launching = 300.0  # launching takes long: the command polls and sleeps

    def waiting(entry: Logged) -> bool:
        launching = [vm for vm in fake.of_kind("vm") if vm["status"] == "launching"]
        return entry.method == "GET" and entry.path == "/v2/vms" and len(launching) == 2

    process = start_up(stack, fake, "launch")
    sent = signal_when(fake, process, signal.SIGTERM, waiting)
    code, stderr = finish(process)
    assert sent
    assert_rolled_back(fake, "launch", code, stderr, "SIGTERM")


def test_a_signal_while_waiting_for_the_nodes_rolls_back(stack: Stack, fake: FluenceFake) -> None:
    # The VMs launch at once; their addresses (203.0.113.x) never answer over SSH.
    process = start_up(stack, fake, "nodes")
    try:
        wait_for_status("nodes", ClusterStatus.UP, process)
        time.sleep(1.0)  # into the node wait
        process.send_signal(signal.SIGTERM)
    finally:
        code, stderr = finish(process)
    assert_rolled_back(fake, "nodes", code, stderr, "SIGTERM")


def wait_for_status(name: str, status: ClusterStatus, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if ClusterState.load(name).status == status:
                return
        except Exception:  # not written yet, or mid-rename
            pass
        time.sleep(0.05)
    raise AssertionError(f"cluster {name} never became {status.value}")


def test_a_second_signal_stops_the_rollback_and_prints_the_command_that_finishes_it(
    stack: Stack, fake: FluenceFake
) -> None:
    process = start_up(stack, fake, "twice")
    first = signal_when(fake, process, signal.SIGTERM, after_write(fake, 7))
    second = signal_when(  # while the rollback's first call is in flight
        fake,
        process,
        signal.SIGINT,
        lambda e: e.method == "POST" and e.path.endswith("/terminate"),
        in_flight=True,
    )
    code, stderr = finish(process)
    assert first and second
    assert code == 130, stderr
    assert "finishing the current call" in stderr
    assert "run `okai cluster down twice`" in stderr, stderr
    # The rollback stopped after that one call: it recorded what may still be billed.
    terminates = [e for e in writes(fake) if e.path.endswith("/terminate")]
    assert len(terminates) == 1
    state = ClusterState.load("twice")
    assert state.status == ClusterStatus.FAILED
    assert "stopped by SIGINT" in (state.error or "") and "vm twice-r1" in (state.error or "")
    assert "interrupted by SIGTERM" in (state.error or ""), "why it stopped in the first place"
    assert fake.billable(), "the second signal left resources behind"
    down = run_down(fake, "twice")  # the printed command
    assert down.returncode == 0, down.stderr
    assert fake.billable() == []


def test_a_killed_up_leaves_a_record_that_down_finishes(stack: Stack, fake: FluenceFake) -> None:
    process = start_up(stack, fake, "killed")
    sent = signal_when(fake, process, signal.SIGKILL, after_write(fake, 6))
    code, _ = finish(process)
    assert sent and code == -signal.SIGKILL
    assert fake.billable()
    # With a key Fluence rejects, `down` says which variable to fix and deletes nothing.
    before = len(writes(fake))
    refused = run_down(fake, "killed", key="a-revoked-key")
    assert refused.returncode == 2 and "OKAI_FLUENCE_API_KEY" in refused.stderr
    assert len(writes(fake)) == before
    down = run_down(fake, "killed")
    assert down.returncode == 0, down.stderr
    assert fake.billable() == []
    assert ClusterState.load("killed").status == ClusterStatus.STOPPED
