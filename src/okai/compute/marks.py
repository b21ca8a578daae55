"""Processes marked by a token in their environment: how a local node's processes are found.

Every process of a local node (its agent, torchrun, the workers) inherits
`OKAI_NODE_MARK=<token>` from the agent's environment. Finding them by that
token in `/proc/<pid>/environ` works after the process that started them is
gone, and never matches an unrelated process that reuses a recorded PID.
The mark is no secret, and its name says so: workers lose every variable whose name
looks like a credential (`okai.train.sandbox.without_secrets`), and a worker that lost
its mark would outlive `down` and a node restart.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

MARK_ENV = "OKAI_NODE_MARK"
STOP_GRACE_S = 20.0
MIN_TOKEN = 16


def marked_processes(token: str) -> list[int]:
    """PIDs of live processes whose environment holds `OKAI_NODE_MARK=<token>`."""
    if len(token) < MIN_TOKEN:  # never match by a short or empty token
        return []
    needle = f"{MARK_ENV}={token}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()  # empty for a zombie
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def stop_marked(token: str, grace_s: float = STOP_GRACE_S) -> int:
    """SIGTERM the token's processes, SIGKILL what is left after `grace_s`; how many there were."""
    pids = marked_processes(token)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and marked_processes(token):
        _reap(pids)
        time.sleep(0.1)
    for pid in marked_processes(token):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _reap(pids)
    return len(pids)


def kill_marked(token: str) -> int:
    """SIGKILL every process of the token at once: how a machine dies."""
    pids = marked_processes(token)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _reap(pids)
    return len(pids)


def _reap(pids: list[int]) -> None:
    """Collect those of `pids` that are this process's children (agents it started)."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
