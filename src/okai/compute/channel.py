"""The control channel to a node: deliver job files, start the agent, read its status,
stream its logs and fetch its run directory.

`NodeChannel` is what `okai cluster` needs from a node, whatever the provider:

- `SshChannel` drives an okai image over SSH (Fluence VMs): files are written
  whole and renamed into `/var/lib/okai/job/`, where the NixOS module's path
  unit starts the agent when `cluster.json` arrives; status and logs come from
  `okai node status|logs` on the node; the run directory comes back as a tar
  stream.
- `LocalChannel` drives a node that is a folder and a process group on this
  machine (the local provider's nodes). Behind the same interface it also
  stands in for SSH in tests of the Fluence path: a test transport, which runs
  the very agent a VM would run, only here.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from okai.atomic import write_atomically
from okai.compute.marks import MARK_ENV, stop_marked
from okai.compute.node import files as node_files
from okai.compute.node import logs as node_logs
from okai.compute.node.host import ADDRESS_ENV, node_info
from okai.compute.node.status import NodeStatus, read_status
from okai.compute.ssh import SshTarget, ssh_argv
from okai.config import Secrets
from okai.documents import validation_problem
from okai.errors import OperationalError
from okai.inert import inert
from okai.processes import Launched, launch
from okai.train.receipt import IMAGE_FILE

SSH_TIMEOUT_S = 60.0
REMOTE_STATE_DIR = str(node_files.DEFAULT_STATE_DIR)
AGENT_UNIT = "okai-node.service"


class ChannelError(OperationalError):
    """A node could not be reached or did not do what was asked."""


class _NodeRecord(BaseModel):
    # Fields a newer agent adds are ignored: the cluster reads only what it needs.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class NodeInterface(_NodeRecord):
    name: str
    address: str


class NodeInfo(_NodeRecord):
    """`okai node info`: who a node is and the address the other members reach it at.

    `address` is only typed here; `okai.compute.cluster.wait` checks that it is an IP
    address before it goes into every member's files.
    """

    address: str
    okai_version: str | None = None
    hostname: str | None = None
    interfaces: list[NodeInterface] = []
    host: str | None = None
    """`okai image` or `unregistered host`."""
    image: dict[str, Any] | None = None
    registered: bool = False

    @classmethod
    def parse(cls, data: Any, node: str) -> NodeInfo:
        """`data` as a node sent it; a malformed answer is refused, not waited out."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            fields, problem = validation_problem(exc)
            where = inert(".".join(fields)) or "the answer"
            raise OperationalError(
                f"{node} answered `okai node info` with a malformed {where}: {problem}",
                hint="the node runs an okai that does not match this one",
            ) from None


class NodeChannel(Protocol):
    """What the cluster layer does with one node."""

    rank: int

    def describe(self) -> str:
        """How messages name the node."""
        ...

    def info(self) -> NodeInfo:
        """`okai node info` of the node: identity and the address members reach it at."""
        ...

    def write_job_file(self, name: str, data: bytes) -> None:
        """Put `data` at `<state dir>/job/<name>`, whole (written aside, then renamed)."""
        ...

    def write_secrets(self, values: Mapping[str, str]) -> None:
        """Give the agent started next these environment variables, out of every file and log."""
        ...

    def start_agent(self) -> None:
        """Start the agent on the delivered files (again, after it died)."""
        ...

    def stop_agent(self) -> None:
        """Stop the agent and its training processes."""
        ...

    def status(self) -> NodeStatus:
        """The agent's status."""
        ...

    def logs(self, *, follow: bool, lines: int | None) -> Iterator[str]:
        """The node's log lines (`okai node logs`)."""
        ...

    def fetch_run(self, run_id: str, dest: Path, *, exclude: Sequence[str] = ()) -> None:
        """Copy `<state dir>/runs/<run_id>/` into `dest` (created), leaving out `exclude`."""
        ...


# --- SSH ------------------------------------------------------------------------------------


