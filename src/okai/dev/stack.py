"""`okai dev up | status | down`: the local stack on loopback.

Services are started detached, recorded in `.okai/dev/stack.json` with their
PID and exact command line, and stopped only if still ours. Chain state
persists under `.okai/dev/` across restarts; once anvil answers, the registry
is deployed on it unless the one recorded in `.okai/dev/registry.json` is
still there.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from okai.atomic import write_atomically
from okai.config import DEV_ANVIL_PORT, DEV_WALRUS_PORT, read_stack_file, stack_file
from okai.dev.anvil import anvil_argv, rpc_answers
from okai.paths import dev_dir
from okai.processes import (
    Launched,
    StackError,
    is_ours,
    launch,
    log_tail,
    port_is_free,
    stop,
)
from okai.tls import tls_context

READY_TIMEOUT = 30.0


@dataclass(frozen=True)
class ServiceSpec:
    """How to start one service of the stack and tell that it answers."""

    name: str
    port_env: str
    default_port: int
    argv: Callable[[Path, int], list[str]]
    ready: Callable[[str], bool]
    url_key: str

    def port(self) -> int:
        raw = os.environ.get(self.port_env)
        if raw is None:
            return self.default_port
        try:
            return int(raw)
        except ValueError:
            raise StackError(f"{self.port_env}={raw!r} is not a port number") from None


def _anvil_argv(directory: Path, port: int) -> list[str]:
    return anvil_argv(port, directory / "anvil-state.json")


ANVIL = ServiceSpec(
    name="anvil",
    port_env="OKAI_DEV_ANVIL_PORT",
    default_port=DEV_ANVIL_PORT,
    argv=_anvil_argv,
    ready=rpc_answers,
    url_key="rpc_url",
)


def walrus_serve_argv(store: Path, port: int, *options: str) -> list[str]:
    """`okai walrus serve` keeping blobs in `store`, on loopback `port`, with extra `options`."""
    argv = [sys.executable, "-m", "okai", "walrus", "serve", "--dir", str(store)]
    return [*argv, "--port", str(port), *options]


def _walrus_argv(directory: Path, port: int) -> list[str]:
    return walrus_serve_argv(directory / "walrus", port)


def walrus_answers(url: str) -> bool:
    """True when a Walrus server at `url` answers its status check."""
    try:
        reply = httpx.get(f"{url}/status", timeout=2, verify=tls_context())
        return reply.status_code == 200 and reply.text == "OK"
    except httpx.HTTPError:
        return False


WALRUS = ServiceSpec(
    name="walrus",
    port_env="OKAI_DEV_WALRUS_PORT",
    default_port=DEV_WALRUS_PORT,
    argv=_walrus_argv,
    ready=walrus_answers,
    url_key="walrus_url",
)

SERVICES: list[ServiceSpec] = [ANVIL, WALRUS]


def read_stack() -> dict[str, Any]:
    data = read_stack_file()
    data.setdefault("services", {})
    return data


def _write_stack(stack: dict[str, Any]) -> None:
    write_atomically(stack_file(), json.dumps(stack, indent=2) + "\n")


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    state: str  # running | stale | stopped
    pid: int | None
    url: str | None
    log: str | None

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


def _recorded_status(name: str, entry: dict[str, Any] | None, spec: ServiceSpec) -> ServiceStatus:
    if entry is None:
        return ServiceStatus(name, "stopped", None, None, None)
    alive = is_ours(entry["pid"], tuple(entry["argv"]))
    state = "running" if alive and spec.ready(entry["url"]) else "stale"
    return ServiceStatus(name, state, entry["pid"], entry["url"], entry["log"])


def status() -> list[ServiceStatus]:
    stack = read_stack()
    return [_recorded_status(s.name, stack["services"].get(s.name), s) for s in SERVICES]


def _wait_ready(spec: ServiceSpec, url: str, launched: Launched) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if launched.exited():
            raise StackError(
                f"{spec.name} exited while starting; its log ends:\n{log_tail(launched.log)}"
            )
        if spec.ready(url):
            return
        time.sleep(0.2)
    raise StackError(f"{spec.name} did not answer at {url} within {READY_TIMEOUT:.0f} s")


def up(on_event: Callable[[str], None] = lambda message: None) -> dict[str, Any]:
    """Start what is not running; keep what is. Returns the stack description."""
    # Imported here, not at the top: web3 is slow to import and `status`/`down` need none of it.
    from okai.chain.dev import ensure_dev_registry

    directory = dev_dir()
    directory.mkdir(parents=True, exist_ok=True)
    stack = read_stack()
    started: list[tuple[int, tuple[str, ...]]] = []
    try:
        for spec in SERVICES:
            current = _recorded_status(spec.name, stack["services"].get(spec.name), spec)
            if current.state == "running":
                on_event(f"{spec.name} already running (pid {current.pid})")
                continue
            if current.state == "stale":
                entry = stack["services"].pop(spec.name)
                stop(entry["pid"], tuple(entry["argv"]))
                on_event(f"{spec.name}: pid {current.pid} from an earlier run is gone; restarting")
            port = spec.port()
            if not port_is_free(port):
                raise StackError(
                    f"port {port} on 127.0.0.1 is busy, so {spec.name} cannot start",
                    hint=f"stop whatever listens there, or set {spec.port_env} to a free port",
                )
            log = directory / f"{spec.name}.log"
            launched = launch(spec.argv(directory, port), log)
            started.append((launched.pid, launched.argv))
            url = f"http://127.0.0.1:{port}"
            _wait_ready(spec, url, launched)
            stack["services"][spec.name] = {
                "pid": launched.pid,
                "argv": list(launched.argv),
                "port": port,
                "url": url,
                "log": str(log),
            }
            stack[spec.url_key] = url
            on_event(f"{spec.name} started at {url} (pid {launched.pid})")
        stack["registry_address"] = ensure_dev_registry(stack[ANVIL.url_key], on_event).address
    except BaseException:
        for pid, argv in started:
            stop(pid, argv)
        raise
    _write_stack(stack)
    return stack


def set_registry_address(address: str) -> None:
    """Point a running stack at another registry (after `okai chain deploy` on dev)."""
    stack = read_stack()
    if stack["services"]:
        stack["registry_address"] = address
        _write_stack(stack)


def down(on_event: Callable[[str], None] = lambda message: None) -> list[str]:
    """Stop the services this stack started; state on disk is kept."""
    stack = read_stack()
    stopped = []
    for name, entry in stack["services"].items():
        if stop(entry["pid"], tuple(entry["argv"])):
            stopped.append(name)
            on_event(f"{name} stopped (pid {entry['pid']})")
        else:
            on_event(f"{name} was not running")
    stack_file().unlink(missing_ok=True)
    return stopped
