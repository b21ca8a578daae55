"""The SSH control channel, minus the network: every remote command runs in a local shell.

`LoopbackShell` is a test stand-in for `SshChannel`: it keeps every command
line SshChannel builds (quoting, atomic writes, `okai node ...`, the tar
stream) but runs it with `bash -c` here instead of through `ssh`, against a
state dir in a temporary folder. No sshd is needed, and what is tested is the
exact text that would travel over SSH.
"""

from __future__ import annotations

import io
import os
import shlex
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from okai.compute.channel import ChannelError, LocalChannel, SshChannel
from okai.compute.node.status import NodeState, NodeStatus, write_status
from okai.compute.ssh import SshTarget, ssh_argv
from okai.config import Secrets
from okai.errors import UsageError


class LoopbackShell(SshChannel):
    """Test stand-in: runs the command SshChannel would send over SSH in a local bash."""

    def argv(self, command: str) -> list[str]:
        return ["bash", "-c", command]


@pytest.fixture
def okai_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`okai` on PATH, as on the image: this checkout's, through the same interpreter."""
    import sys

    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "okai"
    script.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m okai "$@"\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")


@pytest.fixture
def channel(tmp_path: Path) -> Iterator[LoopbackShell]:
    target = SshTarget(host="203.0.113.7", known_hosts=tmp_path / "known_hosts")
    yield LoopbackShell(1, target, state_dir=str(tmp_path / "var lib okai"), timeout_s=60)


def test_the_ssh_command_line_is_batch_mode_with_the_cluster_s_own_known_hosts(
    tmp_path: Path,
) -> None:
    target = SshTarget(host="203.0.113.7", known_hosts=tmp_path / "kh", identity=tmp_path / "id")
    argv = SshChannel(0, target).argv("okai --json node status --state-dir /var/lib/okai")
    assert argv == ssh_argv(target, ["okai --json node status --state-dir /var/lib/okai"])
    joined = " ".join(argv)
    assert "BatchMode=yes" in joined and f"UserKnownHostsFile={tmp_path / 'kh'}" in joined
    assert argv[-2:] == ["root@203.0.113.7", "okai --json node status --state-dir /var/lib/okai"]


def test_job_files_arrive_whole_whatever_they_hold(channel: LoopbackShell) -> None:
    hostile = b"line one\n'quoted' \"double\" $HOME `date` \\ \x00\xff\n" * 100
    channel.write_job_file("job.json", hostile)
    channel.write_job_file("job.json", b"second version\n")
    folder = Path(channel.state_dir) / "job"
    assert (folder / "job.json").read_bytes() == b"second version\n"
    assert sorted(p.name for p in folder.iterdir()) == ["job.json"], "no temporary file left"
    assert oct((folder / "job.json").stat().st_mode & 0o777) == "0o644"


def test_secrets_arrive_on_stdin_into_a_root_only_file(tmp_path: Path) -> None:
    sent: list[str] = []

    class Recording(LoopbackShell):
        def argv(self, command: str) -> list[str]:
            sent.append(command)
            return super().argv(command)

    secrets_file = tmp_path / "run okai" / "secrets.env"
    target = SshTarget(host="203.0.113.7", known_hosts=tmp_path / "known_hosts")
    channel = Recording(
        0, target, state_dir=str(tmp_path / "state"), secrets_file=str(secrets_file)
    )
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJqdGkiOiJhIn0.c2ln,eyJhbGciOiJIUzI1NiJ9.eyJqdGkiOiJiIn0.c2ln"
    channel.write_secrets({"OKAI_WALRUS_JWT": jwt})
    assert secrets_file.read_text() == f"OKAI_WALRUS_JWT={jwt}\n"
    assert oct(secrets_file.stat().st_mode & 0o777) == "0o600"
    assert oct(secrets_file.parent.stat().st_mode & 0o777) == "0o700"
    assert sorted(p.name for p in secrets_file.parent.iterdir()) == ["secrets.env"]
    assert sent and all("eyJ" not in command for command in sent), "never on a command line"


@pytest.mark.parametrize(
    "values",
    [
        {"OKAI_WALRUS_JWT": "line\nINJECTED=1"},
        {"OKAI_WALRUS_JWT": "$(reboot)"},
        {"OKAI_WALRUS_JWT": ""},
        {"bad name": "x"},
    ],
    ids=["newline", "dollar", "empty", "name"],
)
def test_secrets_systemd_would_misread_are_refused_unshown(
    channel: LoopbackShell, values: dict[str, str]
) -> None:
    with pytest.raises(UsageError) as caught:
        channel.write_secrets(values)
    assert "INJECTED" not in str(caught.value) and "reboot" not in str(caught.value)


