"""The launcher: run a job on this machine with torchrun, and report how it went.

`launch` prepares the run directory, starts `python -m torch.distributed.run`
(c10d rendezvous, elastic restarts) on the worker module `okai.train.worker`,
follows `metrics.jsonl` to report progress, and turns a failure back into the
error that caused it. It is what `okai train` calls, and what the node agent of
a cluster calls on each node with an explicit `Rendezvous`.

One node: torchrun's standalone c10d rendezvous on a free local port. Several
nodes: each node runs `launch` with the same `Rendezvous` (endpoint on one of
them, same run ID); torchrun assigns the ranks.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from okai.errors import (
    DocumentError,
    IntegrityError,
    OkaiError,
    OperationalError,
    UsageError,
    VerificationError,
)
from okai.manifest import JobSpec
from okai.provenance.receipt import Receipt
from okai.train.builtins import check_job
from okai.train.data import SourceSpec, check_source
from okai.train.errors import EntrypointError, TrainingFailed
from okai.train.job import load_checked_job
from okai.train.receipt import utc_now
from okai.train.rundir import (
    ERRORS_DIR,
    FATAL_FILE,
    JOB_FILE,
    LOGS_DIR,
    METRICS_FILE,
    RECEIPT_FILE,
    STARTED_AT_ENV,
)
from okai.train.sandbox import INPUTS, RUN, Sandbox, Wrapped, environment, without_secrets

POLL_SECONDS = 0.2
STOP_GRACE_SECONDS = 30
MAX_RECORD_BYTES = 1 << 20
"""Most read of a receipt or an error record: the training code wrote them."""
MAX_METRICS_READ = 4 << 20
"""Most of metrics.jsonl read per poll."""


@dataclass(frozen=True, kw_only=True)
class Rendezvous:
    """Where the nodes of a multi-node run meet: torchrun's c10d rendezvous."""

    endpoint: str
    """host:port of the c10d store; the node whose address this is hosts it."""
    run_id: str
    """Shared by all nodes: torchrun's rendezvous ID and the run's ID."""
    node_rank: int | None = None
    """For the record only: the c10d rendezvous assigns ranks itself."""
    local_addr: str | None = None
    """The address this node is reached at by the others (its private-network address)."""
    interface: str | None = None
    """The network interface for gloo/NCCL traffic; derived from local_addr when omitted."""
    hosts_store: bool | None = None
    """Whether this node serves the c10d store; by default, whether local_addr is the
    endpoint's host (torchrun's own guess compares host names, which fails when a node's
    name resolves to another address)."""
    join_timeout: int = 600

    @property
    def endpoint_host(self) -> str:
        return self.endpoint.rsplit(":", 1)[0].strip("[]")

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[^\s:]+:[0-9]{1,5}|\[[0-9a-fA-F:]+\]:[0-9]{1,5}", self.endpoint):
            raise UsageError(f"rendezvous endpoint must be HOST:PORT, got {self.endpoint!r}")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", self.run_id):
            raise UsageError(
                f"run ID {self.run_id!r} must be letters, digits, '.', '_' or '-' (at most 128)"
            )


@dataclass(frozen=True, kw_only=True)
class LaunchOptions:
    """How to run a job here; unset values come from the job."""

    source: SourceSpec
    nproc_per_node: int | None = None
    nnodes: int | None = None
    rendezvous: Rendezvous | None = None
    run_dir: Path | None = None
    runs_root: Path = Path("runs")
    max_restarts: int = 3
    env: Mapping[str, str] = field(default_factory=dict)
    """Extra environment for torchrun and the workers."""
    sandbox: Sandbox | None = None
    """Run torchrun inside this sandbox: a stranger's code (one node and a local source
    unless the sandbox shares the network, as on a cluster node)."""


@dataclass(frozen=True)
class Progress:
    """The state of a run, from rank 0's metrics (only on the node hosting rank 0)."""

    epoch: int
    epochs: int | None
    step: int
    total_steps: int | None
    loss: float | None
    samples_per_second: float | None
    advice: str | None = None
    """A warning about the run's set-up (okai.train.advice), once one was given."""


