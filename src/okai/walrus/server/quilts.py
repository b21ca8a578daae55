"""Quilts for the local server: the multipart upload, the stored container, patch IDs.

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
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from okai.walrus.server.storage import blob_id_bytes

QUILT_VERSION_BYTE = 1
MAX_PATCHES = 666
MAGIC = b"okai-local-quilt/1\n"


class QuiltFormError(ValueError):
    """The multipart form does not describe a valid quilt (400 MALFORMED_REQUEST)."""


@dataclass(frozen=True)
class Patch:
    identifier: str
    data: bytes
    tags: dict[str, str]


def parse_form(content_type: str, body: bytes) -> list[Patch]:
    """The files of a `multipart/form-data` quilt upload, with their `_metadata` tags."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise QuiltFormError("the request is not multipart/form-data")
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise QuiltFormError("the multipart body could not be parsed")
    files: dict[str, bytes] = {}
    metadata: list[Any] = []
    for part in message.iter_parts():
        assert isinstance(part, Message)
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            raise QuiltFormError("a form part has no field name")
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        if name == "_metadata":
            try:
                metadata = json.loads(data)
            except ValueError as exc:
                raise QuiltFormError(f"_metadata is not JSON: {exc}") from exc
            continue
        check_identifier(name)
        if name in files:
            raise QuiltFormError(f"identifier {name!r} appears twice")
        files[name] = data
    if not files:
        raise QuiltFormError("the quilt has no files")
    if len(files) > MAX_PATCHES:
        raise QuiltFormError(f"a quilt holds at most {MAX_PATCHES} files")
    tags: dict[str, dict[str, str]] = {}
    if not isinstance(metadata, list):
        raise QuiltFormError("_metadata must be a JSON array")
    for entry in metadata:
        if not isinstance(entry, dict) or entry.get("identifier") not in files:
            raise QuiltFormError(f"_metadata entry names no file of the quilt: {str(entry)[:100]}")
        raw_tags = entry.get("tags") or {}
        if not isinstance(raw_tags, dict):
            raise QuiltFormError("tags must be a JSON object")
        tags[entry["identifier"]] = {
            str(k): v if isinstance(v, str) else json.dumps(v) for k, v in raw_tags.items()
        }
    return [Patch(name, data, tags.get(name, {})) for name, data in files.items()]


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


def build_container(patches: list[Patch]) -> tuple[bytes, list[dict[str, Any]]]:
    """The quilt's stored bytes and its index (identifier, tags, offset, length, start, end)."""
    header = [{"identifier": p.identifier, "tags": p.tags, "length": len(p.data)} for p in patches]
    head = MAGIC + json.dumps(header, separators=(",", ":")).encode() + b"\n"
    index = []
    offset = len(head)
    for number, patch in enumerate(patches):
        index.append(
            {
                "identifier": patch.identifier,
                "tags": patch.tags,
                "offset": offset,
                "length": len(patch.data),
                "start": number + 1,
                "end": number + 2,
            }
        )
        offset += len(patch.data)
    return head + b"".join(p.data for p in patches), index


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
