"""Shared by the cluster tests: a working directory with a Walrus server and the demo dataset;
two hosts in network namespaces, and waiting for the nodes started on them."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO
from okai.manifest import JobSpec, ManifestRef
from okai.train import digits_files, digits_job, job_to_toml
from okai.walrus.client import WalrusClient
from okai.walrus.dataset import push_dataset
from okai.walrus.server import WalrusServer
from okai.walrus.tokens import PublisherTokens
from walrus_helpers import token_command

EPOCHS = 3


@dataclass
class Stack:
    """A home folder (the working directory), its Walrus server, the digits dataset on it."""

    home: Path
    walrus_url: str
    dataset: ManifestRef

    def job(self, **changes: object) -> JobSpec:
        """The demo job on 2 nodes of 1 process, with a checkpoint every 5 steps."""
        job = digits_job(
            (self.dataset,), nodes=2, procs_per_node=1, epochs=EPOCHS, checkpoint_every=5
        )
        return job.model_copy(update=changes)

    def long_job(self) -> JobSpec:
        """The demo job for 660 steps: long enough to be killed or interrupted mid-training
        however fast the machine trains (a hundred steps a second on an idle one)."""
        return digits_job(
            (self.dataset,), nodes=2, procs_per_node=1, epochs=30, checkpoint_every=20
        )

    def job_file(self, name: str, job: JobSpec | None = None) -> Path:
        path = self.home / f"{name}.toml"
        path.write_text(job_to_toml(job or self.job()))
        return path

    def client(self) -> WalrusClient:
        return WalrusClient([self.walrus_url], self.walrus_url, compute_blob_ids_up_to=0)


@contextmanager
def digits_stack(home: Path, *, jwt_secret: str | None = None) -> Iterator[Stack]:
    """Work in `home`, with a Walrus server on loopback holding the digits dataset.

    The environment points okai (and every node it starts) at that server; it
    answers with stand-in blob IDs, so clients do not recompute real ones.
    With `jwt_secret` its publisher wants a token per store (tests pushing
    the dataset with tokens of `<home>/push-tokens`).
    """
    with pytest.MonkeyPatch.context() as env:
        env.chdir(home)
        env.setenv("OKAI_HOME", str(home / ".okai"))
        env.setenv("OKAI_NODE_MODULES", str(REPO / "node_modules"))
        env.setenv("OKAI_WALRUS_CHECK_BLOB_IDS_UP_TO", "0")
        for name in ("OKAI_NETWORK", "OKAI_CONFIG", "OKAI_NODE_STATE_DIR", "OKAI_FLUENCE_URL"):
            env.delenv(name, raising=False)
        with WalrusServer(
            home / "walrus", fake_blob_ids=True, jwt_secret=jwt_secret
        ).start() as server:
            env.setenv("OKAI_WALRUS_AGGREGATORS", server.url)
            env.setenv("OKAI_WALRUS_PUBLISHER", server.url)
            files = home / "digits"
            for name, data in digits_files().items():
                (files / name).parent.mkdir(parents=True, exist_ok=True)
                (files / name).write_bytes(data)
            tokens = None
            if jwt_secret is not None:
                (home / "push-tokens").mkdir()
                tokens = PublisherTokens.parse(
                    None, token_command(home / "push-tokens", jwt_secret)
                )
            with WalrusClient(
                [server.url], server.url, compute_blob_ids_up_to=0, tokens=tokens
            ) as client:
                pushed = push_dataset(client, [files], name="digits", journal_dir=home / "journal")
            yield Stack(
                home,
                server.url,
                ManifestRef(
                    manifest_blob_id=pushed.manifest_blob_id, sha256=pushed.manifest_digest
                ),
            )


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@contextmanager
def two_netns_hosts(addresses: tuple[str, str]) -> Iterator[tuple[str, str]]:
    """Two network namespaces joined by a veth pair, at `addresses` (/24); yields their names.

    Skips when the kernel refuses namespaces; `ip` itself missing is a failure, not a skip.
    """
    tag = uuid.uuid4().hex[:6]
    hosts = (f"okai-{tag}-a", f"okai-{tag}-b")
    links = (f"okv{tag}a", f"okv{tag}b")
    try:
        _ip("netns", "add", hosts[0])
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"the kernel refuses network namespaces here: {exc.stderr.decode().strip()}")
    try:
        _ip("netns", "add", hosts[1])
        _ip("link", "add", links[0], "type", "veth", "peer", "name", links[1])
        for host, link, address in zip(hosts, links, addresses, strict=True):
            _ip("link", "set", link, "netns", host)
            _ip("-n", host, "addr", "add", f"{address}/24", "dev", link)
            _ip("-n", host, "link", "set", link, "up")
            _ip("-n", host, "link", "set", "lo", "up")
        yield hosts
    finally:
        for host in hosts:  # deleting a namespace deletes its end of the veth pair
            subprocess.run(["ip", "netns", "delete", host], capture_output=True, timeout=30)


def json_results(nodes: list[subprocess.Popen[str]], timeout: float) -> list[Any]:
    """Wait for every node; each must exit 0 with one JSON document on stdout. Kills leftovers."""
    results = []
    try:
        for node in nodes:
            stdout, stderr = node.communicate(timeout=timeout)
            assert node.returncode == 0, stderr
            results.append(json.loads(stdout))
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
                node.wait()
    return results
