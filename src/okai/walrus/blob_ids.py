"""Walrus blob IDs: the real ones (via Node.js and @mysten/walrus-wasm), and a labelled stand-in.

A real blob ID commits to the exact bytes through the RS2 encoding over 1000
shards; computing it needs the whole blob in memory and about a second of
fixed work per blob whatever its size, so callers bound it by size. The work
runs in long-lived Node processes (`blob_id.js --serve`), one blob at a time
each, so the wasm module loads once per process.

`fake_blob_id` is for the local server started with `--fake-blob-ids` where
Node is missing: a 32-byte value derived from the SHA-256 that no Walrus
network would produce, and that okai never accepts as proof of anything.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import queue
import subprocess
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import IO, Any

from okai.digest import Digest
from okai.errors import OperationalError
from okai.nodejs import ToolMissingError, node_binary, node_package
from okai.walrus.blob_id_memory import BlobIdMemory

WASM_PACKAGE = "@mysten/walrus-wasm"
SCHEME_WALRUS = "walrus-rs2-1000"
"""The real scheme: RS2 encoding over 1000 shards (Mainnet and Testnet)."""
BLOB_ID_CHECK_ENV = "OKAI_WALRUS_CHECK_BLOB_IDS_UP_TO"
"""Bytes up to which clients recompute blob IDs (0 turns it off)."""
SCHEME_FAKE = "okai-fake-sha256"
"""The labelled stand-in of a server run with `--fake-blob-ids`."""


class BlobIdError(OperationalError):
    """The blob-ID helper failed (Node crashed, a file could not be read)."""


def helper_script() -> Path:
    """The Node helper shipped inside the package."""
    return Path(str(resources.files("okai.walrus").joinpath("blob_id.js")))


def blob_ids_available() -> bool:
    """True when Node.js and @mysten/walrus-wasm are installed."""
    try:
        node_binary()
        node_package(WASM_PACKAGE)
    except ToolMissingError:
        return False
    return True


def fake_blob_id(sha256: Digest) -> str:
    """The stand-in ID of bytes with this SHA-256 (domain-separated, so never a real ID)."""
    raw = hashlib.blake2b(b"okai-fake-blob-id/v1\x00" + sha256.to_bytes32(), digest_size=32)
    return base64.urlsafe_b64encode(raw.digest()).rstrip(b"=").decode("ascii")


class _Helper:
    """One `node blob_id.js --serve` process; used by one thread at a time."""

    def __init__(self) -> None:
        argv = [node_binary(), str(helper_script()), str(node_package(WASM_PACKAGE)), "--serve"]
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def ask(self, request: dict[str, Any], payload: bytes | None = None) -> str:
        stdin: IO[bytes] | None = self.process.stdin
        stdout: IO[bytes] | None = self.process.stdout
        assert stdin is not None and stdout is not None
        try:
            stdin.write(json.dumps(request).encode() + b"\n")
            if payload is not None:
                stdin.write(payload)
            stdin.flush()
            line = stdout.readline()
        except (BrokenPipeError, OSError) as exc:
            raise BlobIdError(f"the blob-ID helper stopped: {self._stderr()}") from exc
        if not line:
            raise BlobIdError(f"the blob-ID helper stopped: {self._stderr()}")
        reply = json.loads(line)
        if "error" in reply:
            raise BlobIdError(f"the blob-ID helper failed: {reply['error']}")
        return str(reply["blobId"])

    def _stderr(self) -> str:
        self.process.kill()
        _, err = self.process.communicate(timeout=5)
        return err.decode(errors="replace").strip()[-500:] or f"exit {self.process.returncode}"

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


class BlobIdComputer:
    """Computes real Walrus blob IDs in a small pool of Node processes.

    Thread-safe; results are remembered by SHA-256 (the same bytes always
    have the same ID), so a blob checked on store is not recomputed on read;
    with a `memory`, across processes too (`BlobIdComputer.for_user()`).
    Raises `ToolMissingError` on first use when Node or walrus-wasm is missing.
    """

    def __init__(
        self, workers: int | None = None, remember: int = 4096, memory: BlobIdMemory | None = None
    ) -> None:
        self._workers = workers or max(1, min(4, os.cpu_count() or 1))
        self._memory = memory
        self._idle: queue.LifoQueue[_Helper] = queue.LifoQueue()
        self._started = 0
        self._lock = threading.Lock()
        self._known: OrderedDict[str, str] = OrderedDict()
        self._remember = remember
        self._closed = False

    @classmethod
    def for_user(cls) -> BlobIdComputer:
        """A computer that shares what it computes with this user's other processes."""
        return cls(memory=BlobIdMemory.of_user(SCHEME_WALRUS))

    def of_bytes(self, data: bytes, sha256: Digest | None = None) -> str:
        """The blob ID of `data`."""
        key = sha256 or Digest.of_bytes(data)
        return self._cached(key) or self._recall_or_run(key, {"inline": len(data)}, data)

    def of_file(
        self, path: Path, offset: int = 0, length: int | None = None, sha256: Digest | None = None
    ) -> str:
        """The blob ID of bytes [offset, offset+length) of a file (the whole file by default)."""
        if length is None:
            length = path.stat().st_size - offset
        if sha256 is None and self._memory is not None:
            # Remembered under the digest of the very bytes it is computed from: read once.
            return self.of_bytes(_read_slice(path, offset, length))
        if sha256 is not None and (known := self._cached(sha256)):
            return known
        request = {"path": str(path.resolve()), "offset": offset, "length": length}
        return self._recall_or_run(sha256, request, None)

    def _cached(self, sha256: Digest) -> str | None:
        with self._lock:
            found = self._known.get(sha256)
            if found is not None:
                self._known.move_to_end(sha256)
            return found

    def _recall_or_run(
        self, sha256: Digest | None, request: dict[str, Any], payload: bytes | None
    ) -> str:
        if sha256 is None:
            return self._run(request, payload)
        if self._memory is None:
            blob_id = self._run(request, payload)
        else:
            blob_id = self._memory.recall_or_compute(sha256, lambda: self._run(request, payload))
        with self._lock:
            self._known[sha256] = blob_id
            if len(self._known) > self._remember:
                self._known.popitem(last=False)
        return blob_id

    def _run(self, request: dict[str, Any], payload: bytes | None) -> str:
        helper = self._acquire()
        try:
            blob_id = helper.ask(request, payload)
        except BaseException:
            helper.close()
            with self._lock:
                self._started -= 1
            raise
        self._release(helper)
        return blob_id

    def _acquire(self) -> _Helper:
        while True:
            with self._lock:
                if self._closed:
                    raise BlobIdError("the blob-ID computer is closed")
                try:
                    return self._idle.get_nowait()
                except queue.Empty:
                    pass
                start_one = self._started < self._workers
                if start_one:
                    self._started += 1
            if start_one:
                try:
                    return _Helper()
                except BaseException:
                    with self._lock:
                        self._started -= 1
                    raise
            # All helpers busy: wait for one, re-checking in case a busy one died.
            try:
                return self._idle.get(timeout=0.5)
            except queue.Empty:
                continue

    def _release(self, helper: _Helper) -> None:
        with self._lock:
            if not self._closed:
                self._idle.put(helper)
                return
        helper.close()

    def close(self) -> None:
        """Stop the Node processes; safe to call twice."""
        with self._lock:
            self._closed = True
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return

    def __enter__(self) -> BlobIdComputer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_slice(path: Path, offset: int, length: int) -> bytes:
    try:
        with open(path, "rb") as stream:
            stream.seek(offset)
            data = stream.read(length)
    except OSError as exc:
        raise BlobIdError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) != length:
        raise BlobIdError(f"{path} ends before byte {offset + length}")
    return data


