"""Content identity: SHA-256 digests written `sha256:<64 hex>`, and canonical JSON.

A digest is the identity of every artifact. On chain it is a `bytes32`; in
JSON it is the prefixed hex string. Documents are hashed in their RFC 8785
canonical form so that key order and whitespace never change a digest.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from okai.errors import UsageError

PREFIX = "sha256:"
_HEX64 = re.compile(r"[0-9a-f]{64}")
CHUNK_SIZE = 1 << 20


class DigestFormatError(UsageError):
    """A string or byte value is not a well-formed SHA-256 digest."""


class Digest(str):
    """A SHA-256 digest in its canonical text form `sha256:<64 lowercase hex>`.

    It is a `str`, so it serialises as itself in JSON and compares with plain
    strings; construct it with `Digest.parse` or the `of_*` helpers.
    """

    __slots__ = ()

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Accept `sha256:<hex>` (any case) or bare 64-hex, with ASCII white space around
        (what a paste brings; the page trims the same); reject anything else."""
        value = text.strip(" \t\n\r\f\v").lower()
        hex_part = value.removeprefix(PREFIX)
        if not _HEX64.fullmatch(hex_part):
            raise DigestFormatError(f"not a SHA-256 digest: {text[:80]!r} (want sha256:<64 hex>)")
        return cls(PREFIX + hex_part)

    @classmethod
    def from_bytes32(cls, raw: bytes) -> Digest:
        if len(raw) != 32:
            raise DigestFormatError(f"a bytes32 digest has 32 bytes, got {len(raw)}")
        return cls(PREFIX + raw.hex())

    @classmethod
    def of_bytes(cls, data: bytes) -> Digest:
        return cls(PREFIX + hashlib.sha256(data).hexdigest())

    @classmethod
    def of_chunks(cls, chunks: Iterable[bytes]) -> Digest:
        hasher = hashlib.sha256()
        for chunk in chunks:
            hasher.update(chunk)
        return cls(PREFIX + hasher.hexdigest())

    @classmethod
    def of_stream(cls, stream: IO[bytes], chunk_size: int = CHUNK_SIZE) -> Digest:
        return cls.of_chunks(read_chunks(stream, chunk_size))

    @classmethod
    def of_file(cls, path: str | Path, chunk_size: int = CHUNK_SIZE) -> Digest:
        """Hash a file in fixed-size chunks, so memory stays flat for any size."""
        with open(path, "rb") as stream:
            return cls.of_stream(stream, chunk_size)

    @classmethod
    def of_json(cls, document: Any) -> Digest:
        """The digest of a JSON value in its canonical (RFC 8785) form."""
        return cls.of_bytes(canonical_json(document))

    @property
    def hex(self) -> str:
        return self[len(PREFIX) :]

    def to_bytes32(self) -> bytes:
        return bytes.fromhex(self.hex)

    def short(self) -> str:
        return f"{PREFIX}{self.hex[:12]}…"


ZERO_DIGEST = Digest(PREFIX + "0" * 64)
"""The explicit zero digest: on chain it stands for "no registered image"."""


