"""Test support for record and verify: a local stack, a recorded world, a counting RPC proxy.

Not a test module; the record and verify tests import it, and its module-scoped
fixtures `stack` and `inputs` (`from provenance_support import stack_fixture as
stack_fixture`: the redundant alias tells ruff the import is used, by pytest). Everything is real and on
loopback: anvil over JSON-RPC with the registry deployed, the local Walrus server over
HTTP (stand-in blob IDs, so no Node run per store), and a JSON-RPC proxy in front of
anvil that counts calls and can play dead.
"""

from __future__ import annotations

import json
import struct
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account.signers.local import LocalAccount

from chain_support import FAST_RETRY as FAST_RPC_RETRY
from chain_support import account
from fakes.fake_nix import PYTHON_IDENTITY
from okai.chain import RegistryClient
from okai.chain.dev import dev_network
from okai.dev.anvil import running_anvil
from okai.digest import Digest
from okai.manifest import (
    BlobRef,
    DatasetFile,
    DatasetManifest,
    DatasetShard,
    DatasetTotals,
    ImageManifest,
    ImagePython,
    JobSpec,
    ManifestRef,
    NixosIdentity,
)
from okai.provenance.receipt import Receipt, system_toplevel_digest
from okai.tls import tls_context
from okai.walrus.client import WalrusClient
from okai.walrus.retry import RetryPolicy
from okai.walrus.server import WalrusServer

FAST_WALRUS_RETRY = RetryPolicy(rounds=2, first_wait=0.01, max_wait=0.02, recent_store_window=0)
TOPLEVEL = "/nix/store/7y1jz2w5q0cb0zwz3d0vgg8h1r3k9m2a-nixos-system-okai-24.11"
OTHER_TOPLEVEL = "/nix/store/1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r6s-nixos-system-evil-24.11"
NIXPKGS = "0123456789abcdef0123456789abcdef01234567"
FLAKE = "89abcdef0123456789abcdef0123456789abcdef"


# ---------------------------------------------------------------- a JSON-RPC proxy