@dataclass(frozen=True)
class RunResult:
    run_id: str
    run_dir: Path
    receipt: Receipt | None
    """None on a node that did not host rank 0 (its run directory holds logs only)."""


def train(
    job_file: str | Path,
    options: LaunchOptions,
    *,
    progress: Callable[[Progress], None] | None = None,
) -> RunResult:
    """Load a job file, check it, and run it (see `launch`)."""
    job = load_checked_job(job_file)
    return launch(job, options, source_name=job_file, progress=progress)


def launch(
    job: JobSpec,
    options: LaunchOptions,
    *,
    source_name: str | Path = "job",
    progress: Callable[[Progress], None] | None = None,
) -> RunResult:
    """Run `job` on this node with torchrun; return when every rank here has finished."""
    check_job(job, source_name)
    check_source(options.source)
    nproc = options.nproc_per_node or job.procs_per_node
    nnodes = options.nnodes or job.nodes
    if nnodes > 1 and options.rendezvous is None:
        raise UsageError(
            f"the job runs on {nnodes} nodes, which need a rendezvous endpoint",
            hint="pass --rdzv-endpoint HOST:PORT and --rdzv-id on every node, or --nnodes 1",
        )
    if options.max_restarts < 0:
        raise UsageError(f"max restarts must be 0 or more, got {options.max_restarts}")
    sandbox = options.sandbox
    if (
        sandbox is not None
        and not sandbox.network
        and (nnodes > 1 or options.source.kind != "local")
    ):
        raise UsageError("a sandboxed run has no network: one node, data from a local store")
    run_id = _run_id(job, options)
    run_dir = options.run_dir or options.runs_root / run_id
    _prepare(run_dir, job)
    if sandbox is None:
        command = Wrapped(
            _torchrun_command(
                run_dir.resolve(), str(options.source), run_id, nproc, nnodes, options
            ),
            (),
        )
    elif sandbox.network:  # a cluster node's job: it reads its data over the network
        inner = _torchrun_command(RUN, str(options.source), run_id, nproc, nnodes, options)
        command = sandbox.wrap(inner, None, run_dir)
    else:
        inner = _torchrun_command(RUN, f"local:{INPUTS}", run_id, nproc, nnodes, options)
        command = sandbox.wrap(inner, Path(options.source.location), run_dir)
    env = _environment(options)
    with (run_dir / LOGS_DIR / "torchrun.log").open("ab") as log, command:
        process = subprocess.Popen(
            command.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            pass_fds=command.fds,
        )
        # Alone, stop at once on an error no restart can fix; with other nodes, let
        # torchrun's restarts run out so that every node fails together.
        fatal = run_dir / ERRORS_DIR / FATAL_FILE if options.rendezvous is None else None
        code = _follow(process, run_dir / METRICS_FILE, progress, fatal)
    if code != 0:
        raise _failure(run_dir, code)
    receipt_path = run_dir / RECEIPT_FILE
    raw = read_run_file(receipt_path, MAX_RECORD_BYTES)
    receipt = None if raw is None else Receipt.from_json_bytes(raw, receipt_path)
    return RunResult(run_id=run_id, run_dir=run_dir, receipt=receipt)


