"""The data model's identity rules: digests and canonical JSON."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from okai.digest import (
    ZERO_DIGEST,
    CanonicalJsonError,
    Digest,
    DigestFormatError,
    canonical_json,
)

json_scalars = (
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


def _reorder(value: Any) -> Any:
    """The same JSON value with every object's keys in reverse order."""
    if isinstance(value, dict):
        return {key: _reorder(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [_reorder(item) for item in value]
    return value


@given(json_values)
def test_canonical_json_ignores_key_order_and_whitespace(value: Any) -> None:
    reordered = _reorder(value)
    assert canonical_json(value) == canonical_json(reordered)
    reparsed = json.loads(json.dumps(value, indent=3))
    assert Digest.of_json(value) == Digest.of_json(reparsed)


@given(st.binary(min_size=32, max_size=32))
def test_bytes32_round_trip(raw: bytes) -> None:
    digest = Digest.from_bytes32(raw)
    assert digest.to_bytes32() == raw
    assert Digest.parse(digest) == digest
    assert Digest.parse(digest.upper().replace("SHA256:", "sha256:")) == digest


@given(st.binary(max_size=5000), st.integers(min_value=1, max_value=700))
def test_streaming_hash_equals_one_shot(data: bytes, chunk_size: int) -> None:
    expected = "sha256:" + hashlib.sha256(data).hexdigest()
    assert Digest.of_bytes(data) == expected
    assert Digest.of_stream(io.BytesIO(data), chunk_size) == expected


def test_file_hash_is_streamed(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    data = bytes(range(256)) * 5000
    path.write_bytes(data)
    assert Digest.of_file(path, chunk_size=4096) == Digest.of_bytes(data)


def test_known_vector() -> None:
    assert Digest.of_bytes(b"") == (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert canonical_json({"b": 1, "a": [True, None, 1.5]}) == b'{"a":[true,null,1.5],"b":1}'


@pytest.mark.parametrize(
    "text",
    ["", "sha256:", "sha256:xyz", "md5:" + "0" * 64, "sha256:" + "0" * 63, "0" * 65, "<script>"],
)
def test_malformed_digests_are_refused(text: str) -> None:
    with pytest.raises(DigestFormatError, match="not a SHA-256 digest"):
        Digest.parse(text)


def test_bare_hex_is_accepted_and_zero_digest_is_explicit() -> None:
    assert Digest.parse("0" * 64) == ZERO_DIGEST
    with pytest.raises(DigestFormatError, match="32 bytes"):
        Digest.from_bytes32(b"\x00" * 31)


@pytest.mark.parametrize("value", [2**53, float("nan"), float("inf"), {"k": object()}])
def test_values_without_a_canonical_form_are_refused(value: Any) -> None:
    with pytest.raises(CanonicalJsonError, match="cannot serialise canonically"):
        canonical_json(value)
