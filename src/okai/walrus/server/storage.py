"""Blobs on disk for the local Walrus-compatible server, with the bookkeeping of a publisher.

Layout of the server's folder::

    state.json          {"epoch": N, "scheme": "walrus-rs2-1000" | "okai-fake-sha256"}
    blobs/<blobId>      the bytes of each blob
    meta/<blobId>.json  its Sui-side record: object ID, epochs, persistence
    objects/<0x…>.json  object ID (Blob or shared blob) -> blob ID
    quilts/<quiltId>.json  the files inside a quilt and where they lie
    ids/<sha256 hex>    blob IDs already computed, by content
    tmp/                bodies being received

Files are replaced atomically, so two server instances on one folder (two
"aggregators" in tests) always see whole blobs and whole records.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from okai.digest import Digest
from okai.errors import UsageError
from okai.walrus.blob_ids import SCHEME_FAKE, SCHEME_WALRUS, BlobIdComputer, fake_blob_id

N_SHARDS = 1000
SOURCE_SYMBOLS = 334 * 667
MAX_SYMBOL = 65_534
MAX_BLOB_SIZE = SOURCE_SYMBOLS * MAX_SYMBOL
METADATA_BYTES = N_SHARDS * (N_SHARDS * 64 + 32)
FROST_PER_UNIT_EPOCH = 1000
FROST_PER_UNIT_WRITE = 1100
"""An illustrative price per MiB of encoded size: 1 epoch of 17 bytes costs 132,300 FROST,
the figure of the Walrus docs' example."""

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def encoded_length(size: int) -> int:
    """The encoded size Walrus charges for `size` unencoded bytes (reference section 7)."""
    symbol = math.ceil(max(size, 1) / SOURCE_SYMBOLS)
    symbol += symbol % 2
    return METADATA_BYTES + N_SHARDS * (334 + 667) * symbol


def storage_cost(size: int, epochs: int) -> int:
    units = math.ceil(encoded_length(size) / (1 << 20))
    return units * (FROST_PER_UNIT_EPOCH * epochs + FROST_PER_UNIT_WRITE)


def new_object_id() -> str:
    return "0x" + secrets.token_hex(32)


def new_tx_digest() -> str:
    """A random Sui transaction digest (32 bytes in base58)."""
    number = int.from_bytes(secrets.token_bytes(32), "big")
    digits = ""
    while number:
        number, rest = divmod(number, 58)
        digits = _B58[rest] + digits
    return digits or "1"


@dataclass
class BlobRecord:
    """What the chain would know about a stored blob."""

    blob_id: str
    size: int
    sha256: str
    object_id: str
    storage_id: str
    registered_epoch: int
    start_epoch: int
    end_epoch: int
    certified_epoch: int
    permanent: bool
    tx_digest: str
    shared_object_id: str | None = None

    def blob_object(self) -> dict[str, Any]:
        """The camelCase `blobObject` of a store result."""
        return {
            "id": self.object_id,
            "registeredEpoch": self.registered_epoch,
            "blobId": self.blob_id,
            "size": self.size,
            "encodingType": "RS2",
            "certifiedEpoch": self.certified_epoch,
            "deletable": not self.permanent,
            "storage": {
                "id": self.storage_id,
                "startEpoch": self.start_epoch,
                "endEpoch": self.end_epoch,
                "storageSize": encoded_length(self.size),
            },
        }


@dataclass(frozen=True)
class StoreRequest:
    epochs: int
    permanent: bool
    force: bool
    share: bool