def read_chunks(stream: IO[bytes], chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    while chunk := stream.read(chunk_size):
        yield chunk


class CanonicalJsonError(UsageError):
    """A value has no RFC 8785 form (say, an integer beyond 2**53 or a NaN)."""


_SAFE_INTEGER = 2**53 - 1
SMALL_NUMBER = 1e-4
"""Below it Python writes a number with an exponent (1e-05) where RFC 8785, as ECMAScript,
writes 0.00001 (and 1e-7 from 1e-7 down). From it up to 2**53, a number with a fraction is
written alike by both: the shortest digits that read back as the same double."""


def _plain(value: Any) -> bool:
    """Whether `json.dumps` with sorted keys writes `value` exactly as RFC 8785 does: no
    integer beyond 2**53-1 (refused), no float that is whole (1.0 is written 1) or below
    `SMALL_NUMBER`, keys in the Basic Multilingual Plane (sorted by code point, which is then
    UTF-16 order)."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return bool(-_SAFE_INTEGER <= value <= _SAFE_INTEGER)
    if kind is float:
        return SMALL_NUMBER <= abs(value) < 2**53 and not value.is_integer()
    if kind is list:
        return all(map(_plain, value))
    if kind is dict:
        if not all(type(key) is str for key in value):
            return False
        keys = "".join(value)
        return (not keys or max(keys) < "\U00010000") and all(map(_plain, value.values()))
    return False


def canonical_json(document: Any, *, plain: bool = False) -> bytes:
    """Serialise a JSON value canonically (RFC 8785, JCS).

    Documents of strings, integers and the like (a manifest of 100,000 shards) take the
    C encoder as they are; others go through `canonical_json_text`. The bytes are RFC
    8785's (a test compares with the rfc8785 package on generated documents).
    `plain=True` says the document is known to be such, as okai.strict_json tells of what
    it parsed (`ParsedJson.plain`): it is then not walked to find out again.
    """
    if plain or _plain(document):
        return _utf8(
            json.dumps(document, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        )
    try:
        text = json.dumps(document, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CanonicalJsonError(f"cannot serialise canonically: {exc}") from exc
    return canonical_json_text(text)


def canonical_json_text(text: str) -> bytes:
    """The RFC 8785 form of a JSON text, at the C encoder's speed whatever it holds.

    Read again with hooks, whole floats become integers and keys beyond the Basic
    Multilingual Plane are put in UTF-16 order; each number below `SMALL_NUMBER` becomes a
    stand-in integer, written in place by the encoder and then replaced by the number's
    ECMAScript form. A stand-in begins with 20 random digits; should a string hold them
    too (the count of matches tells), the text is written again with others.
    """
    # Escaped keys may hide a pair of surrogates: take the UTF-16 order for them too.
    beyond = "\\u" in text or (not text.isascii() and BEYOND_BMP.search(text) is not None)
    while True:
        numbers = _Numbers()
        value = json.loads(
            text,
            object_pairs_hook=_utf16_ordered if beyond else _unique_keys,
            parse_int=_safe_integer,
            parse_float=numbers.read,
            parse_constant=_no_constant,
        )
        written = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=not beyond)
        if not numbers.forms:
            return _utf8(written)
        parts = numbers.stand_in.split(written)
        if len(parts) == 2 * len(numbers.forms) + 1:
            parts[1::2] = [numbers.forms[int(index)] for index in parts[1::2]]
            return _utf8("".join(parts))


BEYOND_BMP = re.compile("[\U00010000-\U0010ffff]")
"""A character beyond the Basic Multilingual Plane (two UTF-16 code units)."""


class _Numbers:
    """The `parse_float` hook of `canonical_json_text`, and the numbers it stood in for."""

    def __init__(self) -> None:
        prefix = str(10**19 + secrets.randbelow(9 * 10**19))
        self.base = int(prefix) * 10**12
        self.stand_in = re.compile(prefix + r"(\d{12})")
        self.forms: list[str] = []

    def read(self, token: str) -> int | float:
        value = float(token)
        if not abs(value) < 2**53:  # also inf, from 1e400
            raise CanonicalJsonError(f"cannot serialise canonically: {token[:40]} is out of range")
        if value.is_integer():
            return int(value)
        if abs(value) >= SMALL_NUMBER:
            return value
        self.forms.append(_small_number(value))
        return self.base + len(self.forms) - 1


def _small_number(value: float) -> str:
    """ECMAScript's Number::toString of a number below `SMALL_NUMBER` (0.00001, 1.5e-7)."""
    mantissa, exponent = repr(abs(value)).split("e")
    power = int(exponent)
    sign = "-" if value < 0 else ""
    if power >= -6:
        return f"{sign}0.{'0' * (-power - 1)}{mantissa.replace('.', '')}"
    return f"{sign}{mantissa}e{power}"


def _safe_integer(token: str) -> int:
    value = int(token)
    if not -_SAFE_INTEGER <= value <= _SAFE_INTEGER:
        raise CanonicalJsonError(f"cannot serialise canonically: {token[:40]} is beyond 2**53")
    return value


def _no_constant(name: str) -> Any:
    raise CanonicalJsonError(f"cannot serialise canonically: {name} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):  # from json.dumps, which writes 1 and "1" both as "1"
        raise CanonicalJsonError("cannot serialise canonically: a key comes twice in an object")
    return obj


def _utf16_ordered(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """RFC 8785 orders keys by their UTF-16 code units: beyond the plane, not by code point."""
    return _unique_keys(sorted(pairs, key=_utf16_key))


def _utf16_key(pair: tuple[str, Any]) -> bytes:
    return pair[0].encode("utf-16-be", "surrogatepass")


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate
        raise CanonicalJsonError(
            "cannot serialise canonically: a string is not Unicode text"
        ) from exc
