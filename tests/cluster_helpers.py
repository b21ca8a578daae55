"""Shared by the cluster tests: a working directory with a Walrus server and the demo dataset."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO
from okai.manifest import JobSpec, ManifestRef
from okai.train import digits_files, digits_job, job_to_toml
from okai.walrus.client import WalrusClient
from okai.walrus.dataset import push_dataset
from okai.walrus.server import WalrusServer

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

    def job_file(self, name: str, job: JobSpec | None = None) -> Path:
        path = self.home / f"{name}.toml"
        path.write_text(job_to_toml(job or self.job()))
        return path

    def client(self) -> WalrusClient:
        return WalrusClient([self.walrus_url], self.walrus_url, compute_blob_ids_up_to=0)


@contextmanager
def digits_stack(home: Path) -> Iterator[Stack]:
    """Work in `home`, with a Walrus server on loopback holding the digits dataset.

    The environment points okai (and every node it starts) at that server; it
    answers with stand-in blob IDs, so clients do not recompute real ones.
    """
    with pytest.MonkeyPatch.context() as env:
        env.chdir(home)
        env.setenv("OKAI_HOME", str(home / ".okai"))
        env.setenv("OKAI_NODE_MODULES", str(REPO / "node_modules"))
        env.setenv("OKAI_WALRUS_CHECK_BLOB_IDS_UP_TO", "0")
        for name in ("OKAI_NETWORK", "OKAI_CONFIG", "OKAI_NODE_STATE_DIR", "OKAI_FLUENCE_URL"):
            env.delenv(name, raising=False)
        with WalrusServer(home / "walrus", fake_blob_ids=True).start() as server:
            env.setenv("OKAI_WALRUS_AGGREGATORS", server.url)
            env.setenv("OKAI_WALRUS_PUBLISHER", server.url)
            files = home / "digits"
            for name, data in digits_files().items():
                (files / name).parent.mkdir(parents=True, exist_ok=True)
                (files / name).write_bytes(data)
            with WalrusClient([server.url], server.url, compute_blob_ids_up_to=0) as client:
                pushed = push_dataset(client, [files], name="digits", journal_dir=home / "journal")
            yield Stack(
                home,
                server.url,
                ManifestRef(
                    manifest_blob_id=pushed.manifest_blob_id, sha256=pushed.manifest_digest
                ),
            )
