"""Shared pieces of the Walrus tests: a fast retry policy, clients and servers on loopback."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from okai.dev.stack import walrus_answers, walrus_serve_argv
from okai.walrus.client import WalrusClient
from okai.walrus.retry import RetryPolicy
from okai.walrus.server import WalrusServer

FAST_RETRY = RetryPolicy(rounds=3, first_wait=0.01, max_wait=0.05, recent_store_window=30)
MiB = 1 << 20


def make_client(*aggregators: str, publisher: str | None = None, **options: object) -> WalrusClient:
    """A client that retries quickly and, against stand-in IDs, does not recompute blob IDs."""
    settings: dict[str, object] = {
        "compute_blob_ids_up_to": 0,
        "retry": FAST_RETRY,
        "timeout": 10.0,
    }
    settings.update(options)
    return WalrusClient(
        aggregators,
        publisher if publisher is not None else aggregators[0],
        **settings,  # type: ignore[arg-type]
    )


@contextmanager
def local_server(directory: Path, **options: object) -> Iterator[WalrusServer]:
    """An in-process server with stand-in blob IDs unless told otherwise."""
    options.setdefault("fake_blob_ids", True)
    with WalrusServer(directory, **options).start() as server:  # type: ignore[arg-type]
        yield server


def dead_url() -> str:
    """A loopback URL where nothing listens."""
    from conftest import free_port

    return f"http://127.0.0.1:{free_port()}"


class ServerProcess:
    """`okai walrus serve` in its own process, for tests that kill it."""

    def __init__(self, directory: Path, port: int, *extra: str) -> None:
        self.directory = directory
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        argv = walrus_serve_argv(directory, port, "--quiet", *extra)
        self.log = directory.parent / f"server-{port}.log"
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy()
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {self.log.read_text()}")
            if walrus_answers(self.url):
                return
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"the server did not start: {self.log.read_text()}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(timeout=10)


def token_command(folder: Path, secret: str) -> str:
    """An `OKAI_WALRUS_JWT_COMMAND` for a server run with `jwt_secret=secret`: each run prints
    a fresh token and appends it to `<folder>/minted`, for tests to count and look for."""
    script = folder / "mint-token"
    script.write_text(
        f"#!{sys.executable}\n"
        "import time, uuid\n"
        "from okai.walrus.server import make_token\n"
        f"token = make_token({secret!r}, {{'exp': int(time.time()) + 600, 'jti': uuid.uuid4().hex}})\n"
        f"with open({str(folder / 'minted')!r}, 'a') as log:\n"
        "    log.write(token + '\\n')\n"
        "print(token)\n"
    )
    script.chmod(0o755)
    return shlex.quote(str(script))


def minted_tokens(folder: Path) -> list[str]:
    """The tokens the `token_command` of `folder` has printed."""
    log = folder / "minted"
    return log.read_text().splitlines() if log.exists() else []
