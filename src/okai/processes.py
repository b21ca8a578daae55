"""Background processes the local stack starts, and how to tell they are ours.

A PID in a state file may have been reused by an unrelated process after a
crash or reboot; before signalling, the process's command line is compared
with the one we launched, so `okai dev down` never stops anything else.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from okai.errors import OperationalError


class StackError(OperationalError):
    """The local stack cannot be started, checked or stopped."""


@dataclass(frozen=True)
class Launched:
    process: subprocess.Popen[bytes]
    argv: tuple[str, ...]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def exited(self) -> bool:
        # poll(), not /proc: right after fork the child still shows our own command line.
        return self.process.poll() is not None


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def launch(argv: list[str], log: Path, env: dict[str, str] | None = None) -> Launched:
    """Start `argv` detached (its own session), output appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as log_file:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    return Launched(process=process, argv=tuple(argv), log=log)


def command_line(pid: int) -> tuple[str, ...] | None:
    """The argv of a live process, or None when it is gone (or a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    if not raw:
        return None
    return tuple(part.decode(errors="replace") for part in raw.rstrip(b"\0").split(b"\0"))


def is_ours(pid: int, argv: tuple[str, ...]) -> bool:
    """True when `pid` is alive and still runs the command we launched."""
    return command_line(pid) == argv


def stop(pid: int, argv: tuple[str, ...], timeout: float = 10.0) -> bool:
    """SIGTERM then SIGKILL a process we launched; False if it was not running."""
    if not is_ours(pid, argv):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_ours(pid, argv):
            _reap(pid)
            return True
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    _reap(pid)
    return True


def _reap(pid: int) -> None:
    """Collect the exit status when the process is our own child (tests start it in-process)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def log_tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
