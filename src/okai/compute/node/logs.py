"""A node's logs, for `okai node logs`: the agent's own log, then its current run's.

The agent writes `<state dir>/agent.log`; torchrun writes `logs/torchrun.log`
and one folder per attempt and local rank (stdout, stderr) in the run
directory. Shown in that order, each under its path relative to the state dir.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

from okai.compute.node.files import AGENT_LOG
from okai.compute.node.status import read_status
from okai.train.rundir import LOGS_DIR

FOLLOW_POLL_S = 0.5


def log_files(state_dir: Path) -> list[Path]:
    """The agent's log, then every log of the current run (oldest first)."""
    files = [state_dir / AGENT_LOG]
    run_dir = read_status(state_dir).run_dir
    if run_dir:
        logs = Path(run_dir) / LOGS_DIR
        found = [p for p in logs.rglob("*") if p.is_file() and p.suffix in (".log", ".json")]
        found.sort(key=lambda p: (p.name != "torchrun.log", p.stat().st_mtime, str(p)))
        files += found
    return [f for f in files if f.is_file()]


def label(state_dir: Path, path: Path) -> str:
    try:
        return str(path.relative_to(state_dir))
    except ValueError:
        return str(path)


def tail(state_dir: Path, lines: int | None = None) -> Iterator[str]:
    """Every log under a `==> name <==` header; the last `lines` lines of each if given."""
    for path in log_files(state_dir):
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
        if lines is not None:
            text = text[-lines:] if lines > 0 else []
        yield f"==> {label(state_dir, path)} <=="
        yield from text


def follow(
    state_dir: Path,
    *,
    poll_s: float = FOLLOW_POLL_S,
    until_done: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[str]:
    """Log lines as they are written, each prefixed by its file's name.

    With `until_done`, ends once the node's state is final and nothing new
    came in one poll; otherwise runs until interrupted.
    """
    offsets: dict[Path, int] = {}
    quiet_after_end = False
    while True:
        grew = False
        for path in log_files(state_dir):
            offset = offsets.get(path, 0)
            try:
                size = path.stat().st_size
            except OSError:
                continue
            if size < offset:
                offset = 0  # truncated or replaced
            if size == offset:
                continue
            with path.open("rb") as stream:
                stream.seek(offset)
                chunk = stream.read(size - offset)
            complete = chunk[: chunk.rfind(b"\n") + 1]
            offsets[path] = offset + len(complete)
            name = label(state_dir, path)
            for line in complete.decode("utf-8", errors="replace").splitlines():
                grew = True
                yield f"{name}: {line}"
        if until_done and read_status(state_dir).state.terminal:
            if not grew and quiet_after_end:
                return
            quiet_after_end = not grew
        sleep(poll_s)
