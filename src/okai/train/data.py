"""Where training bytes come from: a `ShardSource`, verified before anything uses them.

A source turns the references of a job (dataset manifests, shards, code
blobs) into local files whose SHA-256 it has checked against the digest the
job or the manifest pins. Two implementations:

- `WalrusShardSource`: the Walrus network of `--network`, read through the node's
  shard cache (`okai.train.cache`: verified, shared by the node's ranks, bounded
  by `OKAI_SHARD_CACHE_BYTES` if set);
- `LocalShardSource`: a folder laid out like a Walrus store (`blobs/<blob ID>`),
  for tests, benchmarks and air-gapped runs. Its blob IDs are derived from the
  SHA-256 of the bytes; they are locators, never trusted on their own.

A source only vouches for bytes at the moment it returns them; the loader hashes
the exact bytes it decodes once more, so no later change on disk is trained on.
A file a source returns stays on disk until the caller `release`s it (with a
bounded cache, eviction skips it until then).
"""

from __future__ import annotations

import base64
import importlib
import io
import os
import shutil
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from okai.atomic import write_atomically
from okai.config import load_settings
from okai.digest import Digest, canonical_json
from okai.errors import IntegrityError, UsageError
from okai.formats import SPANNING, detect, inspect
from okai.manifest import (
    BlobRef,
    DataFormat,
    DatasetFile,
    DatasetManifest,
    DatasetShard,
    DatasetTotals,
    EntrypointModel,
    JobSpec,
    ManifestRef,
)
from okai.paths import cache_dir
from okai.train.cache import ShardCache, bound_from_env
from okai.train.errors import BlobUnavailable

DEFAULT_SHARD_SIZE = 64 << 20
"""Files larger than this are split into several byte-shards by `put_dataset`."""


class ShardSource(Protocol):
    """Fetches what a job references and returns only verified local files.

    Implementations must be safe to call from several threads at once (a rank
    fetches its shards in parallel) and from several processes on one machine.
    """

    def manifest(self, ref: ManifestRef) -> DatasetManifest:
        """The dataset manifest `ref` names, checked against `ref.sha256`."""
        ...

    def shard(self, shard: DatasetShard) -> Path:
        """A local file holding exactly the shard's bytes, checked against `shard.sha256`."""
        ...

    def blob(self, blob_id: str, sha256: Digest) -> Path:
        """A local file holding blob `blob_id`, checked against `sha256` (code, raw data)."""
        ...

    def release(self, path: Path) -> None:
        """Done with a file `shard` or `blob` returned: it may be evicted (once per return)."""
        ...

    @property
    def cache_bound(self) -> int | None:
        """The most bytes of shards this node keeps on disk at once; None: no bound."""
        ...


def local_blob_id(data: bytes) -> str:
    """The blob ID `LocalShardSource` files `data` under: its SHA-256, base64url."""
    return base64.urlsafe_b64encode(Digest.of_bytes(data).to_bytes32()).rstrip(b"=").decode()