class RpcProxy:
    """Forwards JSON-RPC to anvil, counting each call by method; `dead` refuses everything."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.calls: Counter[str] = Counter()
        self.dead = False
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if proxy.dead:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                request = json.loads(body)
                with proxy._lock:
                    for call in request if isinstance(request, list) else [request]:
                        proxy.calls[call.get("method", "?")] += 1
                reply = httpx.post(
                    proxy.upstream,
                    content=body,
                    headers={"Content-Type": "application/json"},
                    timeout=30,
                    verify=tls_context(),
                )
                self.send_response(reply.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply.content)))
                self.end_headers()
                self.wfile.write(reply.content)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def total(self) -> int:
        with self._lock:
            return sum(self.calls.values())

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# ---------------------------------------------------------------- the stack


@dataclass
class Stack:
    """anvil (behind a counting proxy) with a deployed registry, and a Walrus server."""

    anvil_url: str
    proxy: RpcProxy
    walrus: WalrusServer
    registry_address: str
    walrus_dir: Path

    def registry(self, signer: LocalAccount | None = None, **options: Any) -> RegistryClient:
        """A client through the proxy, signing as `signer` (anvil's account 0 by default)."""
        options.setdefault("retry", FAST_RPC_RETRY)
        options.setdefault("poll_interval", 0.05)
        return RegistryClient(
            dev_network(self.proxy.url),
            address=self.registry_address,
            signer=signer or account(0),
            **options,
        )

    def walrus_client(self, **options: Any) -> WalrusClient:
        options.setdefault("retry", FAST_WALRUS_RETRY)
        options.setdefault("compute_blob_ids_up_to", 0)
        options.setdefault("timeout", 10.0)
        return WalrusClient([self.walrus.url], self.walrus.url, **options)

    def restart_walrus(self) -> None:
        """A new server on the same port and directory, as after a crash and restart."""
        port = self.walrus.port
        self.walrus.stop()
        self.walrus = WalrusServer(self.walrus_dir, port=port, fake_blob_ids=True).start()

    def env(self, key: LocalAccount | None = None) -> dict[str, str]:
        """Environment for `okai` subprocesses pointing at this stack (network dev)."""
        env = {
            "OKAI_NETWORK": "dev",
            "OKAI_RPC_URL": self.proxy.url,
            "OKAI_REGISTRY": self.registry_address,
            "OKAI_WALRUS_AGGREGATORS": self.walrus.url,
            "OKAI_WALRUS_PUBLISHER": self.walrus.url,
            "OKAI_WALRUS_CHECK_BLOB_IDS_UP_TO": "0",
        }
        if key is not None:
            env["OKAI_PRIVATE_KEY"] = key.key.to_0x_hex()
        return env


@contextmanager
def running_stack(directory: Path) -> Iterator[Stack]:
    """anvil + registry + Walrus server on free loopback ports; all stopped afterwards."""
    walrus_dir = directory / "walrus"
    with running_anvil() as anvil_url:
        deployer = RegistryClient(
            dev_network(anvil_url), signer=account(0), retry=FAST_RPC_RETRY, poll_interval=0.05
        )
        address = deployer.deploy().address
        proxy = RpcProxy(anvil_url)
        stack = Stack(
            anvil_url,
            proxy,
            WalrusServer(walrus_dir, fake_blob_ids=True).start(),
            address,
            walrus_dir,
        )
        try:
            yield stack
        finally:
            stack.walrus.stop()  # the one running now, after any restart
            proxy.close()


# ---------------------------------------------------------------- what a run used


@dataclass
class Inputs:
    """The data and image of a run, stored on Walrus and (the image) registered."""

    manifest: DatasetManifest
    manifest_ref: ManifestRef
    raw_ref: BlobRef
    shard_bytes: dict[str, bytes] = field(default_factory=dict)
    image_digest: Digest | None = None
    image_manifest_blob: str | None = None
    image_quilt: str | None = None
    """The quilt holding the image as its one file `okai-worker.qcow2` (as publish stores it)."""


def publish_inputs(
    stack: Stack, *, register_image: bool = True, image_toplevel: str = TOPLEVEL, salt: int = 0
) -> Inputs:
    """One dataset of three shards, one raw blob, and a registered worker image.

    `salt` varies the bytes: blobs are content-addressed, so tests that spoil stored
    blobs need their own.
    """
    with stack.walrus_client() as walrus:
        data = bytes((i + salt) % 256 for i in range(768))
        shards = []
        shard_bytes = {}
        for offset in range(0, len(data), 300):
            piece = data[offset : offset + 300]
            blob = walrus.store_bytes(piece).blob_id
            shard_bytes[blob] = piece
            shards.append(
                DatasetShard(
                    path="digits.csv",
                    offset=offset,
                    size=len(piece),
                    sha256=Digest.of_bytes(piece),
                    blob_id=blob,
                    media_type="text/csv",
                )
            )
        manifest = DatasetManifest(
            name="digits",
            files=(
                DatasetFile(
                    path="digits.csv",
                    size=len(data),
                    sha256=Digest.of_bytes(data),
                    media_type="text/csv",
                ),
            ),
            shards=tuple(shards),
            totals=DatasetTotals(files=1, shards=len(shards), bytes=len(data)),
        )
        manifest_blob = walrus.store_bytes(manifest.canonical_bytes()).blob_id
        raw = b"raw labels 0 1 2 3 4 5 6 7 8 9\n" + bytes([salt])
        raw_blob = walrus.store_bytes(raw).blob_id
        shard_bytes[raw_blob] = raw
        inputs = Inputs(
            manifest=manifest,
            manifest_ref=ManifestRef(manifest_blob_id=manifest_blob, sha256=manifest.digest()),
            raw_ref=BlobRef(blob_id=raw_blob, sha256=Digest.of_bytes(raw), path="labels"),
            shard_bytes=shard_bytes,
        )
        if register_image:
            # Stored as okai image publish stores it: the one file of a quilt, named by
            # the image's file name; the manifest's blob ID is the quilt ID.
            image_bytes = b"QFI\xfb fake qcow2 image bytes" * 4
            image_name = "okai-worker.qcow2"
            image_quilt = walrus.store_quilt({image_name: image_bytes}).quilt_id
            image = ImageManifest(
                file_name=image_name,
                format="qcow2",
                variant="qemu",
                size=len(image_bytes),
                sha256=Digest.of_bytes(image_bytes),
                blob_id=image_quilt,
                nixos=NixosIdentity(
                    system_toplevel=image_toplevel,
                    nixpkgs_revision=NIXPKGS,
                    flake_revision=FLAKE,
                ),
                python=ImagePython.model_validate(PYTHON_IDENTITY),
            )
            inputs.image_manifest_blob = walrus.store_bytes(image.canonical_bytes()).blob_id
            inputs.image_digest = image.sha256
            inputs.image_quilt = image_quilt
            stack.registry().register_image(
                image.sha256,
                system_toplevel_digest(image_toplevel),
                inputs.image_manifest_blob,
                Digest.of_bytes(image.canonical_bytes()),
            )
    return inputs


def safetensors_bytes(values: list[float]) -> bytes:
    """A real safetensors file by hand: one float32 tensor `w`, fixed metadata."""
    payload = struct.pack(f"<{len(values)}f", *values)
    header = {
        "__metadata__": {"format": "pt"},
        "w": {"dtype": "F32", "shape": [len(values)], "data_offsets": [0, len(payload)]},
    }
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + payload


def job_for(inputs: Inputs, *, name: str = "digits-mlp", deterministic: bool = True) -> JobSpec:
    return JobSpec(
        name=name,
        model={"builtin": "mlp"},  # type: ignore[arg-type]
        hyperparameters={"epochs": 3, "lr": 0.05},
        seed=7,
        deterministic=deterministic,
        datasets=(inputs.manifest_ref, inputs.raw_ref),
        nodes=1,
        procs_per_node=2,
    )


def write_run(
    directory: Path,
    inputs: Inputs,
    *,
    values: list[float] | None = None,
    run_id: str = "digits-20260101-120000",
    host: str | None = TOPLEVEL,
    job: JobSpec | None = None,
    libraries: dict[str, str] | None = None,
) -> Receipt:
    """A finished run directory as training leaves it: model, job and receipt.

    `host` is the toplevel the node ran (None: an unregistered host, no image);
    `libraries` the software identity (default: another machine's).
    """
    directory.mkdir(parents=True, exist_ok=True)
    model = safetensors_bytes(values or [0.25, -1.5, 3.0, 0.125])
    (directory / "model.safetensors").write_bytes(model)
    job = job or job_for(inputs)
    (directory / "job.json").write_bytes(job.canonical_bytes())
    (directory / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n', encoding="utf-8")
    image: dict[str, Any] | None = None
    if host is not None:
        assert inputs.image_digest is not None
        image = {
            "sha256": inputs.image_digest,
            "manifestBlobId": inputs.image_manifest_blob,
            "systemToplevel": host,
            "nixpkgsRevision": NIXPKGS,
            "flakeRevision": FLAKE,
        }
    datasets = [
        {
            "ref": "manifest",
            "manifestBlobId": inputs.manifest_ref.manifest_blob_id,
            "sha256": inputs.manifest_ref.sha256,
        },
        {"ref": "blob", "blobId": inputs.raw_ref.blob_id, "sha256": inputs.raw_ref.sha256},
    ]
    started = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    receipt = Receipt.from_data(
        {
            "schema": "okai.receipt/v1",
            "runId": run_id,
            "provider": "local",
            "modelFile": "model.safetensors",
            "modelSha256": Digest.of_bytes(model),
            "job": job.to_json(),
            "jobSha256": job.digest(),
            "datasets": datasets,
            "code": {
                "sha256": Digest.of_bytes(b"okai 0.1.0 builtin mlp"),
                "description": "okai 0.1.0 builtin model 'mlp'",
            },
            **({"image": image} if image is not None else {"host": "unregistered host"}),
            "libraries": libraries or {"python": "3.12.3", "torch": "2.13.0", "okai": "0.1.0"},
            "worldSize": 2,
            "nodes": 1,
            "startedAt": started.isoformat(),
            "finishedAt": started.replace(minute=3).isoformat(),
            "metrics": {"loss": 0.12, "accuracy": 0.97, "steps": 300},
        },
        "test receipt",
    )
    receipt.write(directory / "receipt.json")
    return receipt


@pytest.fixture(scope="module", name="stack")
def stack_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One running stack per test module."""
    with running_stack(tmp_path_factory.mktemp("stack")) as running:
        yield running


@pytest.fixture(scope="module", name="inputs")
def inputs_fixture(stack: Stack) -> Inputs:
    """The default inputs, published once per test module."""
    return publish_inputs(stack)
