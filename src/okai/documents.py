"""The one loader of JSON and TOML documents, and the one wording of what is wrong with them.

Every problem is a `DocumentError` that names the file (or blob) and, once a validation
found it, the field as a dotted path:

    job.toml: not valid TOML (line 3, column 7): Expected '=' after a key in a key/value pair
    okai.toml: field 'networks.coston2.chain_id': Input should be a valid integer

Missing, unreadable, not UTF-8, not parseable (with the position), not an object at the
top: the loader says which. Callers that check fields by hand raise `DocumentError(source,
field, problem)` themselves; callers that validate with pydantic turn its error into one
with `document_error`. A document's keys and a validator's words can be a stranger's
strings, so field paths and problems are shown inert (`okai.inert`).

Parsing is Python's own (`json`, `tomllib`), after `okai.strict_json`'s depth check: the
documents okai reads back from its own state and from users. What the verification page
must read identically goes through `okai.strict_json` whole instead.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from okai.errors import DocumentError
from okai.inert import inert
from okai.strict_json import MAX_DEPTH, JsonProblem, nesting_depth

Format = Literal["json", "toml"]
SUFFIXES: dict[str, Format] = {".json": "json", ".toml": "toml"}
# tomllib ends its messages with where: "(at line 3, column 7)" or "(at end of document)".
_TOML_WHERE = re.compile(
    r"^(?P<message>.*) \(at (?P<where>line \d+, column \d+|end of document)\)$"
)


def read_document(
    path: str | Path,
    format: Format | None = None,
    *,
    error: type[DocumentError] = DocumentError,
    hint: str | None = None,
) -> dict[str, Any]:
    """The object (JSON) or table (TOML) in `path`, in the format its suffix names unless
    `format` says; every problem is an `error` naming the file, with `hint` attached."""
    data = read_document_if_exists(path, format, error=error, hint=hint)
    if data is None:
        raise error(path, None, "does not exist", hint=hint)
    return data


def read_document_if_exists(
    path: str | Path,
    format: Format | None = None,
    *,
    error: type[DocumentError] = DocumentError,
    hint: str | None = None,
) -> dict[str, Any] | None:
    """`read_document`, or None where no file is: for state that is absent until written."""
    if format is None:
        format = SUFFIXES.get(Path(path).suffix)
        if format is None:
            raise error(path, None, "neither a .json nor a .toml file", hint=hint)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise error(path, None, f"cannot read: {exc.strerror or exc}", hint=hint) from exc
    return parse_document(raw, path, format, error=error, hint=hint)


def parse_document(
    raw: bytes | str,
    source: str | Path,
    format: Format,
    *,
    error: type[DocumentError] = DocumentError,
    hint: str | None = None,
) -> dict[str, Any]:
    """Parse a document's bytes (or text) that came from `source` (a file, a blob)."""
    # The parsers' exceptions hold the whole text (a keystore, say): never chained.
    try:
        # Decode explicitly: json.loads would guess UTF-16/32 from a byte-order mark.
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise error(source, None, f"not UTF-8 text (byte {exc.start})", hint=hint) from None
    if format == "json" and nesting_depth(text) > MAX_DEPTH:
        # Checked first: json's C parser recurses once per level, and past a raised
        # recursion limit (eth_account's py_ecc sets 100000) it overflows the stack.
        raise error(source, None, JsonProblem("too-deep").text, hint=hint)
    try:
        data = json.loads(text) if format == "json" else tomllib.loads(text)
    except json.JSONDecodeError as exc:
        problem = f"not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}"
        raise error(source, None, problem, hint=hint) from None
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_WHERE.match(str(exc))
        where = found["where"].replace("end of document", "at the end") if found else None
        problem = (
            f"not valid TOML ({where}): {found['message']}" if found else f"not valid TOML: {exc}"
        )
        raise error(source, None, problem, hint=hint) from None
    except RecursionError:  # a = [[[[...: tomllib recurses once per level
        raise error(source, None, "nested too deeply", hint=hint) from None
    return require_object(data, source, error=error, hint=hint)


def require_object(
    data: Any,
    source: str | Path,
    *,
    error: type[DocumentError] = DocumentError,
    hint: str | None = None,
) -> dict[str, Any]:
    """`data` if it is an object: every okai document is one at the top."""
    if not isinstance(data, dict):
        raise error(source, None, f"expected a JSON object, got {type(data).__name__}", hint=hint)
    return data


# ---------------------------------------------------------------- pydantic's errors


def validation_problem(exc: ValidationError) -> tuple[list[str], str]:
    """The problem a user should fix first: its field path (names and list indexes) and its
    words, inert. Union members, which pydantic names by class, are left out of the path."""
    chosen = _most_useful(exc.errors())
    path = [str(part) for part in chosen["loc"] if not _is_member(part)]
    problem = "unknown field" if chosen["type"] == "extra_forbidden" else chosen["msg"]
    return path, inert(problem)


def document_error(
    exc: ValidationError,
    source: str | Path,
    *,
    prefix: Sequence[str] = (),
    error: type[DocumentError] = DocumentError,
) -> DocumentError:
    """A pydantic error as an `error` naming `source` and the field; `prefix` is where in
    the document the validated part sits (`hyperparameters`, `networks.coston2`)."""
    path, problem = validation_problem(exc)
    return error(source, ".".join([*prefix, *path]) or None, problem)


def _most_useful(errors: list[ErrorDetails]) -> ErrorDetails:
    """Pick the error a user should fix first.

    A value that matches no member of a union (`model`, `datasets[]`) fails
    every member; the member with the fewest problems is the one the user
    meant. Within it, an unknown (misspelt) key explains a missing one.
    """
    branches = Counter(_branch(error) for error in errors)

    def meant(error: ErrorDetails) -> bool:
        branch = _branch(error)
        if branch is None:
            return True
        siblings = [n for b, n in branches.items() if b is not None and b[:-1] == branch[:-1]]
        return branches[branch] == min(siblings)

    candidates = [error for error in errors if meant(error)] or errors
    return next((e for e in candidates if e["type"] == "extra_forbidden"), candidates[0])


def _branch(error: ErrorDetails) -> tuple[str | int, ...] | None:
    """The location up to the union member an error belongs to, if any."""
    loc = error["loc"]
    for index, part in enumerate(loc):
        if _is_member(part):
            return tuple(loc[: index + 1])
    return None


def _is_member(part: str | int) -> bool:
    """Pydantic names union members by class name in error locations."""
    return isinstance(part, str) and part[:1].isupper()