class BlobIdChecks:
    """Which blobs a client recomputes IDs of (up to `up_to` bytes; 0: none), and with what.

    The computer starts on first use, or not at all where Node is missing and
    the check is optional; stores compute theirs in the background while the
    bytes are sent.
    """

    def __init__(self, up_to: int, computer: BlobIdComputer | None = None) -> None:
        self.up_to = up_to
        self._computer = computer
        self._owns_computer = computer is None
        self._available: bool | None = None if computer is None else True
        self._background: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def allows(self, size: int) -> bool:
        """Whether a blob of `size` bytes is small enough to recompute the ID of."""
        return self.up_to > 0 and size <= self.up_to

    def computer(self, required: bool) -> BlobIdComputer | None:
        """The blob-ID computer, or None when Node is missing and the check is optional."""
        with self._lock:
            if self._available is None:
                self._available = blob_ids_available()
            if self._available and self._computer is None:
                self._computer = BlobIdComputer.for_user()
            computer = self._computer if self._available else None
        if computer is None and required:
            raise ToolMissingError(
                "checking a Walrus blob ID needs Node.js and @mysten/walrus-wasm",
                hint="run `make setup`, or give the expected SHA-256 of the data",
            )
        return computer

    def in_background(self, job: Callable[[], str]) -> Future[str]:
        with self._lock:
            if self._background is None:
                self._background = ThreadPoolExecutor(4, thread_name_prefix="okai-blob-id")
            return self._background.submit(job)

    def close(self) -> None:
        """Wait for background jobs, and stop the computer this started; safe to call twice."""
        if self._background is not None:
            self._background.shutdown(wait=True)
            self._background = None
        if self._owns_computer and self._computer is not None:
            self._computer.close()
