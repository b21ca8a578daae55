"""The node agent's status file, `<state dir>/status.json` (`okai.node-status/v1`).

The agent rewrites it atomically at every change of state and, while training,
with rank 0's progress; `okai node status --json` prints it and `okai cluster`
reads it over the control channel. States::

    idle      no job has run here (no status file)
    checking  the agent is checking the job, the cluster file and the image
    running   torchrun is running
    finished  training ended; on the node hosting rank 0, `outputs` names the model
              and receipt stored on Walrus (blob IDs and SHA-256)
    failed    the job stopped; `error` says why

A status that says checking or running while the agent that wrote it is gone
(its PID dead, or reused by another process) is read as failed.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from okai.atomic import write_atomically
from okai.compute.node.files import STATUS_FILE
from okai.documents import document_error, read_document_if_exists
from okai.errors import DocumentError, OkaiError

SCHEMA = "okai.node-status/v1"


class NodeState(StrEnum):
    IDLE = "idle"
    CHECKING = "checking"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (NodeState.FINISHED, NodeState.FAILED)


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ProgressInfo(_Wire):
    """Rank 0's last step, from its metrics (only on the node hosting rank 0)."""

    epoch: int
    epochs: int | None = None
    step: int
    total_steps: int | None = None
    loss: float | None = None
    samples_per_second: float | None = None
    advice: str | None = None
    """A warning about the run's set-up, e.g. DDP on a slow link (okai.train.advice)."""


class StoredFile(_Wire):
    """A run output stored on Walrus: where it is and what its bytes hash to."""

    blob_id: str
    sha256: str
    size: int


class Outputs(_Wire):
    """What rank 0's node leaves for `okai cluster up` to fetch."""

    model_sha256: str
    receipt_sha256: str
    job_sha256: str
    model: StoredFile | None = None
    """The model on Walrus; None when it was not published."""
    receipt: StoredFile | None = None
    publish_error: str | None = None
    """Why publishing failed or was skipped; the run directory still holds both files."""


class ErrorInfo(_Wire):
    type: str
    message: str
    hint: str | None = None
    exit_code: int = 1

    @classmethod
    def of(cls, exc: BaseException) -> ErrorInfo:
        if isinstance(exc, OkaiError):
            return cls(
                type=type(exc).__name__,
                message=exc.message,
                hint=exc.hint,
                exit_code=int(exc.exit_code),
            )
        return cls(type=type(exc).__name__, message=str(exc) or type(exc).__name__)


class NodeStatus(_Wire):
    """`okai.node-status/v1`."""

    schema_: str = Field(default=SCHEMA, alias="schema")
    state: NodeState = NodeState.IDLE
    cluster_id: str | None = None
    node_rank: int | None = None
    run_id: str | None = None
    run_dir: str | None = None
    pid: int | None = None
    pid_start: int | None = None
    """The agent's start time in clock ticks since boot (/proc/<pid>/stat): tells a reused PID."""
    host: str | None = None
    """`okai image` or `unregistered host`."""
    image: dict[str, Any] | None = None
    started_at: str | None = None
    updated_at: str | None = None
    finished_at: str | None = None
    restarts: int = 0
    """How many times this node's agent has been started again for the same run."""
    progress: ProgressInfo | None = None
    hosts_rank0: bool = False
    outputs: Outputs | None = None
    error: ErrorInfo | None = None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def process_start(pid: int) -> int | None:
    """Start time of `pid` in clock ticks since boot, or None if there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = raw.rsplit(")", 1)[-1].split()
    try:
        state, start = fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None
    return None if state == "Z" else start


def write_status(state_dir: Path, status: NodeStatus) -> None:
    status.updated_at = utc_now()
    data = json.dumps(status.to_json(), indent=2).encode("utf-8") + b"\n"
    write_atomically(state_dir / STATUS_FILE, data)


def read_status(state_dir: Path) -> NodeStatus:
    """The node's status as the agent last wrote it, corrected for a vanished agent."""
    path = state_dir / STATUS_FILE
    data = read_document_if_exists(path, "json")
    if data is None:
        return NodeStatus()
    try:
        status = NodeStatus.model_validate(data)
    except ValidationError as exc:
        raise document_error(exc, path) from exc
    if status.schema_ != SCHEMA:
        raise DocumentError(path, "schema", f"expected {SCHEMA}, got {status.schema_!r}")
    if not status.state.terminal and status.pid is not None and not agent_alive(status):
        status.state = NodeState.FAILED
        status.error = ErrorInfo(
            type="AgentGone",
            message=f"the node agent (pid {status.pid}) stopped without reporting an end",
            hint="the machine may have run out of memory or been restarted; see the node's logs",
        )
    return status


def agent_alive(status: NodeStatus) -> bool:
    """Whether the process that wrote `status` is still running."""
    if status.pid is None:
        return False
    start = process_start(status.pid)
    return start is not None and (status.pid_start is None or start == status.pid_start)


def own_identity() -> tuple[int, int | None]:
    pid = os.getpid()
    return pid, process_start(pid)