def read_run_file(path: Path, limit: int, offset: int = 0) -> bytes | None:
    """Up to `limit` bytes of a regular file in a run directory; None if there is none.

    The training code writes the run directory and may be hostile: a symbolic link (to
    a secret, to /dev/zero) or a FIFO in place of a file is refused, not followed.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OperationalError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with os.fdopen(fd, "rb") as stream:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OperationalError(f"{path} is not a regular file")
        stream.seek(offset)
        return stream.read(limit)


def _run_id(job: JobSpec, options: LaunchOptions) -> str:
    if options.rendezvous is not None:
        return options.rendezvous.run_id
    if options.run_dir is not None:
        return options.run_dir.name
    slug = re.sub(r"[^a-z0-9]+", "-", job.name.lower()).strip("-")[:40] or "run"
    return f"{slug}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def _prepare(run_dir: Path, job: JobSpec) -> None:
    """Create the run directory, or accept one left by an interrupted run of the same job."""
    if (run_dir / RECEIPT_FILE).exists():
        raise UsageError(
            f"run {run_dir} has already finished (it has a receipt)",
            hint="use a new run directory",
        )
    canonical = job.canonical_bytes()
    job_path = run_dir / JOB_FILE
    if job_path.exists() and job_path.read_bytes() != canonical:
        raise UsageError(
            f"run {run_dir} belongs to a different job", hint="use a new run directory"
        )
    (run_dir / LOGS_DIR).mkdir(parents=True, exist_ok=True)
    # Canonical bytes: the file's SHA-256 is the job digest the receipt records.
    job_path.write_bytes(canonical)
    errors = run_dir / ERRORS_DIR
    if errors.exists():
        for old in errors.iterdir():
            old.unlink()


def _torchrun_command(
    run_dir: Path, source: str, run_id: str, nproc: int, nnodes: int, options: LaunchOptions
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nnodes={nnodes}",
        f"--nproc-per-node={nproc}",
        f"--max-restarts={options.max_restarts}",
        f"--log-dir={run_dir / LOGS_DIR}",
        "--redirects=3",
    ]
    rendezvous = options.rendezvous
    if rendezvous is None:
        command.append("--standalone")
    else:
        command += [
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={rendezvous.endpoint}",
            f"--rdzv-id={rendezvous.run_id}",
            f"--rdzv-conf=join_timeout={rendezvous.join_timeout}{_is_host(rendezvous)}",
        ]
        if rendezvous.node_rank is not None:
            command.append(f"--node-rank={rendezvous.node_rank}")
        if rendezvous.local_addr is not None:
            command.append(f"--local-addr={rendezvous.local_addr}")
    return [
        *command,
        "-m",
        "okai.train.worker",
        f"--run-dir={run_dir}",
        f"--source={source}",
        f"--run-id={run_id}",
    ]


def _is_host(rendezvous: Rendezvous) -> str:
    hosts = rendezvous.hosts_store
    if hosts is None and rendezvous.local_addr is not None:
        hosts = rendezvous.local_addr == rendezvous.endpoint_host
    return "" if hosts is None else f",is_host={int(hosts)}"


def _environment(options: LaunchOptions) -> dict[str, str]:
    """The workers' environment: the caller's less its credentials, or, sandboxed, an
    allow-list. Workers run the job's code, which must never see the node agent's
    publisher tokens or a verifier's keys."""
    sandbox = options.sandbox
    env = without_secrets(os.environ) if sandbox is None else environment(network=sandbox.network)
    env[STARTED_AT_ENV] = utc_now()
    env["PYTHONUNBUFFERED"] = "1"
    # With the rendezvous store shared by workers (torch's default), workers restarted by
    # torchrun can read the previous attempt's gloo/NCCL addresses and fail to connect
    # (pytorch/pytorch#135712); a store per attempt, hosted by rank 0, avoids that.
    env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] = "1"
    # Required by deterministic cuBLAS; harmless without a GPU.
    env.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    rendezvous = options.rendezvous
    if rendezvous is not None:
        interface = rendezvous.interface
        if interface is None and rendezvous.local_addr is not None:
            interface = interface_of(rendezvous.local_addr)
        if interface is not None:
            env["GLOO_SOCKET_IFNAME"] = interface
            env["NCCL_SOCKET_IFNAME"] = interface
    env.update(options.env)
    return env


def interface_of(address: str) -> str | None:
    """The name of the local network interface holding IPv4 `address`, if any.

    Every 127/8 address is the loopback interface's (Linux routes them all there), though
    the interface reports only 127.0.0.1: a local cluster's nodes use 127.0.0.2 and on."""
    try:
        wanted = socket.inet_aton(address)
    except OSError:
        return None
    loopback = wanted[0] == 127
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            try:
                answer = fcntl.ioctl(sock.fileno(), 0x8915, request)  # SIOCGIFADDR
            except OSError:
                continue
            if answer[20:24] == wanted or (loopback and answer[20] == 127):
                return name
    return None


