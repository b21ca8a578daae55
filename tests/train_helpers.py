"""Shared by the torchrun tests: finding a rank's process, killing it after a checkpoint."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

RUN_TIMEOUT = 300


def worker_pid(run_dir: Path, rank: int) -> int | None:
    """The process of `rank` in the run `run_dir`, found through /proc."""
    wanted = f"--run-dir={run_dir.resolve()}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
            if b"okai.train.worker" not in command or wanted not in command:
                continue
            environment = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environment:
            return int(entry.name)
    return None


def kill_after_first_checkpoint(run_dir: Path, rank: int = 1) -> tuple[threading.Thread, list[str]]:
    """A started thread that SIGKILLs `rank` once a checkpoint exists; the list gets its name."""
    killed: list[str] = []

    def watch() -> None:
        deadline = time.monotonic() + RUN_TIMEOUT
        latest = run_dir / "checkpoints" / "latest"
        while time.monotonic() < deadline and not (run_dir / "receipt.json").exists():
            pid = worker_pid(run_dir, rank) if latest.exists() else None
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                killed.append(latest.read_text().strip())
                return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread, killed
