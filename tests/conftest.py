"""Shared fixtures: an isolated okai home, free loopback ports, the CLI; the order and
grouping of tests for parallel workers (pytest-xdist; `make test` runs one per core and one more)."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LONGEST_FIRST = (
    "test_readme_demo.py::test_make_demo_from_a_clean_clone_then_again",
    "test_demo_gpt.py::test_okai_demo_gpt_pushes_trains_records_and_verifies",
)
"""Tests that alone take a large share of the suite, longest first: started first, so that
the other workers run everything else meanwhile instead of waiting for them at the end."""


def pytest_configure(config: pytest.Config) -> None:
    _take_sigint_again()
    if not hasattr(config, "workerinput"):
        _share_one_blob_id_memory(config)


def _take_sigint_again() -> None:
    """A shell running the suite in the background starts it with SIGINT ignored, and every
    process it starts would inherit that: a test stopping a command with Ctrl-C's signal
    would wait in vain, then kill it. A Python handler is not inherited: children get the
    default again."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _share_one_blob_id_memory(config: pytest.Config) -> None:
    """One memory of computed Walrus blob IDs for the whole run, apart from the user's own
    (~/.cache): the same bytes pushed by many tests are computed once (about two seconds
    each), by whichever worker or subprocess meets them first. Set before xdist starts the
    workers, which inherit it; the tests of the computation itself use computers with no
    memory (tests/test_walrus_blob_ids.py)."""
    cache = Path(tempfile.mkdtemp(prefix="okai-test-cache-"))
    config.add_cleanup(lambda: shutil.rmtree(cache, ignore_errors=True))
    os.environ["XDG_CACHE_HOME"] = str(cache)


@pytest.hookimpl(tryfirst=True)  # before xdist's hook reads the groups into the test IDs
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The order and the xdist groups (`make test` runs `--dist loadgroup` without xdist's
    reordering, so work units start in this order).

    Longest tests first, then the `slow` ones, then the rest (a stable sort keeps the
    order within each). Tests that build network namespaces share one group, so they run
    one after another on one worker; the other tests of a module with module-scoped
    fixtures share a group per module, so those fixtures (a local stack, a trained run,
    a browser) are built once, not once per worker."""

    def rank(item: pytest.Item) -> int:
        for index, longest in enumerate(LONGEST_FIRST):
            if item.nodeid.endswith(longest):
                return index
        return len(LONGEST_FIRST) + (0 if item.get_closest_marker("slow") else 1)

    items.sort(key=rank)
    for item in items:
        if "two_hosts" in getattr(item, "fixturenames", ()):
            _group(config, item, "netns")
        elif _uses_module_fixtures(item):
            _group(config, item, item.nodeid.split("::")[0])
    _quick_unit_behind_the_longest(config, items)


def _group(config: pytest.Config, item: pytest.Item, name: str) -> None:
    item.add_marker(pytest.mark.xdist_group(name))
    # Under --dist loadgroup, xdist's scheduler reads the group from an "@name" suffix of
    # the test ID, which xdist writes to `_nodeid`, where pytest 9.2 no longer reads it
    # (pytest-dev/pytest-xdist#1386): write it where the ID now lives, `_id`.
    if getattr(config.option, "loadgroup", False) and hasattr(item, "_id"):
        item._id = type(item._id).parse(f"{item.nodeid}@{name}")


def _uses_module_fixtures(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)  # pytest's record of the item's fixtures
    if info is None:
        return False
    return any(
        definition.scope == "module"
        for definitions in info.name2fixturedefs.values()
        for definition in definitions
    )


def _scope(item: pytest.Item) -> str:
    group = item.get_closest_marker("xdist_group")
    return str(group.args[0]) if group else item.nodeid


def _quick_unit_behind_the_longest(config: pytest.Config, items: list[pytest.Item]) -> None:
    """xdist hands each of N workers a second work unit at the start, the first worker
    the (N+1)th: it waits until the longest test ends, so move a quick one there."""
    workers = int(getattr(config, "workerinput", {}).get("workercount", 1))
    scopes: set[str] = set()
    starts = []  # where each unit starts
    for position, item in enumerate(items):
        if _scope(item) not in scopes:
            scopes.add(_scope(item))
            starts.append(position)
    if len(starts) <= workers:
        return
    position = starts[workers]
    quick = next(
        (
            item
            for item in items[position:]
            if not item.get_closest_marker("slow") and not item.get_closest_marker("xdist_group")
        ),
        None,
    )
    if quick is not None:
        items.remove(quick)
        items.insert(position, quick)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def okai_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A working directory with its own `.okai` state and free dev-stack ports."""
    home = tmp_path / "work"
    home.mkdir()
    monkeypatch.chdir(home)
    monkeypatch.setenv("OKAI_HOME", str(home / ".okai"))
    monkeypatch.setenv("OKAI_NODE_MODULES", str(REPO / "node_modules"))
    monkeypatch.setenv("OKAI_DEV_ANVIL_PORT", str(free_port()))
    monkeypatch.setenv("OKAI_DEV_WALRUS_PORT", str(free_port()))
    for name in ("OKAI_NETWORK", "OKAI_CONFIG", "OKAI_PRIVATE_KEY", "OKAI_RPC_URL"):
        monkeypatch.delenv(name, raising=False)
    yield home


_PROBE = """\
import json, sys
from okai.cli.app import main
code = 0
try:
    main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
cli = sorted(m for m in sys.modules if m.startswith("okai.cli."))
print(json.dumps({"exit": code, "cli": cli, "web3": "web3" in sys.modules}), file=sys.stderr)
"""


def okai_imports(*args: str) -> dict[str, object]:
    """Run `okai ARGS` in a fresh interpreter; its exit code, the okai.cli modules it
    imported and whether it imported web3 (start-up time: web3 alone takes seconds)."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )
    loaded: dict[str, object] = json.loads(result.stderr.strip().splitlines()[-1])
    return loaded


def run_okai(
    *args: str, check: bool = False, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the real `okai` command in a subprocess (same interpreter, same environment)."""
    return subprocess.run(
        [sys.executable, "-m", "okai", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
        env=os.environ.copy(),
    )


def call_okai(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    """`okai ARGS` in this process: the command's own `main`, its stdout, stderr and exit
    code captured as `run_okai` reports them. For tests where a subprocess proves nothing
    more than the one real subprocess test each command keeps; it saves the interpreter
    start and the imports (web3 alone takes seconds) per call."""
    from okai.cli.app import main

    stdout, stderr = io.StringIO(), io.StringIO()
    code: int | str | None = 0
    with redirect_stdout(stdout), redirect_stderr(stderr):
        try:
            main(list(args))
        except SystemExit as exit:
            code = exit.code
    if isinstance(code, str):  # as the interpreter does with sys.exit("message")
        stderr.write(code + "\n")
    result = subprocess.CompletedProcess(
        ["okai", *args], 1 if isinstance(code, str) else (code or 0),
        stdout.getvalue(), stderr.getvalue(),
    )  # fmt: skip
    if check:
        result.check_returncode()
    return result