def _follow(
    process: subprocess.Popen[bytes],
    metrics: Path,
    progress: Callable[[Progress], None] | None,
    fatal: Path | None,
) -> int:
    """Wait for torchrun, reporting rank 0's progress; stop it on Ctrl-C or on `fatal`."""
    follower = _MetricsFollower(metrics)
    try:
        while True:
            code = process.poll()
            if code is None and fatal is not None and fatal.exists():
                _stop(process)
                code = process.returncode
            if progress is not None:
                latest = follower.poll()
                if latest is not None:
                    progress(latest)
            if code is not None:
                return code
            time.sleep(POLL_SECONDS)
    except BaseException:
        _stop(process)
        raise


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM torchrun (it forwards the signal to its workers), then SIGKILL the group."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class _MetricsFollower:
    """Reads lines appended to metrics.jsonl since the last poll."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.epochs: int | None = None
        self.steps_per_epoch: int | None = None
        self.advice: str | None = None

    def poll(self) -> Progress | None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return None
        if size < self.offset:  # cut back by a resumed run
            self.offset = 0
        try:
            chunk = read_run_file(self.path, MAX_METRICS_READ, self.offset) or b""
        except OperationalError:
            return None
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        latest: Progress | None = None
        for line in complete.splitlines():
            try:
                record: dict[str, Any] = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("event") == "start":
                self.epochs = record.get("epochs")
                self.steps_per_epoch = record.get("stepsPerEpoch")
            elif record.get("event") == "step":
                self.advice = record.get("advice", self.advice)
                total = (
                    self.epochs * self.steps_per_epoch
                    if self.epochs is not None and self.steps_per_epoch is not None
                    else None
                )
                latest = Progress(
                    epoch=int(record.get("epoch", 0)),
                    epochs=self.epochs,
                    step=int(record.get("step", 0)),
                    total_steps=total,
                    loss=record.get("loss"),
                    samples_per_second=record.get("samplesPerSecond"),
                    advice=self.advice,
                )
        return latest


def _failure(run_dir: Path, code: int) -> OkaiError:
    """The error that stopped the workers, as recorded by them.

    A fatal error first; then an okai error of any rank (the cause), before the
    torch errors of the ranks that merely lost their peer.
    """
    errors = run_dir / ERRORS_DIR
    records = []
    for path in [errors / FATAL_FILE, *sorted(errors.glob("rank-*.json"))]:
        try:
            record = json.loads(read_run_file(path, MAX_RECORD_BYTES) or b"")
        except (OkaiError, ValueError):
            continue
        if isinstance(record, dict):
            records.append(record)
    records.sort(key=lambda record: 0 if record.get("fatal") else 1 if record.get("okai") else 2)
    if records:
        try:
            return _rebuild(records[0], run_dir)
        except (KeyError, TypeError, ValueError):
            pass  # a record not as workers write it: the training code wrote it
    return TrainingFailed(
        f"training failed (torchrun exited with {code}) and no rank recorded why",
        logs=run_dir / LOGS_DIR,
    )


def _rebuild(record: dict[str, Any], run_dir: Path) -> OkaiError:
    """Turn a worker's error record back into the okai error it describes."""
    message = str(record.get("message", "unknown error"))
    rank = record.get("rank")
    if integrity := record.get("integrity"):
        return IntegrityError(integrity["what"], integrity["expected"], integrity["actual"])
    if document := record.get("document"):
        return DocumentError(document["source"], document["field"], document["problem"])
    exit_code = record.get("exitCode")
    if record.get("type") == "EntrypointError":
        return EntrypointError(message)
    if exit_code == UsageError.exit_code:
        return UsageError(message, hint=record.get("hint"))
    if exit_code == VerificationError.exit_code:
        return VerificationError(message)
    if record.get("type") in {"OperationalError", "BlobUnavailable", "TrainingFailed"}:
        return OperationalError(message, hint=record.get("hint"))
    return TrainingFailed(f"rank {rank} failed: {message}", logs=run_dir / LOGS_DIR)
