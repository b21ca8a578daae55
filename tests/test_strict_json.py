"""Strict JSON as okai.strict_json reads it: the nesting count the page shares, and the
`plain` flag that lets canonical JSON skip its walk."""

from __future__ import annotations

import random

import pytest
import rfc8785

from okai.strict_json import MAX_DEPTH, nesting_depth, parse_json_document
from vector_runner import page_map


def _texts(count: int) -> list[str]:
    """Short texts of quotes, backslashes and brackets (escapes in and out of strings),
    each followed by about as many brackets as the limit."""
    rng = random.Random(5)
    alphabets = ['"\\[]{}a\u00e9\U0001f600', '""[]{}a', '"\\[{]}', '"\\\\\\[[[["']
    texts = []
    for index in range(count):
        alphabet = alphabets[index % len(alphabets)]
        head = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 16)))
        texts.append(head + rng.choice(["[", "{", "[{"]) * (MAX_DEPTH + rng.randrange(-2, 3)))
    return texts


def test_nesting_depth_counts_as_the_page_does() -> None:
    texts = _texts(20_000)
    page = page_map("src/encoding.js", "nestingDepth", texts)  # the page's count
    # Within the limit, okai.strict_json may answer just "at most MAX_DEPTH".
    ours = [nesting_depth(text) for text in texts]
    differ = [
        (t, o, p)
        for t, o, p in zip(texts, ours, page, strict=True)
        if (o if o > MAX_DEPTH else None) != (p if p > MAX_DEPTH else None)
    ]
    assert not differ, differ[:5]
    assert sum(depth > MAX_DEPTH for depth in page) > 1000  # both sides of the limit


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ('{"b": [1, "x", true, null], "a": {"\u00e9": "\U0001f600"}}', False),  # beyond, in a value
        ('{"b": [1, "x", true, null], "a": {"\u00e9": "z"}}', True),
        ('{"a": 1.0}', True),  # the integer 1, as JavaScript reads it
        ('{"a": 1e2}', True),
        ('{"a": 0.5, "b": -1234.0625}', True),
        ('{"a": 1e-5}', False),  # json.dumps writes 1e-05
        ('{"\\ud83d\\ude00": 1, "\\uffff": 2}', False),  # a key beyond the plane, escaped
        ('{"\\u00e9": "\\\\ud83d"}', False),  # looks escaped: the walk decides
        ('{"a": "\\udc00"}', True),  # a lone surrogate: no canonical form at all
    ],
)
def test_plain_documents_are_written_canonically_by_the_quick_path(text: str, plain: bool) -> None:
    parsed = parse_json_document(text.encode())
    assert parsed.problem is None
    assert parsed.plain is plain
    try:
        expected: bytes | None = rfc8785.dumps(parsed.value)
    except Exception:
        expected = None
    try:
        got: bytes | None = parsed.canonical()
    except Exception:
        got = None
    assert got == expected
