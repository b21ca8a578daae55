"""A real local stack for the verification page's browser tests and benchmarks.

`okai dev up` brings up anvil with the registry deployed and the local Walrus server;
models are recorded on it the way `okai record` does (blobs stored over HTTP, image
registered, model recorded with the chain client); `okai web`'s server serves the built
page; Debian's Chromium, driven by Playwright, loads it.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account

from okai.chain.client import RegistryClient
from okai.chain.dev import dev_network
from okai.chain.signer import DEV_ADDRESS, DEV_PRIVATE_KEY
from okai.config import load_settings
from okai.dev import stack
from okai.digest import Digest, canonical_json
from okai.walrus.results import parse_quilt_store_result
from okai.web.server import WebServer, dist_dir, settings_config

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "vectors" / "verify"))
from generate import World  # noqa: E402  (the vectors' world, stored for real here)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "test-artifacts"

TRUST_DEV = f"trainer={DEV_ADDRESS}&publisher={DEV_ADDRESS}"
"""The page link's trust policy for the models this stack records."""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Recorded:
    """A model recorded on the stack: its file on disk and its digest."""

    name: str
    path: Path
    digest: str
    world: World = field(repr=False)


@dataclass
class WebStack:
    home: Path
    rpc_url: str
    walrus_url: str
    registry: str
    page_url: str
    models: dict[str, Recorded] = field(default_factory=dict)

    def store(self, content: bytes) -> str:
        """PUT a blob on the local Walrus server; its (real) blob ID."""
        reply = httpx.put(f"{self.walrus_url}/v1/blobs?epochs=5", content=content, timeout=60)
        reply.raise_for_status()
        body = reply.json()
        if "newlyCreated" in body:
            return str(body["newlyCreated"]["blobObject"]["blobId"])
        return str(body["alreadyCertified"]["blobId"])

    def store_quilt(self, identifier: str, content: bytes) -> str:
        """PUT a one-file quilt on the local Walrus server, as okai image publish does; its ID."""
        reply = httpx.put(
            f"{self.walrus_url}/v1/quilts?epochs=5",
            files=[(identifier, (identifier, content, "application/octet-stream"))],
            timeout=60,
        )
        reply.raise_for_status()
        return parse_quilt_store_result(reply.json(), "PUT /v1/quilts").quilt_id

    def client(self) -> RegistryClient:
        network = dev_network(self.rpc_url)
        return RegistryClient(
            network, address=self.registry, signer=Account.from_key(DEV_PRIVATE_KEY)
        )

    def record(
        self,
        name: str,
        world: World,
        *,
        attestation_bytes: bytes | None = None,
        **record_changes: Any,
    ) -> Recorded:
        """Store `world`'s attestation, register its image if need be, record its model."""
        chain, _ = world.recorded(attestation_bytes, **record_changes)
        record = chain["record"]
        client = self.client()
        image = chain["image"]
        if image is not None and not client.is_registered(Digest(record["imageDigest"])):
            client.register_image(
                Digest(record["imageDigest"]),
                Digest(image["systemToplevel"]),
                image["manifestBlobId"],
                Digest(image["manifestSha256"]),
            )
        client.record_model(
            model_digest=Digest(world.model_digest),
            image_digest=Digest(record["imageDigest"]) if image is not None else None,
            dataset_digests=[Digest(d) for d in record["datasetManifestDigests"]],
            job_digest=Digest(record["jobDigest"]),
            attestation_digest=Digest(record["attestationDigest"]),
            attestation_blob_id=record["attestationBlobId"],
        )
        path = self.home / "models" / f"{name}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(world.model)
        recorded = Recorded(name, path, world.model_digest, world)
        self.models[name] = recorded
        return recorded

    def model_url(self, digest: str, query: str = f"network=dev&{TRUST_DEV}") -> str:
        return f"{self.page_url}#/model/{digest}?{query}"

    @property
    def trusted_page_url(self) -> str:
        """The page with a policy trusting the dev account, which records every model here."""
        return f"{self.page_url}?{TRUST_DEV}"


def record_scenarios(web: WebStack) -> None:
    """Every model the browser tests open: one good, and one per failure they must show.

    The worlds store their blobs at once (the server computes a real blob ID for each, about
    two seconds of CPU apiece, in parallel helpers); the records go on chain one by one,
    from the one dev account."""

    # The manifest names shard 2's blob where shard 1's belongs: its bytes do not match.
    def swap_first_shard(manifest: dict[str, Any]) -> None:
        manifest["shards"][0]["blobId"] = manifest["shards"][1]["blobId"]

    stores = {"store": web.store, "store_quilt": web.store_quilt}
    worlds: dict[str, dict[str, Any]] = {
        "good": {},
        "tampered-attestation": {"model": b"model with a tampered attestation\n" * 4},
        "tampered-shard": {
            "model": b"model trained on a tampered shard\n" * 4,
            "spoil_manifest": swap_first_shard,
        },
        "hostile": {
            "model": b"model whose record holds hostile strings\n" * 4,
            "job_name": '<img src=x onerror="window.__pwned=1"> \u202ejob',
            "hostile": True,
        },
    }
    with ThreadPoolExecutor(len(worlds)) as pool:
        futures = {
            name: pool.submit(World, **stores, **options) for name, options in worlds.items()
        }
        built = {name: future.result() for name, future in futures.items()}

    web.record("good", built["good"])
    # The recorded attestation digest is the genuine one; the recorded blob holds other bytes.
    world = built["tampered-attestation"]
    genuine = canonical_json(world.attestation())
    statement = world.attestation()
    statement["predicate"]["runDetails"]["byproducts"][0]["annotations"]["accuracy"] = 0.999
    web.record(
        "tampered-attestation",
        world,
        attestation_bytes=canonical_json(statement),
        attestationDigest=Digest.of_bytes(genuine),
    )
    web.record("tampered-shard", built["tampered-shard"])
    web.record("hostile", built["hostile"])


@contextmanager
def web_stack() -> Iterator[WebStack]:
    """The local stack on free ports in a temporary OKAI_HOME, with the page served."""
    saved = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="okai-web-") as tmp:
        home = Path(tmp)
        os.environ.update(
            {
                "OKAI_HOME": str(home / ".okai"),
                "OKAI_NODE_MODULES": str(REPO / "node_modules"),
                "OKAI_DEV_ANVIL_PORT": str(free_port()),
                "OKAI_DEV_WALRUS_PORT": str(free_port()),
            }
        )
        for name in (
            "OKAI_NETWORK",
            "OKAI_CONFIG",
            "OKAI_PRIVATE_KEY",
            "OKAI_RPC_URL",
            "OKAI_REGISTRY",
        ):
            os.environ.pop(name, None)
        server = None
        try:
            description = stack.up()
            server = WebServer("127.0.0.1", 0, dist_dir(), settings_config("dev"))
            server.start_in_thread()
            network = load_settings("dev").network
            assert network.registry_address is not None
            yield WebStack(
                home=home,
                rpc_url=description["rpc_url"],
                walrus_url=description["walrus_url"],
                registry=network.registry_address,
                page_url=server.url,
            )
        finally:
            if server is not None:
                server.shutdown()
                server.server_close()
            stack.down()
            os.environ.clear()
            os.environ.update(saved)


@contextmanager
def chromium(width: int = 1100, height: int = 900) -> Iterator[Any]:
    """A fresh headless Chromium (Debian's) with a throwaway profile; yields the context."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="okai-chromium-") as profile, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": width, "height": height},
        )
        try:
            yield context
        finally:
            context.close()