class SshChannel:
    """A node running the okai image, reached over SSH as root with the operator's key."""

    def __init__(
        self,
        rank: int,
        target: SshTarget,
        *,
        state_dir: str = REMOTE_STATE_DIR,
        secrets_file: str = str(node_files.SECRETS_FILE),
        timeout_s: float = SSH_TIMEOUT_S,
    ) -> None:
        self.rank = rank
        self.target = target
        self.state_dir = state_dir
        self.secrets_file = secrets_file
        self.timeout_s = timeout_s

    def describe(self) -> str:
        return f"node {self.rank} ({self.target.host})"

    def argv(self, command: str) -> list[str]:
        """The ssh command line running the shell `command` on the node."""
        return ssh_argv(self.target, [command])

    def _call(self, command: str, *, data: bytes | None = None, what: str) -> bytes:
        try:
            done = subprocess.run(
                self.argv(command),
                input=data,
                capture_output=True,
                timeout=self.timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ChannelError(f"{self.describe()}: {what} timed out over SSH") from exc
        except OSError as exc:
            raise ChannelError(f"cannot run ssh: {exc.strerror or exc}") from exc
        if done.returncode != 0:
            detail = done.stderr.decode("utf-8", errors="replace").strip().splitlines()[-3:]
            raise ChannelError(
                f"{self.describe()}: {what} failed over SSH (exit {done.returncode}): "
                + " | ".join(detail),
                hint="check that the node is up and accepts your key (`okai cluster status`)",
            )
        return bytes(done.stdout)

    def _okai_json(self, *args: str, what: str) -> Any:
        raw = self._call(shlex.join(["okai", "--json", *args]), what=what)
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ChannelError(f"{self.describe()}: {what} did not answer JSON") from exc

    def info(self) -> NodeInfo:
        data = self._okai_json("node", "info", what="reading the node's identity")
        return NodeInfo.parse(data, self.describe())

    def write_job_file(self, name: str, data: bytes) -> None:
        folder = f"{self.state_dir}/{node_files.JOB_DIR}"
        final = f"{folder}/{name}"
        tmp = f"{folder}/.{name}.tmp"
        command = (
            f"umask 022 && mkdir -p {shlex.quote(folder)} && cat > {shlex.quote(tmp)} "
            f"&& mv -f {shlex.quote(tmp)} {shlex.quote(final)}"
        )
        self._call(command, data=data, what=f"writing {name}")

    def write_secrets(self, values: Mapping[str, str]) -> None:
        # On stdin, never in the command line (which `ps` shows); root-only, on the image's tmpfs.
        folder, name = os.path.split(self.secrets_file)
        tmp = f"{folder}/.{name}.tmp"
        command = (
            f"umask 077 && mkdir -p {shlex.quote(folder)} && cat > {shlex.quote(tmp)} "
            f"&& mv -f {shlex.quote(tmp)} {shlex.quote(self.secrets_file)}"
        )
        self._call(command, data=node_files.environment_file(values), what="delivering secrets")

    def start_agent(self) -> None:
        # The path unit starts the agent when cluster.json appears; this also covers a
        # unit that gave up after failing, and is a no-op on a running one.
        unit = shlex.quote(AGENT_UNIT)
        self._call(
            f"systemctl reset-failed {unit} 2>/dev/null; systemctl start --no-block {unit}",
            what="starting the agent",
        )

    def stop_agent(self) -> None:
        self._call(f"systemctl stop {shlex.quote(AGENT_UNIT)}", what="stopping the agent")

    def status(self) -> NodeStatus:
        data = self._okai_json(
            "node", "status", "--state-dir", self.state_dir, what="reading the agent's status"
        )
        return NodeStatus.model_validate(data)

    def logs(self, *, follow: bool, lines: int | None) -> Iterator[str]:
        args = ["okai", "node", "logs", "--state-dir", self.state_dir]
        if follow:
            args.append("--follow")
        if lines is not None:
            args += ["--lines", str(lines)]
        process = subprocess.Popen(
            self.argv(shlex.join(args)), stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        assert process.stdout is not None
        try:
            for raw in process.stdout:
                yield raw.decode("utf-8", errors="replace").rstrip("\n")
        finally:
            if process.poll() is None:
                process.terminate()
            process.wait()

    def fetch_run(self, run_id: str, dest: Path, *, exclude: Sequence[str] = ()) -> None:
        runs = f"{self.state_dir}/{node_files.RUNS_DIR}"
        tar = ["tar", "-C", f"{runs}/{run_id}", "-cf", "-"]
        tar += [f"--exclude=./{name}" for name in exclude]
        tar.append(".")
        process = subprocess.Popen(
            self.argv(shlex.join(tar)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        assert process.stdout is not None and process.stderr is not None
        dest.mkdir(parents=True, exist_ok=True)
        try:
            with tarfile.open(fileobj=process.stdout, mode="r|") as archive:
                # The "data" filter refuses links out, absolute paths and device files.
                archive.extractall(dest, filter="data")
        except (tarfile.TarError, OSError) as exc:
            process.kill()
            raise ChannelError(
                f"{self.describe()}: the run directory did not arrive: {exc}"
            ) from exc
        finally:
            code = process.wait(timeout=self.timeout_s)
        if code != 0:
            detail = process.stderr.read().decode("utf-8", errors="replace").strip()[-300:]
            raise ChannelError(f"{self.describe()}: fetching run {run_id} failed: {detail}")


# --- local ------------------------------------------------------------------------------------


class LocalChannel:
    """A node that is a folder on this machine, its agent a local process.

    The agent runs as `python -m okai node run` with the folder as its state
    dir and `env` added to this process's environment, less its secrets
    (`okai.config.Secrets`): only those given to `write_secrets` reach it. `on_start` is told of
    every agent started, so the caller can record it for teardown.

    Used as the Fluence provider's transport, this is a test transport: it
    delivers the files a VM would get over SSH into a folder, and runs the
    same agent here.
    """

    def __init__(
        self,
        rank: int,
        root: Path,
        *,
        env: Mapping[str, str] | None = None,
        on_start: Callable[[Launched], None] | None = None,
        python: str = sys.executable,
        image_file: Path = IMAGE_FILE,
    ) -> None:
        self.rank = rank
        self.image_file = image_file
        self.root = root
        self.env = dict(env or {})
        self._on_start = on_start or (lambda launched: None)
        self.python = python
        self.launched: list[Launched] = []

    def describe(self) -> str:
        return f"node {self.rank} ({self.root})"

    def _environment(self) -> dict[str, str]:
        # This machine's secrets stay here: a node gets those delivered to it, as a VM does.
        withheld = set(Secrets.env_names())
        env = {name: value for name, value in os.environ.items() if name not in withheld}
        env.update(self.env)
        env[node_files.STATE_DIR_ENV] = str(self.root)
        return env

    def info(self) -> NodeInfo:
        data = node_info(self.image_file, address=self.env.get(ADDRESS_ENV))
        return NodeInfo.parse(data, self.describe())

    def write_job_file(self, name: str, data: bytes) -> None:
        write_atomically(self.root / node_files.JOB_DIR / name, data)

    def write_secrets(self, values: Mapping[str, str]) -> None:
        node_files.environment_file(values)  # refused here as an image would refuse it
        self.env.update(values)  # into the agent's environment, as systemd does on the image

    def agent_argv(self) -> list[str]:
        job = self.root / node_files.JOB_DIR
        return [
            self.python, "-m", "okai", "node", "run",
            "--job", str(job / node_files.JOB_FILE),
            "--cluster", str(job / node_files.CLUSTER_FILE),
            "--state-dir", str(self.root),
            "--image-identity", str(self.image_file),
        ]  # fmt: skip

    def start_agent(self) -> None:
        launched = launch(self.agent_argv(), self.root / "agent.out", env=self._environment())
        self.launched.append(launched)
        self._on_start(launched)

    def stop_agent(self) -> None:
        token = self.env.get(MARK_ENV)
        if token:  # the whole node: agent, torchrun and workers, however they were started
            stop_marked(token)
            return
        for launched in self.launched:
            if not launched.exited():
                launched.process.terminate()
        for launched in self.launched:
            try:
                launched.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                launched.process.kill()
                launched.process.wait()

    def status(self) -> NodeStatus:
        return read_status(self.root)

    def logs(self, *, follow: bool, lines: int | None) -> Iterator[str]:
        if follow:
            return node_logs.follow(self.root)
        return node_logs.tail(self.root, lines)

    def fetch_run(self, run_id: str, dest: Path, *, exclude: Sequence[str] = ()) -> None:
        source = self.root / node_files.RUNS_DIR / run_id
        if not source.is_dir():
            raise ChannelError(f"{self.describe()}: it has no run {run_id}")
        top = set(exclude)
        shutil.copytree(
            source,
            dest,
            dirs_exist_ok=True,
            ignore=lambda folder, names: [n for n in names if Path(folder) == source and n in top],
        )
