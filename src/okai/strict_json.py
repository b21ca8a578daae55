"""Strict JSON for documents others wrote: one reading that the page (web/src/encoding.js,
`parseJsonText`) shares exactly, problem for problem.

Python's `json` and JavaScript's `JSON.parse` differ at the edges: duplicate keys (both keep
the last, other parsers the first), integers beyond 2**53 (exact here, rounded there), and
nesting (a RecursionError here). So a document is refused, with the first of these problems
in this order, before any field of it is trusted:

1. `not-utf8`: its bytes are not UTF-8;
2. `too-deep`: brackets outside strings nest deeper than `MAX_DEPTH`;
3. `not-json`: not RFC 8259 JSON (NaN and Infinity included);
4. `duplicate-key`: an object names a key twice (RFC 8259 leaves the meaning open);
5. `big-number`: a number of magnitude 2**53 or more: every such double is an integer
   JavaScript cannot tell from its neighbours, and RFC 8785 gives it no exact form.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from itertools import accumulate
from operator import sub
from typing import Any

from okai.digest import BEYOND_BMP, SMALL_NUMBER, canonical_json, canonical_json_text

MAX_DEPTH = 64
"""Deeper nesting is refused: okai documents nest about ten levels."""
MAX_SAFE_INTEGER = 2**53 - 1

# A string from its quote to the next unescaped one (or the end): brackets inside don't count.
_STRING = re.compile(rb'"[^"\\]*(?:\\[\s\S]?[^"\\]*)*"?')
# A backslash and what it escapes, when that is neither a quote, a bracket nor a backslash.
_ESCAPED_OTHER = re.compile(rb'\\[^"\\\[\]{}]')
_NOT_MARKS = bytes(set(range(256)) - set(b'"\\[]{}'))
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))
_STEPS = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")
_HIGH_SURROGATE = re.compile(r"\\u[dD][89abAB]")

PROBLEMS = {
    "not-utf8": "not UTF-8 text",
    "too-deep": f"nested deeper than {MAX_DEPTH} levels",
    "not-json": "not valid JSON",
    "duplicate-key": "JSON with a key named twice in one object",
    "big-number": "JSON with a number of magnitude 2**53 or more",
}


@dataclass(frozen=True)
class JsonProblem:
    """Why bytes are not a usable JSON document: a code of `PROBLEMS` and its words."""

    code: str

    @property
    def text(self) -> str:
        return PROBLEMS[self.code]


def nesting_depth(text: str) -> int:
    """How deep `[` and `{` outside strings nest (the page counts the same way), or, for
    a text with at most `MAX_DEPTH` of them, `MAX_DEPTH`."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return MAX_DEPTH  # an upper bound is enough: never deeper than allowed
    # Only quotes, backslashes and brackets matter: shrink the text to them (a tenth of a
    # manifest) before finding its strings. Each step keeps what lies outside strings:
    data = text.encode("utf-8", "surrogatepass")
    if b"\\" in data:
        # a pair of backslashes escapes itself in a string and is skipped outside; a
        # backslash and a character of no other meaning are skipped in and out of strings.
        data = _ESCAPED_OTHER.sub(b"", data.replace(b"\\\\", b""))
    marks = data.translate(None, _NOT_MARKS)
    if b"\\" in marks:  # an escaped quote or bracket: tell strings apart the slow way
        outside = _STRING.sub(b"", marks)
    else:
        # Two quotes side by side close nothing outside (an empty string, or two strings
        # with nothing between them); then quotes alternate, opening and closing.
        outside = b"".join(marks.replace(b'""', b"").split(b'"')[::2])
    # Openings as 2, closings as 0, all else dropped: depth after k brackets is (sum) - k.
    steps = outside.translate(_STEPS, _NOT_BRACKETS)
    return max(map(sub, accumulate(steps), range(1, len(steps) + 1)), default=0)


@dataclass(frozen=True)
class ParsedJson:
    """A document read: its value, or the first problem (the value is then None)."""

    value: Any
    problem: JsonProblem | None
    plain: bool = False
    """Whether the value is free of numbers below 10**-4 and of characters beyond the Basic
    Multilingual Plane: then json.dumps writes it canonically (okai.digest)."""
    text: str = ""

    def canonical(self) -> bytes:
        """The value's RFC 8785 form (okai.digest), the quick way when it is plain."""
        return (
            canonical_json(self.value, plain=True) if self.plain else canonical_json_text(self.text)
        )


class _Flags:
    """What the parser hooks saw: a duplicate key, a number out of range, a number below
    10**-4 (which json.dumps does not write as RFC 8785 does)."""

    def __init__(self) -> None:
        self.duplicate = False
        self.big = False
        self.small = False

    def pairs(self, items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(items)
        if len(obj) != len(items):  # a key came twice; dict() kept the last
            self.duplicate = True
        return obj

    def integer(self, text: str) -> int:
        if len(text) < 16:  # at most 15 digits: below 2**53
            return int(text)
        # Compare lengths before int(): thousands of digits would raise, not refuse.
        if len(text.lstrip("-")) > 16 or abs(int(text)) > MAX_SAFE_INTEGER:
            self.big = True
            return 0
        return int(text)

    def number(self, text: str) -> int | float:
        value = float(text)
        if not abs(value) < 2**53:  # also inf, from 1e400
            self.big = True
            return 0
        if value.is_integer():  # 1.0 and 1e2 are the integers JavaScript reads
            return int(value)
        if abs(value) < SMALL_NUMBER:
            self.small = True
        return value


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json_text(data: bytes) -> tuple[Any, JsonProblem | None]:
    """(value, None), or (None, the first problem in the order of the module docstring)."""
    parsed = parse_json_document(data)
    return parsed.value, parsed.problem


def parse_json_document(data: bytes) -> ParsedJson:
    """`parse_json_text`, saying also whether the value is plain (see `ParsedJson`)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return ParsedJson(None, JsonProblem("not-utf8"))
    if nesting_depth(text) > MAX_DEPTH:
        return ParsedJson(None, JsonProblem("too-deep"))
    flags = _Flags()
    try:
        value = json.loads(
            text,
            object_pairs_hook=flags.pairs,
            parse_int=flags.integer,
            parse_float=flags.number,
            parse_constant=_constant,
        )
    except ValueError:
        return ParsedJson(None, JsonProblem("not-json"))
    if flags.duplicate:
        return ParsedJson(None, JsonProblem("duplicate-key"))
    if flags.big:
        return ParsedJson(None, JsonProblem("big-number"))
    # Beyond the plane: written as such, or as an escaped surrogate pair (\ud800-\udbff).
    beyond = not text.isascii() and BEYOND_BMP.search(text) is not None
    plain = not (flags.small or beyond or ("\\u" in text and _HIGH_SURROGATE.search(text)))
    return ParsedJson(value, None, plain, text)
