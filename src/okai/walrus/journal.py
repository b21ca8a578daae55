"""The push journal: which shards of an interrupted push are already on Walrus.

One JSON line per stored shard, appended and flushed as soon as the
publisher confirmed it, so a push killed at any point can resume and store
only what is missing. Shards are keyed by SHA-256 (content, not position),
and one journal covers one dataset name on one publisher with one storage
setting, so a shard stored for 1 epoch is never reused for a 5-epoch push.
A torn last line (the process died mid-write) is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from pathlib import Path
from typing import IO

from okai.digest import Digest


def journal_path(
    journal_dir: Path, name: str, publisher: str, epochs: int, permanent: bool
) -> Path:
    """The journal file of one dataset push configuration."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:60] or "dataset"
    key = hashlib.sha256(f"{publisher}\n{epochs}\n{permanent}".encode()).hexdigest()[:16]
    return journal_dir / f"push-{safe}-{key}.jsonl"


class PushJournal:
    """Stored shards by SHA-256; `record` is thread-safe and durable once it returns."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stored: dict[Digest, str] = {}
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        self._load()

    def _load(self) -> None:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return
        for line in lines:
            try:
                entry = json.loads(line)
                self.stored[Digest.parse(entry["sha256"])] = str(entry["blobId"])
            except (ValueError, KeyError, TypeError):
                continue  # a torn or foreign line: that shard is simply stored again

    def record(self, sha256: Digest, blob_id: str, size: int) -> None:
        line = json.dumps({"sha256": str(sha256), "blobId": blob_id, "size": size})
        with self._lock:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
            self._file.write(line + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())
            self.stored[sha256] = blob_id

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def remove(self) -> None:
        """The push completed: its manifest is now the record."""
        self.close()
        self.path.unlink(missing_ok=True)
