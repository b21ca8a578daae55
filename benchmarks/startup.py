"""Start-up time of `okai` commands, as whole processes (interpreter and imports included).

Side by side, interleaved round by round so that load on the machine hits all alike:

- the baseline: `python -c "import httpx, rich.console"`;
- `okai --help` and `okai config show` (commands that touch no chain);
- `okai verify MODEL` (shallow) on the local stack, started in a temporary OKAI_HOME on
  free ports with one recorded run (as benchmarks/verify_latency.py does);

and prints the median of each with its ratio to the baseline. Targets (issue 14):
`--help` and chain-free commands within 1.5x of the baseline, `verify` under 1 s.

    PYTHONPATH=src .venv/bin/python benchmarks/startup.py [--rounds 9] [--no-verify]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def okai_command() -> list[str]:
    """The installed `okai` script next to this interpreter, else `python -m okai`."""
    script = Path(sys.executable).parent / "okai"
    return [str(script)] if script.exists() else [sys.executable, "-m", "okai"]


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--no-verify", action="store_true", help="skip the local stack")
    args = parser.parse_args()

    okai = okai_command()
    commands = {
        "baseline: import httpx, rich.console": [
            sys.executable,
            "-c",
            "import httpx, rich.console",
        ],
        "okai --help": [*okai, "--help"],
        "okai config show": [*okai, "config", "show"],
    }
    home = Path(tempfile.mkdtemp(prefix="okai-startup-"))
    os.environ["OKAI_HOME"] = str(home / ".okai")
    stack = None
    if not args.no_verify:
        sys.path.insert(0, str(Path(__file__).parent))
        from verify_latency import free_port, record_a_run

        os.environ.update(
            {
                "OKAI_DEV_ANVIL_PORT": str(free_port()),
                "OKAI_DEV_WALRUS_PORT": str(free_port()),
                "OKAI_WALRUS_CHECK_BLOB_IDS_UP_TO": "0",
            }
        )
        os.environ.pop("OKAI_NETWORK", None)
        from okai.dev import stack

        print("starting the local stack and recording a run ...", file=sys.stderr)
        stack.up()
        model, _ = record_a_run(home)
        from okai.chain.signer import DEV_ADDRESS

        trust = ["--trainer", DEV_ADDRESS, "--publisher", DEV_ADDRESS]  # exit 0: verified
        commands["okai verify MODEL (shallow, local stack)"] = [*okai, "verify", str(model), *trust]
    try:
        for command in commands.values():
            wall(command)  # warm the page cache
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, command in commands.items():
                samples[name].append(wall(command))
    finally:
        if stack is not None:
            stack.down()
        shutil.rmtree(home, ignore_errors=True)

    base = statistics.median(next(iter(samples.values())))
    print(f"whole processes, median of {args.rounds} interleaved rounds ({os.cpu_count()} CPUs)")
    for name, times in samples.items():
        median = statistics.median(times)
        print(f"  {name:<42} {median * 1000:7.0f} ms  {median / base:5.2f}x baseline")


if __name__ == "__main__":
    main()