def test_local_nodes_get_only_the_secrets_delivered_to_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in Secrets.env_names():
        monkeypatch.setenv(name, f"value-of-{name}")
    monkeypatch.setenv("OKAI_WALRUS_PUBLISHER", "http://127.0.0.1:1")
    node = LocalChannel(0, tmp_path / "node", env={"OKAI_HOME": str(tmp_path / "home")})
    before = node._environment()
    assert not set(Secrets.env_names()) & set(before), "this machine's secrets stay here"
    assert before["OKAI_WALRUS_PUBLISHER"] == "http://127.0.0.1:1"
    node.write_secrets({"OKAI_WALRUS_JWT": "a.b.c"})
    assert node._environment()["OKAI_WALRUS_JWT"] == "a.b.c"


def test_status_and_info_come_from_okai_on_the_node(
    channel: LoopbackShell, okai_on_path: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert channel.status().state == NodeState.IDLE
    write_status(
        Path(channel.state_dir), NodeStatus(state=NodeState.FINISHED, run_id="r1", node_rank=1)
    )
    status = channel.status()
    assert (status.state, status.run_id, status.node_rank) == (NodeState.FINISHED, "r1", 1)
    monkeypatch.setenv("OKAI_NODE_ADDRESS", "10.1.2.3")
    assert channel.info().address == "10.1.2.3"


def test_a_failing_remote_command_says_which_node_and_why(channel: LoopbackShell) -> None:
    class Broken(LoopbackShell):
        def argv(self, command: str) -> list[str]:
            return ["bash", "-c", "echo 'Permission denied (publickey).' >&2; exit 255"]

    broken = Broken(1, channel.target, state_dir=channel.state_dir)
    with pytest.raises(ChannelError) as caught:
        broken.status()
    assert "node 1 (203.0.113.7)" in caught.value.message
    assert "exit 255" in caught.value.message and "Permission denied" in caught.value.message


def test_the_run_directory_comes_back_without_checkpoints(
    channel: LoopbackShell, tmp_path: Path
) -> None:
    run = Path(channel.state_dir) / "runs" / "r1"
    (run / "logs").mkdir(parents=True)
    (run / "checkpoints" / "step-5").mkdir(parents=True)
    (run / "model.safetensors").write_bytes(os.urandom(4096))
    (run / "logs" / "torchrun.log").write_text("hello\n")
    (run / "checkpoints" / "step-5" / "state.pt").write_bytes(b"big")
    dest = tmp_path / "fetched"
    channel.fetch_run("r1", dest, exclude=("checkpoints",))
    assert (dest / "model.safetensors").read_bytes() == (run / "model.safetensors").read_bytes()
    assert (dest / "logs" / "torchrun.log").read_text() == "hello\n"
    assert not (dest / "checkpoints").exists()
    with pytest.raises(ChannelError):
        channel.fetch_run("no-such-run", tmp_path / "nothing")


def test_a_tar_stream_reaching_outside_the_run_dir_is_refused(tmp_path: Path) -> None:
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w") as archive:
        data = b"pwned\n"
        info = tarfile.TarInfo("../escaped.txt")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    payload = tmp_path / "evil.tar"
    payload.write_bytes(evil.getvalue())

    class Hostile(LoopbackShell):
        def argv(self, command: str) -> list[str]:
            return ["cat", str(payload)]

    hostile = Hostile(0, SshTarget(host="h", known_hosts=tmp_path / "kh"), state_dir="/x")
    dest = tmp_path / "inside" / "run"
    with pytest.raises(ChannelError, match="did not arrive"):
        hostile.fetch_run("r1", dest)
    assert not (tmp_path / "inside" / "escaped.txt").exists()


def test_logs_stream_line_by_line(channel: LoopbackShell, okai_on_path: None) -> None:
    state_dir = Path(channel.state_dir)
    state_dir.mkdir(parents=True)
    (state_dir / "agent.log").write_text("one\ntwo; $(rm -rf /)\n")
    write_status(state_dir, NodeStatus(state=NodeState.FINISHED))
    assert list(channel.logs(follow=False, lines=None)) == [
        "==> agent.log <==",
        "one",
        "two; $(rm -rf /)",
    ]
    followed = list(channel.logs(follow=True, lines=None))
    assert followed == ["agent.log: one", "agent.log: two; $(rm -rf /)"]