class LocalShardSource:
    """A folder of blobs named by blob ID (`<root>/blobs/<id>`): a Walrus store on disk."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, blob_id: str) -> Path:
        return self.root / "blobs" / blob_id

    def _read(self, blob_id: str) -> bytes:
        try:
            return self._path(blob_id).read_bytes()
        except OSError as exc:
            raise BlobUnavailable(
                f"blob {blob_id} is not in the local store {self.root}: {exc.strerror or exc}"
            ) from exc

    def manifest(self, ref: ManifestRef) -> DatasetManifest:
        raw = self._read(ref.manifest_blob_id)
        manifest = DatasetManifest.from_json_bytes(raw, f"manifest blob {ref.manifest_blob_id}")
        actual = manifest.digest()
        if actual != ref.sha256:
            raise IntegrityError(f"dataset manifest {ref.manifest_blob_id}", ref.sha256, actual)
        return manifest

    def shard(self, shard: DatasetShard) -> Path:
        path = self._path(shard.blob_id)
        self._verify(path, shard.blob_id, Digest(shard.sha256), describe_shard(shard), shard.size)
        return path

    def blob(self, blob_id: str, sha256: Digest) -> Path:
        path = self._path(blob_id)
        self._verify(path, blob_id, sha256, f"blob {blob_id}", None)
        return path

    def release(self, path: Path) -> None:
        """Nothing to do: the store is not a cache, its files stay."""

    @property
    def cache_bound(self) -> int | None:
        return None

    def _verify(
        self, path: Path, blob_id: str, expected: Digest, what: str, size: int | None
    ) -> None:
        try:
            actual = Digest.of_file(path)
            actual_size = path.stat().st_size
        except OSError as exc:
            raise BlobUnavailable(
                f"blob {blob_id} is not in the local store {self.root}: {exc.strerror or exc}"
            ) from exc
        if actual != expected:
            raise IntegrityError(what, expected, actual)
        if size is not None and actual_size != size:
            raise IntegrityError(what, f"{size} bytes", f"{actual_size} bytes")

    # ------------------------------------------------------------ writing

    def put(self, data: bytes) -> str:
        """Store `data` as a blob (atomically) and return its blob ID."""
        blob_id = local_blob_id(data)
        write_atomically(self._path(blob_id), data)
        return blob_id

    def put_dataset(
        self,
        name: str,
        files: Mapping[str, bytes],
        *,
        shard_size: int = DEFAULT_SHARD_SIZE,
        data_format: DataFormat | None = None,
        inspected: bool = True,
    ) -> tuple[ManifestRef, DatasetManifest]:
        """Store files as shards plus their manifest, as `okai data push` does on Walrus.

        `inspected=False` records no format or sample counts and checks nothing, as
        an older okai (or a careless or hostile pusher) would: for tests of the
        training side's own checks.
        """
        if shard_size < 1:
            raise UsageError(f"shard size must be at least 1 byte, got {shard_size}")
        dataset_files: list[DatasetFile] = []
        shards: list[DatasetShard] = []
        for path, data in files.items():
            fmt = data_format or detect(path)
            offsets = list(range(0, max(len(data), 1), shard_size))
            found = (
                inspect(fmt, io.BytesIO(data), path, boundaries=offsets if fmt in SPANNING else ())
                if inspected
                else None
            )
            firsts = dict(zip(offsets, found.first_samples, strict=False)) if found else {}
            dataset_files.append(
                DatasetFile(
                    path=path,
                    size=len(data),
                    sha256=Digest.of_bytes(data),
                    format=fmt if found else None,
                    samples=found.samples if found else None,
                )
            )
            for offset in offsets:
                piece = data[offset : offset + shard_size]
                shards.append(
                    DatasetShard(
                        path=path,
                        offset=offset,
                        size=len(piece),
                        sha256=Digest.of_bytes(piece),
                        blob_id=self.put(piece),
                        first_sample=firsts.get(offset),
                    )
                )
        manifest = DatasetManifest(
            name=name,
            files=tuple(dataset_files),
            shards=tuple(shards),
            totals=DatasetTotals(
                files=len(dataset_files),
                shards=len(shards),
                bytes=sum(file.size for file in dataset_files),
            ),
        )
        blob_id = self.put(canonical_json(manifest.to_json()))
        return ManifestRef(manifest_blob_id=blob_id, sha256=manifest.digest()), manifest


def describe_shard(shard: DatasetShard) -> str:
    """How errors name a shard: file, byte range and blob."""
    return (
        f"shard {shard.path} [{shard.offset}, {shard.offset + shard.size}) (blob {shard.blob_id})"
    )


class WalrusShardSource:
    """Reads Walrus through the node's shard cache (`okai.train.cache`).

    `bound`: the most bytes the cache keeps (`OKAI_SHARD_CACHE_BYTES` when opened
    with `open`); None: no bound. Every rank of a node should use the same one.
    """

    def __init__(self, client: Any, cache: Path, bound: int | None = None) -> None:
        self._client = client
        self._cache = ShardCache(cache, bound)
        self._dataset = _walrus_module("okai.walrus.dataset")

    @classmethod
    @contextmanager
    def open(cls, network: str | None, cache: Path | None = None) -> Iterator[WalrusShardSource]:
        """A source on `network` (the local stack by default), closed on exit."""
        bound = bound_from_env()  # a bad value is refused before anything is opened
        settings = load_settings(network)
        client_module = _walrus_module("okai.walrus.client")
        with client_module.WalrusClient.from_network(settings.network, settings.secrets) as client:
            yield cls(client, cache or cache_dir() / "shards", bound)

    @property
    def cache_bound(self) -> int | None:
        return self._cache.bound

    def manifest(self, ref: ManifestRef) -> DatasetManifest:
        manifest = self._dataset.fetch_manifest(self._client, ref)
        assert isinstance(manifest, DatasetManifest)
        return manifest

    def shard(self, shard: DatasetShard) -> Path:
        digest = Digest.parse(shard.sha256)
        return self._cache.get(
            digest,
            shard.size,
            lambda: self._client.read_bytes(shard.blob_id, digest, max_bytes=max(shard.size, 1)),
            describe_shard(shard),
        )

    def blob(self, blob_id: str, sha256: Digest) -> Path:
        digest = Digest.parse(sha256)
        return self._cache.get(
            digest, None, lambda: self._client.read_bytes(blob_id, digest), f"blob {blob_id}"
        )

    def release(self, path: Path) -> None:
        self._cache.release(path)


def _walrus_module(name: str) -> Any:
    # Imported by name: training on local data never loads the Walrus client.
    return importlib.import_module(name)


@dataclass(frozen=True)
class SourceSpec:
    """Which source workers open, as one command-line word: `local:<dir>` or `walrus:<network>`."""

    kind: Literal["local", "walrus"]
    location: str = ""

    @classmethod
    def local(cls, root: str | Path) -> SourceSpec:
        return cls("local", str(Path(root).resolve()))

    @classmethod
    def walrus(cls, network: str | None = None) -> SourceSpec:
        return cls("walrus", network or "")

    @classmethod
    def parse(cls, text: str) -> SourceSpec:
        kind, _, location = text.partition(":")
        if kind == "local" and location:
            return cls("local", location)
        if kind == "walrus":
            return cls("walrus", location)
        raise UsageError(f"not a data source: {text!r} (want local:<dir> or walrus:<network>)")

    def __str__(self) -> str:
        return f"{self.kind}:{self.location}"


def check_source(spec: SourceSpec) -> None:
    """Fail now, not in every worker, if `spec` cannot be opened."""
    if spec.kind == "local":
        if not (Path(spec.location) / "blobs").is_dir():
            raise UsageError(f"{spec.location} is not a local blob store (it has no blobs/ folder)")
    else:
        _walrus_module("okai.walrus.client")
        _walrus_module("okai.walrus.dataset")


@contextmanager
def open_source(spec: SourceSpec) -> Iterator[ShardSource]:
    """Open the source `spec` names for the duration of a `with` block."""
    if spec.kind == "local":
        yield LocalShardSource(spec.location)
    else:
        with WalrusShardSource.open(spec.location or None) as source:
            yield source


STAGE_WORKERS = 4


def stage_inputs(job: JobSpec, source: ShardSource, store: Path) -> SourceSpec:
    """Fetch and verify every blob `job` trains from, filed as a local store at `store`.

    What a sandboxed run reads instead of the network: its entry point, manifests,
    shards and raw blobs, each checked by `source` against the digest the job (or a
    checked manifest) pins, before the code runs.
    """
    blobs = store / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    model = job.model
    if isinstance(model, EntrypointModel):
        _file(
            source.blob(model.entrypoint_blob_id, Digest(model.sha256)),
            blobs,
            model.entrypoint_blob_id,
        )
    shards: list[DatasetShard] = []
    for ref in job.datasets:
        if isinstance(ref, ManifestRef):
            manifest = source.manifest(ref)
            (blobs / ref.manifest_blob_id).write_bytes(manifest.canonical_bytes())
            shards += manifest.shards
        elif isinstance(ref, BlobRef) and ref.sha256 is not None:
            _file(source.blob(ref.blob_id, Digest(ref.sha256)), blobs, ref.blob_id)
    with ThreadPoolExecutor(STAGE_WORKERS) as pool:
        list(pool.map(lambda shard: _file(source.shard(shard), blobs, shard.blob_id), shards))
    return SourceSpec.local(store)


def _file(verified: Path, blobs: Path, blob_id: str) -> None:
    """Link (or copy) a verified file into the store under its blob ID."""
    dest = blobs / blob_id
    if dest.exists():
        return
    try:
        os.link(verified, dest)
    except FileExistsError:
        return
    except OSError:  # another file system, or links not allowed
        shutil.copyfile(verified, dest)
