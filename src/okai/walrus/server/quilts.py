"""Quilts for the local server: the multipart upload, the stored container, patch IDs.

The upload is parsed as it streams in, each file going to its own temporary
file, so a quilt holding a multi-gigabyte image never sits in memory.

The real QuiltV1 layout interleaves files with the RS2 sliver columns; this
server stores its own simple container instead (a JSON index line, then the
files back to back) as an ordinary blob. Quilt IDs are therefore real blob
IDs of *that* container and will differ from the network's for the same
files; patch IDs keep the network's shape, base64url(quilt ID ‖ 0x01 ‖ start
u16 LE ‖ end u16 LE), with start/end numbering the files.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from okai.walrus.server.storage import blob_id_bytes

QUILT_VERSION_BYTE = 1
MAX_PATCHES = 666
MAGIC = b"okai-local-quilt/1\n"
_HEADERS_LIMIT = 64 * 1024
_METADATA_LIMIT = 1 << 20
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_NAME = re.compile(r'(?:^|;)\s*name="([^"]*)"', re.IGNORECASE)
CHUNK = 1 << 20


class QuiltFormError(ValueError):
    """The multipart form does not describe a valid quilt (400 MALFORMED_REQUEST)."""


@dataclass
class Patch:
    """One file of the upload, spooled to disk."""

    identifier: str
    path: Path
    size: int
    tags: dict[str, str] = field(default_factory=dict)


class _Reader:
    """A buffered view of the request body for the multipart parser."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self.buffer = b""

    def fill(self) -> bool:
        chunk = next(self._chunks, b"")
        self.buffer += chunk
        return bool(chunk)

    def take_until(self, marker: bytes, limit: int) -> bytes:
        """Everything up to `marker` (consumed, not returned), at most `limit` bytes."""
        while (at := self.buffer.find(marker)) < 0:
            if len(self.buffer) > limit or not self.fill():
                raise QuiltFormError("the multipart body is malformed or cut short")
        taken, self.buffer = self.buffer[:at], self.buffer[at + len(marker) :]
        return taken

    def copy_until(self, marker: bytes, out: IO[bytes]) -> int:
        """Stream everything up to `marker` into `out`; returns the byte count."""
        written = 0
        while (at := self.buffer.find(marker)) < 0:
            keep = len(marker) - 1  # the marker may straddle two chunks
            if len(self.buffer) > keep:
                out.write(self.buffer[:-keep] if keep else self.buffer)
                written += len(self.buffer) - keep
                self.buffer = self.buffer[-keep:] if keep else b""
            if not self.fill():
                raise QuiltFormError("the multipart body ends inside a part")
        out.write(self.buffer[:at])
        written += at
        self.buffer = self.buffer[at + len(marker) :]
        return written

    def need(self, count: int) -> bytes:
        while len(self.buffer) < count:
            if not self.fill():
                raise QuiltFormError("the multipart body is cut short")
        return self.buffer[:count]


def receive_form(content_type: str, body: Iterator[bytes], spool: Path) -> list[Patch]:
    """Parse a `multipart/form-data` quilt upload, spooling each file under `spool`."""
    match = _BOUNDARY.search(content_type)
    if not content_type.lower().startswith("multipart/form-data") or match is None:
        raise QuiltFormError("the request is not multipart/form-data with a boundary")
    delimiter = b"--" + match[1].encode("latin-1")
    reader = _Reader(body)
    reader.take_until(delimiter, _HEADERS_LIMIT)
    patches: list[Patch] = []
    metadata: Any = []
    while reader.need(2) != b"--":
        reader.take_until(b"\r\n", 2)
        headers = reader.take_until(b"\r\n\r\n", _HEADERS_LIMIT).decode("utf-8", "replace")
        name = _part_name(headers)
        path = spool / f"part-{len(patches)}-{secrets.token_hex(4)}"
        with open(path, "wb") as out:
            size = reader.copy_until(b"\r\n" + delimiter, out)
        if name == "_metadata":
            if size > _METADATA_LIMIT:
                raise QuiltFormError("_metadata is too large")
            try:
                metadata = json.loads(path.read_bytes())
            except ValueError as exc:
                raise QuiltFormError(f"_metadata is not JSON: {exc}") from exc
            path.unlink()
            continue
        check_identifier(name)
        if any(p.identifier == name for p in patches):
            raise QuiltFormError(f"identifier {name!r} appears twice")
        patches.append(Patch(name, path, size))
        if len(patches) > MAX_PATCHES:
            raise QuiltFormError(f"a quilt holds at most {MAX_PATCHES} files")
    if not patches:
        raise QuiltFormError("the quilt has no files")
    _apply_metadata(patches, metadata)
    return patches


def _part_name(headers: str) -> str:
    for line in headers.split("\r\n"):
        key, _, value = line.partition(":")
        if key.strip().lower() == "content-disposition":
            found = _NAME.search(value)
            if found:
                return found[1]
    raise QuiltFormError("a form part has no field name")


def _apply_metadata(patches: list[Patch], metadata: Any) -> None:
    if not isinstance(metadata, list):
        raise QuiltFormError("_metadata must be a JSON array")
    by_name = {p.identifier: p for p in patches}
    for entry in metadata:
        if not isinstance(entry, dict) or entry.get("identifier") not in by_name:
            raise QuiltFormError(f"_metadata entry names no file of the quilt: {str(entry)[:100]}")
        raw_tags = entry.get("tags") or {}
        if not isinstance(raw_tags, dict):
            raise QuiltFormError("tags must be a JSON object")
        by_name[entry["identifier"]].tags = {
            str(k): v if isinstance(v, str) else json.dumps(v) for k, v in raw_tags.items()
        }


def check_identifier(name: str) -> None:
    """The documented rules: starts alphanumeric, no control characters or trailing spaces."""
    if (
        not name
        or not name[0].isalnum()
        or name != name.rstrip()
        or any(ord(c) < 32 or ord(c) == 127 for c in name)
        or len(name.encode()) >= 64 * 1024
    ):
        raise QuiltFormError(f"invalid quilt identifier {name[:80]!r}")


def container(patches: list[Patch]) -> tuple[Iterator[bytes], list[dict[str, Any]]]:
    """The quilt's stored bytes (streamed) and its index: identifier, tags, offset, length."""
    header = [{"identifier": p.identifier, "tags": p.tags, "length": p.size} for p in patches]
    head = MAGIC + json.dumps(header, separators=(",", ":")).encode() + b"\n"
    index = []
    offset = len(head)
    for number, patch in enumerate(patches):
        index.append(
            {
                "identifier": patch.identifier,
                "tags": patch.tags,
                "offset": offset,
                "length": patch.size,
                "start": number + 1,
                "end": number + 2,
            }
        )
        offset += patch.size

    def chunks() -> Iterator[bytes]:
        yield head
        for patch in patches:
            with open(patch.path, "rb") as stream:
                while piece := stream.read(CHUNK):
                    yield piece

    return chunks(), index


def patch_id(quilt_id: str, start: int, end: int) -> str:
    raw = blob_id_bytes(quilt_id) + bytes([QUILT_VERSION_BYTE])
    raw += start.to_bytes(2, "little") + end.to_bytes(2, "little")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def split_patch_id(text: str) -> tuple[str, int] | None:
    """(quilt ID, start index) of a patch ID, or None when it is malformed."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return None
    if len(raw) != 37 or raw[32] != QUILT_VERSION_BYTE:
        return None
    quilt_id = base64.urlsafe_b64encode(raw[:32]).rstrip(b"=").decode("ascii")
    return quilt_id, int.from_bytes(raw[33:35], "little")
