"""The one document loader: each way a JSON or TOML file can be wrong, named with its file,
its position or field, and strangers' strings shown inert; in a real `okai` process too."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from conftest import run_okai
from okai.documents import (
    document_error,
    parse_document,
    read_document,
    read_document_if_exists,
    validation_problem,
)
from okai.errors import ConfigError, ConfigFileError, DocumentError, ExitCode
from okai.train import load_job

BLOB = "A" * 43
SHA = "sha256:" + "0" * 64
JOB = {
    "schema": "okai.job/v1",
    "name": "digits",
    "model": {"builtin": "digits-cnn"},
    "datasets": [{"manifestBlobId": BLOB, "sha256": SHA}],
}
JOB_TOML = f"""name = "digits"

[model]
builtin = "digits-cnn"

[[datasets]]
manifest_blob_id = "{BLOB}"
sha256 = "{SHA}"
"""
UNSAFE = ("\x1b", "\x9b", "\u202e", "\u2066")
"""Characters that must never reach a terminal raw (see test_inert.py)."""


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def problem_of(path: Path, format: str | None = None) -> DocumentError:
    with pytest.raises(DocumentError) as caught:
        read_document(path, format)  # type: ignore[arg-type]
    return caught.value


# ---------------------------------------------------------------- reading


@pytest.mark.parametrize("name", ["doc.json", "doc.toml"])
def test_a_missing_file_is_named(tmp_path: Path, name: str) -> None:
    error = problem_of(tmp_path / name)
    assert str(error) == f"{tmp_path / name}: does not exist"
    assert (error.source, error.field, error.exit_code) == (
        str(tmp_path / name),
        None,
        ExitCode.USAGE_ERROR,
    )
    assert read_document_if_exists(tmp_path / name) is None


@pytest.mark.parametrize("name", ["doc.json", "doc.toml"])
def test_an_unreadable_file_is_named(tmp_path: Path, name: str) -> None:
    (tmp_path / name).mkdir()
    assert str(problem_of(tmp_path / name)) == f"{tmp_path / name}: cannot read: Is a directory"


@pytest.mark.parametrize(
    ("name", "content", "byte"),
    [
        ("doc.json", b'{"name": "caf\xe9"}', 13),  # Latin-1
        ("doc.toml", b'name = "caf\xe9"\n', 11),
        ("doc.json", '{"name": "x"}'.encode("utf-16"), 0),  # json.loads would guess UTF-16
    ],
)
def test_text_that_is_not_utf8_is_refused_with_its_byte(
    tmp_path: Path, name: str, content: bytes, byte: int
) -> None:
    error = problem_of(write(tmp_path, name, content))
    assert error.problem == f"not UTF-8 text (byte {byte})"


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        (
            "doc.json",
            '{\n  "name": "digits",\n  "seed": 7,\n}\n',
            "not valid JSON (line 4, column 1): Expecting property name enclosed in double quotes",
        ),
        ("doc.json", "", "not valid JSON (line 1, column 1): Expecting value"),
        ("doc.json", '{"a": NaN', "not valid JSON (line 1, column 10): Expecting ',' delimiter"),
        (
            "doc.toml",
            'name = "digits"\nseed = \n',
            "not valid TOML (line 2, column 8): Invalid value",
        ),
        (
            "doc.toml",
            "[model\nbuiltin = 1\n",
            "not valid TOML (line 1, column 7): Expected ']' at the end of a table declaration",
        ),
        (
            "doc.toml",
            "a = 1\na = 2\n",
            "not valid TOML (line 2, column 6): Cannot overwrite a value",
        ),
        ("doc.toml", "network = [\n", "not valid TOML (at the end): Invalid value"),
    ],
)
def test_syntax_errors_give_line_and_column(
    tmp_path: Path, name: str, content: str, problem: str
) -> None:
    error = problem_of(write(tmp_path, name, content))
    assert str(error) == f"{tmp_path / name}: {problem}"


def test_deep_nesting_is_refused_before_the_parser_recurses(tmp_path: Path) -> None:
    # py_ecc (imported with eth_account) raises the recursion limit to 100000, past which
    # json's C parser would overflow the stack rather than raise RecursionError.
    import py_ecc  # noqa: F401

    assert sys.getrecursionlimit() >= 100_000
    path = write(tmp_path, "deep.json", "[" * 200_000 + "]" * 200_000)
    assert problem_of(path).problem == "nested deeper than 64 levels"
    assert read_document(write(tmp_path, "ok.json", '{"a": ' + "[" * 63 + "]" * 63 + "}"))
    path = write(tmp_path, "deep.toml", "a = " + "[" * 200_000 + "]" * 200_000)
    assert problem_of(path).problem == "nested too deeply"


@pytest.mark.parametrize(
    ("content", "kind"), [("[1, 2]", "list"), ('"text"', "str"), ("3", "int"), ("null", "NoneType")]
)
def test_a_json_document_is_an_object(tmp_path: Path, content: str, kind: str) -> None:
    error = problem_of(write(tmp_path, "doc.json", content))
    assert error.problem == f"expected a JSON object, got {kind}"


def test_the_format_is_the_suffix_or_the_callers_choice(tmp_path: Path) -> None:
    assert read_document(write(tmp_path, "a.json", '{"x": 1}')) == {"x": 1}
    assert read_document(write(tmp_path, "a.toml", "x = 1\n")) == {"x": 1}
    assert read_document(write(tmp_path, "flake.lock", '{"x": 1}'), "json") == {"x": 1}
    assert read_document(write(tmp_path, "job", "x = 1\n"), "toml") == {"x": 1}
    # The same text in the other format is the other format's error.
    assert problem_of(tmp_path / "a.json", "toml").problem.startswith("not valid TOML (line 1")
    assert problem_of(write(tmp_path, "b.txt", "x = 1")).problem == (
        "neither a .json nor a .toml file"
    )


def test_bytes_from_elsewhere_are_named_by_their_source() -> None:
    with pytest.raises(DocumentError) as caught:
        parse_document(b"{", f"manifest blob {BLOB}", "json")
    assert str(caught.value).startswith(f"manifest blob {BLOB}: not valid JSON (line 1, column 2)")


def test_the_callers_error_class_and_hint_are_kept(tmp_path: Path) -> None:
    path = write(tmp_path, "okai.toml", "network = [\n")
    with pytest.raises(ConfigError) as caught:
        read_document(path, error=ConfigFileError, hint="see docs/configuration.md")
    error = caught.value
    assert isinstance(error, DocumentError) and error.exit_code == ExitCode.USAGE_ERROR
    assert str(error).endswith("\nhint: see docs/configuration.md")
    assert error.__cause__ is None and error.__suppress_context__  # the text is not carried


# ---------------------------------------------------------------- fields


class Network(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rpc_url: str

    @field_validator("rpc_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s) URL, not {value}")
        return value


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    networks: dict[str, Network]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("okai.json", json.dumps({"networks": {"coston2": {"rpc_url": "ftp://x"}}})),
        ("okai.toml", '[networks.coston2]\nrpc_url = "ftp://x"\n'),
    ],
)
def test_a_validation_error_names_the_file_and_the_field_path(
    tmp_path: Path, name: str, content: str
) -> None:
    path = write(tmp_path, name, content)
    with pytest.raises(ValidationError) as caught:
        Config.model_validate(read_document(path))
    error = document_error(caught.value, path)
    assert str(error) == (
        f"{path}: field 'networks.coston2.rpc_url': "
        "Value error, must be an http(s) URL, not ftp://x"
    )


@pytest.mark.parametrize(
    ("name", "content", "field", "problem"),
    [
        (
            "job.json",
            json.dumps({**JOB, "datasets": [{"manifestBlobId": BLOB, "sha256": "md5:1"}]}),
            "datasets.0.sha256",
            "not a SHA-256 digest",
        ),
        (
            "job.toml",
            JOB_TOML.replace(SHA, "md5:1"),
            "datasets.0.sha256",
            "not a SHA-256 digest",
        ),
        ("job.json", json.dumps({**JOB, "sead": 7}), "sead", "unknown field"),
        ("job.toml", JOB_TOML.replace("name =", "sead = 7\nname ="), "sead", "unknown field"),
    ],
)
def test_jobs_in_either_format_name_the_field(
    tmp_path: Path, name: str, content: str, field: str, problem: str
) -> None:
    with pytest.raises(DocumentError) as caught:
        load_job(write(tmp_path, name, content))
    assert (caught.value.source, caught.value.field) == (str(tmp_path / name), field)
    assert problem in caught.value.problem


HOSTILE_KEY = "\x1b[2J\x1b]8;;https://evil.example\x1b\\x\u202egnp"
HOSTILE_SHOWN = "\\u001b[2J\\u001b]8;;https://evil.example\\u001b\\x\\u202egnp"


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("okai.json", json.dumps({"networks": {HOSTILE_KEY: {"rpc_url": 1}}})),
        ("okai.toml", f"[networks.{json.dumps(HOSTILE_KEY)}]\nrpc_url = 1\n"),
    ],
)
def test_hostile_keys_and_values_are_shown_inert(tmp_path: Path, name: str, content: str) -> None:
    path = write(tmp_path, name, content)
    # A hostile key in the field path, a hostile value in the validator's words.
    with pytest.raises(ValidationError) as caught:
        Config.model_validate(read_document(path))
    error = document_error(caught.value, path)
    with pytest.raises(ValidationError) as quoted:
        Network.model_validate({"rpc_url": HOSTILE_KEY})
    fields, problem = validation_problem(quoted.value)
    assert fields == ["rpc_url"] and HOSTILE_SHOWN in problem
    assert error.field == f"networks.{HOSTILE_SHOWN}.rpc_url"
    for text in (str(error), problem):
        assert not any(character in text for character in UNSAFE), text


@pytest.mark.parametrize("suffix", ["json", "toml"])
def test_okai_prints_a_hostile_job_file_inert(okai_home: Path, suffix: str) -> None:
    if suffix == "json":
        content = json.dumps({**JOB, HOSTILE_KEY: 1})
        shown = f"field '{HOSTILE_SHOWN}': unknown field"
    else:
        content = f"{json.dumps(HOSTILE_KEY)} = 1\n" + JOB_TOML
        shown = f"field '{HOSTILE_SHOWN}': job files use snake_case keys"
    write(okai_home, f"job.{suffix}", content)
    result = run_okai("train", f"job.{suffix}", "--data", str(okai_home))
    assert result.returncode == ExitCode.USAGE_ERROR, result.stderr
    assert f"job.{suffix}: {shown}" in result.stderr
    assert not any(character in result.stderr for character in UNSAFE)
