"""The data model's identity rules: digests and canonical JSON."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from okai.digest import (
    ZERO_DIGEST,
    CanonicalJsonError,
    Digest,
    DigestFormatError,
    canonical_json,
    canonical_json_text,
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


# Keys and strings near the edges of RFC 8785's ordering and escaping: controls, the top of
# the Basic Multilingual Plane (ordered after surrogate pairs in UTF-16) and beyond it.
edge_text = st.text(
    st.sampled_from(
        ["a", "b", "\x00", "\x1f", "\x7f", '"', "\\", "\u00e9", "\uffff", "\U0001f600"]
    ),
    max_size=6,
)
any_numbers = (
    st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: abs(x) < 2**53)
    | st.floats(min_value=-1e-3, max_value=1e-3)
)
any_values = st.recursive(
    st.none() | st.booleans() | any_numbers | edge_text,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(edge_text, children, max_size=5)
    ),
    max_leaves=30,
)


@given(any_values)
def test_canonical_json_is_rfc8785_for_every_json_value(value: Any) -> None:
    """The C encoder's quick path and the stand-in path both give rfc8785's bytes."""
    expected = rfc8785.dumps(value)
    assert canonical_json(value) == expected
    assert canonical_json_text(json.dumps(value)) == expected
    assert canonical_json_text(json.dumps(value, ensure_ascii=False, indent=1)) == expected


@pytest.mark.parametrize(
    ("number", "written"),
    [
        (1.0, "1"),
        (-0.0, "0"),
        (1e2, "100"),
        (0.5, "0.5"),
        (1e-4, "0.0001"),
        (1e-5, "0.00001"),
        (-1.5e-6, "-0.0000015"),
        (1e-7, "1e-7"),
        (1.25e-10, "1.25e-10"),
        (5e-324, "5e-324"),
        (123456789.125, "123456789.125"),
    ],
)
def test_numbers_are_written_as_ecmascript_writes_them(number: float, written: str) -> None:
    assert canonical_json([number]) == f"[{written}]".encode()
    assert canonical_json_text(f"[{number!r}]") == f"[{written}]".encode()


def test_a_string_holding_the_stand_in_digits_is_left_as_it_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Small numbers are written through stand-in integers: a string that holds the same
    digits (here forced: the random prefix is made known) sends the text round again with
    another prefix, and the string comes out unchanged."""
    prefixes = iter([0, 1])
    monkeypatch.setattr("okai.digest.secrets.randbelow", lambda _: next(prefixes))
    taken = str(10**19) + "0" * 12  # the first stand-in under the first prefix
    value = {"note": f"{taken}", "rate": 1e-5}
    assert canonical_json(value) == rfc8785.dumps(value)
    assert next(prefixes, None) is None  # both prefixes were used


@pytest.mark.parametrize(
    "value",
    [{1: "a", "1": "b"}, ["\ud800"], {"\udc00": 1}, [1e-5, "\ud800"]],
    ids=["a key twice once written", "lone surrogate", "lone surrogate key", "with a small number"],
)
def test_values_that_json_writes_but_rfc8785_refuses_are_refused(value: Any) -> None:
    with pytest.raises(CanonicalJsonError, match="cannot serialise canonically"):
        canonical_json(value)