class Storage:
    """The blobs and records of one server folder."""

    def __init__(self, root: Path, *, fake_blob_ids: bool, blob_ids: BlobIdComputer | None) -> None:
        self.root = root
        self.scheme = SCHEME_FAKE if fake_blob_ids else SCHEME_WALRUS
        if not fake_blob_ids and blob_ids is None:
            raise ValueError("real blob IDs need a BlobIdComputer")
        self._blob_ids = blob_ids
        self._lock = threading.Lock()
        for sub in ("blobs", "meta", "objects", "quilts", "ids", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        state = self._read_state()
        if state.get("scheme", self.scheme) != self.scheme:
            raise UsageError(
                f"{root} holds blobs with {state['scheme']} IDs, not {self.scheme}",
                hint="use another --dir, or the same --fake-blob-ids setting as before",
            )
        if "epoch" not in state:
            self._write_json(root / "state.json", {"epoch": 1, "scheme": self.scheme})

    # ------------------------------------------------------------ epochs

    def _read_state(self) -> dict[str, Any]:
        try:
            data = json.loads((self.root / "state.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        return data if isinstance(data, dict) else {}

    @property
    def epoch(self) -> int:
        return int(self._read_state().get("epoch", 1))

    def set_epoch(self, epoch: int) -> None:
        with self._lock:
            self._write_json(self.root / "state.json", {"epoch": epoch, "scheme": self.scheme})

    # ------------------------------------------------------------ receiving

    def receive(self, chunks: Iterator[bytes]) -> tuple[Path, Digest, int]:
        """Write a body to a temporary file; returns it with its SHA-256 and size."""
        temporary = self.root / "tmp" / f"{os.getpid()}-{secrets.token_hex(8)}"
        hasher = hashlib.sha256()
        size = 0
        try:
            with open(temporary, "wb") as out:
                for chunk in chunks:
                    hasher.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return temporary, Digest("sha256:" + hasher.hexdigest()), size

    def blob_id_of(self, path: Path, sha256: Digest, size: int) -> str:
        """The blob ID of received bytes in this folder's scheme (cached by content)."""
        if self._blob_ids is None:
            return fake_blob_id(sha256)
        cached = self.root / "ids" / sha256.hex
        try:
            return cached.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            pass
        blob_id = self._blob_ids.of_file(path, 0, size, sha256=sha256)
        self._write_text(cached, blob_id)
        return blob_id

    def store(
        self, temporary: Path, blob_id: str, sha256: Digest, size: int, request: StoreRequest
    ) -> dict[str, Any]:
        """Keep the received bytes as `blob_id`; returns the camelCase store result."""
        with self._lock:
            current = self.epoch
            target_end = current + request.epochs
            existing = self.record(blob_id)
            if existing is not None and not request.force and existing.end_epoch >= target_end:
                if existing.permanent:
                    temporary.unlink(missing_ok=True)
                    return {
                        "alreadyCertified": {
                            "blobId": blob_id,
                            "event": {"txDigest": existing.tx_digest, "eventSeq": "0"},
                            "endEpoch": existing.end_epoch,
                        }
                    }
                if not request.permanent:
                    temporary.unlink(missing_ok=True)
                    return {
                        "alreadyCertified": {
                            "blobId": blob_id,
                            "object": existing.object_id,
                            "endEpoch": existing.end_epoch,
                        }
                    }
            os.replace(temporary, self.root / "blobs" / blob_id)
            if (
                existing is not None
                and not request.force
                and existing.permanent == request.permanent
            ):
                operation = {
                    "reuseAndExtend": {
                        "encodedLength": encoded_length(size),
                        "epochsExtended": target_end - existing.end_epoch,
                    }
                }
                existing.end_epoch = target_end
                record = existing
            else:
                operation = {
                    "registerFromScratch": {
                        "encodedLength": encoded_length(size),
                        "epochsAhead": request.epochs,
                    }
                }
                record = BlobRecord(
                    blob_id=blob_id,
                    size=size,
                    sha256=str(sha256),
                    object_id=new_object_id(),
                    storage_id=new_object_id(),
                    registered_epoch=current,
                    start_epoch=current,
                    end_epoch=max(target_end, existing.end_epoch if existing else 0),
                    certified_epoch=current,
                    permanent=request.permanent or bool(existing and existing.permanent),
                    tx_digest=new_tx_digest(),
                )
            if request.share:
                record.shared_object_id = new_object_id()
                self._write_json(
                    self.root / "objects" / f"{record.shared_object_id}.json", {"blobId": blob_id}
                )
            self._write_json(self.root / "meta" / f"{blob_id}.json", asdict(record))
            self._write_json(
                self.root / "objects" / f"{record.object_id}.json", {"blobId": blob_id}
            )
            created: dict[str, Any] = {
                "blobObject": record.blob_object(),
                "resourceOperation": operation,
                "cost": storage_cost(size, request.epochs),
            }
            if request.share:
                created["sharedBlobObject"] = record.shared_object_id
            return {"newlyCreated": created}

    # ------------------------------------------------------------ reading

    def record(self, blob_id: str) -> BlobRecord | None:
        """The blob's record, or None when it is unknown or its storage has expired."""
        try:
            data = json.loads((self.root / "meta" / f"{blob_id}.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        record = BlobRecord(**data)
        return record if record.end_epoch > self.epoch else None

    def blob_path(self, blob_id: str) -> Path | None:
        """The file of a live blob, or None."""
        if self.record(blob_id) is None:
            return None
        path = self.root / "blobs" / blob_id
        return path if path.is_file() else None

    def blob_for_object(self, object_id: str) -> str | None:
        try:
            data = json.loads(
                (self.root / "objects" / f"{object_id.lower()}.json").read_text(encoding="utf-8")
            )
        except FileNotFoundError:
            return None
        return str(data["blobId"])

    # ------------------------------------------------------------ quilts

    def save_quilt(self, quilt_id: str, index: list[dict[str, Any]]) -> None:
        self._write_json(self.root / "quilts" / f"{quilt_id}.json", {"patches": index})

    def quilt(self, quilt_id: str) -> list[dict[str, Any]] | None:
        """The patches of a live quilt, or None."""
        if self.record(quilt_id) is None:
            return None
        try:
            data = json.loads((self.root / "quilts" / f"{quilt_id}.json").read_text("utf-8"))
        except FileNotFoundError:
            return None
        patches: list[dict[str, Any]] = data["patches"]
        return patches

    # ------------------------------------------------------------ files

    def _write_json(self, path: Path, data: Any) -> None:
        self._write_text(path, json.dumps(data, indent=1))

    def _write_text(self, path: Path, text: str) -> None:
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)


def blob_id_bytes(blob_id: str) -> bytes:
    return base64.urlsafe_b64decode(blob_id + "=")
