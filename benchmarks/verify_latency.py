"""`okai verify` without --deep on the local stack: latency and RPC calls.

Starts the local stack (`okai dev up`: anvil, the Walrus server, the registry) in a
temporary OKAI_HOME on free ports, records a small run on it, then measures:

- the verification itself, in process (what `okai verify` does after the interpreter
  has started and imported okai), with fresh clients each time;
- the command (`okai --json verify MODEL`) in a fresh interpreter, timed from the end
  of its imports (okai's CLI, and web3 and httpx, which `verify` imports when it runs)
  to its exit; the imports are reported apart;
- the baseline: the same round trips done by hand with httpx (eth_chainId, one eth_call,
  two blob reads), the floor any verifier pays on this stack.

RPC requests are counted by a forwarding proxy in front of anvil.

    PYTHONPATH=src .venv/bin/python benchmarks/verify_latency.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from okai.tls import tls_context


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class CountingProxy:
    """Forwards JSON-RPC to anvil and counts the calls."""

    def __init__(self, upstream: str) -> None:
        self.calls: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = json.loads(body)
                for call in request if isinstance(request, list) else [request]:
                    proxy.calls.append(call["method"])
                reply = httpx.post(
                    upstream,
                    content=body,
                    headers={"Content-Type": "application/json"},
                    verify=tls_context(),  # not a CA bundle load per request
                )
                self.send_response(reply.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply.content)))
                self.end_headers()
                self.wfile.write(reply.content)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def timed(rounds: int, action: Callable[[], object]) -> list[float]:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return samples


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return f"median {statistics.median(samples) * 1000:7.1f} ms   p90 {p90 * 1000:7.1f} ms"


def record_a_run(home: Path) -> tuple[Path, dict[str, Any]]:
    """A dataset, a registered image and a recorded run on the running local stack."""
    from eth_account import Account

    from okai.chain import RegistryClient
    from okai.chain.signer import DEV_PRIVATE_KEY
    from okai.config import load_settings
    from okai.digest import Digest
    from okai.manifest import (
        DatasetFile,
        DatasetManifest,
        DatasetShard,
        DatasetTotals,
        ImageManifest,
        JobSpec,
        ManifestRef,
        NixosIdentity,
    )
    from okai.provenance.receipt import Receipt, system_toplevel_digest
    from okai.provenance.record import record_run
    from okai.walrus.client import WalrusClient

    settings = load_settings("dev")
    registry = RegistryClient(settings.network, signer=Account.from_key(DEV_PRIVATE_KEY))
    toplevel = "/nix/store/7y1jz2w5q0cb0zwz3d0vgg8h1r3k9m2a-nixos-system-okai-24.11"
    with WalrusClient.from_network(settings.network, settings.secrets) as walrus:
        data = bytes(range(256)) * 4
        shard = walrus.store_bytes(data).blob_id
        manifest = DatasetManifest(
            name="bench",
            files=(DatasetFile(path="data.bin", size=len(data), sha256=Digest.of_bytes(data)),),
            shards=(
                DatasetShard(
                    path="data.bin",
                    offset=0,
                    size=len(data),
                    sha256=Digest.of_bytes(data),
                    blob_id=shard,
                ),
            ),
            totals=DatasetTotals(files=1, shards=1, bytes=len(data)),
        )
        manifest_blob = walrus.store_bytes(manifest.canonical_bytes()).blob_id
        image = ImageManifest(
            file_name="okai-worker.qcow2",
            format="qcow2",
            variant="qemu",
            size=4,
            sha256=Digest.of_bytes(b"QFI\xfb"),
            nixos=NixosIdentity(
                system_toplevel=toplevel, nixpkgs_revision="0" * 40, flake_revision="bench"
            ),
        )
        image_blob = walrus.store_bytes(image.canonical_bytes()).blob_id
        registry.register_image(
            image.sha256,
            system_toplevel_digest(toplevel),
            image_blob,
            Digest.of_bytes(image.canonical_bytes()),
        )
        job = JobSpec(
            name="bench",
            model={"builtin": "mlp"},  # type: ignore[arg-type]
            datasets=(ManifestRef(manifest_blob_id=manifest_blob, sha256=manifest.digest()),),
        )
        run = home / "run"
        run.mkdir()
        model = b"\x00okai benchmark model\n" * 1000
        (run / "model.safetensors").write_bytes(model)
        started = datetime(2026, 1, 1, tzinfo=UTC).isoformat()
        Receipt.from_data(
            {
                "schema": "okai.receipt/v1",
                "runId": "bench",
                "provider": "local",
                "modelFile": "model.safetensors",
                "modelSha256": Digest.of_bytes(model),
                "job": job.to_json(),
                "jobSha256": job.digest(),
                "datasets": [
                    {
                        "ref": "manifest",
                        "manifestBlobId": manifest_blob,
                        "sha256": manifest.digest(),
                    }
                ],
                "code": {"sha256": Digest.of_bytes(b"code"), "description": "benchmark"},
                "image": {
                    "sha256": image.sha256,
                    "manifestBlobId": image_blob,
                    "systemToplevel": toplevel,
                },
                "libraries": {"python": "3"},
                "worldSize": 1,
                "nodes": 1,
                "startedAt": started,
                "finishedAt": started,
                "metrics": {"loss": 0.5},
            },
            "benchmark receipt",
        ).write(run / "receipt.json")
        result = record_run(run, registry=registry, walrus=walrus, epochs=1)
    return run / "model.safetensors", result.to_json()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--cli-rounds", type=int, default=5)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="okai-bench-"))
    os.environ.update(
        {
            "OKAI_HOME": str(home / ".okai"),
            "OKAI_DEV_ANVIL_PORT": str(free_port()),
            "OKAI_DEV_WALRUS_PORT": str(free_port()),
            # Blob IDs are checked by the server; the client recomputing them too only
            # slows the set-up (verification reads by digest and never computes them).
            "OKAI_WALRUS_CHECK_BLOB_IDS_UP_TO": "0",
        }
    )
    os.environ.pop("OKAI_NETWORK", None)
    from okai.dev import stack

    print("starting the local stack (okai dev up) ...", file=sys.stderr)
    described = stack.up()
    try:
        print("recording a run ...", file=sys.stderr)
        model, recorded = record_a_run(home)
        proxy = CountingProxy(described["rpc_url"])
        os.environ["OKAI_RPC_URL"] = proxy.url
        measure(model, recorded, proxy, described, args.rounds, args.cli_rounds)
    finally:
        stack.down()


def measure(
    model: Path,
    recorded: dict[str, Any],
    proxy: CountingProxy,
    described: dict[str, Any],
    rounds: int,
    cli_rounds: int,
) -> None:
    from okai.chain import DEV_ADDRESS, RegistryClient
    from okai.config import load_settings
    from okai.verify import ModelTarget, Options, TrustPolicy, verify_model
    from okai.walrus.client import WalrusClient

    settings = load_settings("dev")
    trust = TrustPolicy(trainers=(DEV_ADDRESS,), publishers=(DEV_ADDRESS,))

    def verify_once() -> None:
        registry = RegistryClient.from_settings(settings)
        with WalrusClient.from_network(settings.network, settings.secrets) as walrus:
            report = verify_model(
                ModelTarget(path=model), Options(), registry=registry, walrus=walrus, policy=trust
            )
        assert report.verdict == "verified", [c.reason for c in report.checks]

    verify_once()  # warm: imports, connections, page cache
    proxy.calls.clear()
    verify_once()
    calls = list(proxy.calls)
    in_process = timed(rounds, verify_once)

    # The floor: the same round trips by hand.
    registry = RegistryClient.from_settings(settings)
    digest = recorded["modelDigest"]
    key = bytes.fromhex(digest.removeprefix("sha256:"))
    zero = "0x" + "0" * 40
    submitters = registry.contract.encode_abi("modelSubmitters", [key, zero, 10])
    calldata = registry.contract.encode_abi("getProvenance", [key, DEV_ADDRESS, [DEV_ADDRESS], []])
    address = recorded["registry"]
    walrus_url = described["walrus_url"]
    image_manifest = recorded_image_manifest(registry, digest)

    def floor_once() -> None:
        with httpx.Client(verify=tls_context()) as http:
            http.post(proxy.url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"})
            http.post(
                proxy.url,
                json={
                    "jsonrpc": "2.0",
                    "id": 3,
                    "method": "eth_getCode",
                    "params": [address, "latest"],
                },
            )
            http.post(
                proxy.url,
                json={
                    "jsonrpc": "2.0",
                    "id": 4,
                    "method": "eth_call",
                    "params": [{"to": address, "data": submitters}, "latest"],
                },
            )
            http.post(
                proxy.url,
                json={
                    "jsonrpc": "2.0",
                    "id": 2,
                    "method": "eth_call",
                    "params": [{"to": address, "data": calldata}, "latest"],
                },
            )
            http.get(f"{walrus_url}/v1/blobs/{recorded['attestation']['blobId']}")
            http.get(f"{walrus_url}/v1/blobs/{image_manifest}")

    floor_once()
    floor = timed(rounds, floor_once)

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    imports: list[float] = []
    commands: list[float] = []
    for _ in range(cli_rounds):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(model), DEV_ADDRESS],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        imported, ran = json.loads(out.stderr.strip().splitlines()[-1])
        imports.append(imported)
        commands.append(ran)

    verify_ms = statistics.median(in_process) * 1000
    floor_ms = statistics.median(floor) * 1000
    cli_ms = statistics.median(commands) * 1000
    print(f"okai verify (shallow) on the local stack, {rounds} rounds")
    print(f"  RPC requests per verification: {len(calls)} ({', '.join(calls)})")
    print(f"  baseline (same round trips by hand): {summary(floor)}")
    print(f"  verify_model, in process:            {summary(in_process)}")
    print(f"  okai command, its imports (web3 ...): {summary(imports)}")
    print(f"  okai --json verify, after imports:   {summary(commands)}")
    print(f"  ratio verify / baseline:             {verify_ms / floor_ms:7.2f}x")
    print(f"  command under 1 s excluding interpreter start and imports: {cli_ms < 1000}")


CHILD = """
import json, sys, time
start = time.perf_counter()
from okai.cli.app import main
import okai.chain.client, okai.verify, okai.walrus.client  # what `verify` imports when it runs
imported = time.perf_counter()
try:
    main(["--json", "verify", sys.argv[1], "--trainer", sys.argv[2], "--publisher", sys.argv[2]])
except SystemExit as exit:
    assert exit.code == 0, exit.code
done = time.perf_counter()
print(json.dumps([imported - start, done - imported]), file=sys.stderr)
"""
"""One `okai --json verify MODEL` in a fresh interpreter, timing the import and the rest."""


def recorded_image_manifest(registry: Any, digest: str) -> str:
    from okai.chain import DEV_ADDRESS
    from okai.digest import Digest

    provenance = registry.get_provenance(Digest.parse(digest), DEV_ADDRESS, [DEV_ADDRESS])
    return str(provenance.images[0].manifest_blob_id)


if __name__ == "__main__":
    main()
