"""Shared pieces of the Walrus benchmarks: a server process, curl, timing, random files.

The server runs in its own process (`okai walrus serve`, stand-in blob IDs,
test controls on) so that it does not share the client's interpreter; curl
and okai talk to the same server in the same run, so ratios compare clients,
not servers. Timings are the best of a few runs, alternating okai and curl,
because the benchmark machine may be shared.
"""

from __future__ import annotations

import os
import resource
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from okai.dev.stack import walrus_answers, walrus_serve_argv

MiB = 1 << 20
RUNS = 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def workdir(name: str) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix=f"okai-bench-{name}-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def server_process(folder: Path, max_body: str = "2GiB") -> Iterator[str]:
    """`okai walrus serve` on a free port; yields its URL."""
    port = free_port()
    options = ("--fake-blob-ids", "--test-controls", "--quiet", "--max-body", max_body)
    argv = walrus_serve_argv(folder / "server", port, *options)
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not walrus_answers(url):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Walrus server at {url} did not answer within 30 s")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def set_faults(url: str, **faults: object) -> None:
    httpx.post(f"{url}/_okai/test/faults", json=faults, timeout=10).raise_for_status()


def random_file(path: Path, size: int) -> Path:
    """A file of random bytes, written in 16 MiB pieces."""
    with open(path, "wb") as out:
        left = size
        while left:
            piece = min(left, 16 * MiB)
            out.write(os.urandom(piece))
            left -= piece
    return path


def curl(*args: str) -> None:
    subprocess.run(["curl", "-sS", "--fail", *args], check=True, stdout=subprocess.DEVNULL)


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (curl): the client's work."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def best_of(runs: int, **candidates: Callable[[], object]) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds of the fastest of `runs` runs of each candidate, alternating them.

    CPU counts this process and the curl processes, not the server, so it shows
    what each client costs even when a shared machine makes wall times noisy.
    """
    best = dict.fromkeys(candidates, (float("inf"), float("inf")))
    for _ in range(runs):
        for name, run in candidates.items():
            cpu, start = _cpu_seconds(), time.perf_counter()
            run()
            elapsed, used = time.perf_counter() - start, _cpu_seconds() - cpu
            best[name] = min(best[name], (elapsed, used))
    return best


def report(
    title: str, size: int, seconds: dict[str, tuple[float, float]], baseline: str, target: str
) -> None:
    """Print throughput and client CPU per candidate, and each one's ratio to the baseline."""
    print(f"{title} ({size / MiB:.0f} MiB; best of {RUNS}; machine may be shared)")
    for name, (elapsed, cpu) in seconds.items():
        ratio = seconds[baseline][0] / elapsed
        print(
            f"  {name:<12} {elapsed:7.3f} s  {size / MiB / elapsed:8.1f} MiB/s  "
            f"{ratio:5.2f}x   client CPU {cpu:6.3f} s"
        )
    print(f"  target: {target}")
