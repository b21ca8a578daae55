"""Job files: `okai.job/v1` written as TOML, validated into `okai.manifest.JobSpec`.

TOML keys are snake_case and map one to one onto the camelCase fields of the
JSON document (`procs_per_node` -> `procsPerNode`, `manifest_blob_id` ->
`manifestBlobId`); keys under `[hyperparameters]` are the user's and are kept
verbatim. `schema` may be omitted (it defaults to `okai.job/v1`). Every error
names the file and the field as written in the TOML file.

    name = "digits"
    seed = 0
    procs_per_node = 2

    [model]
    builtin = "digits-cnn"

    [hyperparameters]
    epochs = 12

    [[datasets]]
    manifest_blob_id = "..."
    sha256 = "sha256:..."
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from okai.documents import parse_document, read_document, validation_problem
from okai.errors import DocumentError
from okai.manifest import JobSpec, check_schema
from okai.train.builtins import check_job

FREE_FORM = frozenset({"hyperparameters"})
"""Tables whose keys belong to the user and are not renamed."""

_SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


def load_job(path: str | Path) -> JobSpec:
    """Read a job from a TOML file (or a `.json` job document) and validate it."""
    path = Path(path)
    if path.suffix == ".json":
        return JobSpec.load(path)
    return _job_from_table(read_document(path, "toml"), path)


def load_checked_job(path: str | Path) -> JobSpec:
    """A job file as `okai train` accepts it: read, validated, and trainable (`check_job`).

    The one check of a job before it runs; `okai cluster up` calls it too, before
    renting anything.
    """
    job = load_job(path)
    check_job(job, path)
    return job


def job_from_toml(text: str, source: str | Path) -> JobSpec:
    """Parse TOML text into a JobSpec; errors name `source` and the snake_case field."""
    return _job_from_table(parse_document(text, source, "toml"), source)


def _job_from_table(data: dict[str, Any], source: str | Path) -> JobSpec:
    camel = _to_camel_keys(data, source, prefix="")
    camel.setdefault("schema", JobSpec.schema_id())
    check_schema(camel, JobSpec.KIND, JobSpec.VERSION, source)
    try:
        return JobSpec.model_validate(camel)
    except ValidationError as exc:
        raise _document_error(exc, source) from exc


def job_to_toml(job: JobSpec) -> str:
    """The TOML form of a job (snake_case keys), the inverse of `job_from_toml`."""
    return tomli_w.dumps(_to_snake_keys(job.to_json()))


def _to_camel_keys(value: Any, source: str | Path, prefix: str) -> Any:
    if isinstance(value, list):
        return [
            _to_camel_keys(item, source, f"{prefix}{index}.") for index, item in enumerate(value)
        ]
    if not isinstance(value, dict):
        return value
    converted: dict[str, Any] = {}
    for key, item in value.items():
        field = f"{prefix}{key}"
        if not _SNAKE.match(key):
            raise DocumentError(
                source, field, "job files use snake_case keys (e.g. procs_per_node)"
            )
        if key in FREE_FORM and not prefix:
            converted[key] = item
        else:
            converted[to_camel(key)] = _to_camel_keys(item, source, f"{field}.")
    return converted


def _to_snake_keys(value: Any, top: bool = True) -> Any:
    if isinstance(value, list):
        return [_to_snake_keys(item, top=False) for item in value]
    if not isinstance(value, dict):
        return value
    return {
        _to_snake(key): item if top and key in FREE_FORM else _to_snake_keys(item, top=False)
        for key, item in value.items()
    }


def _to_snake(key: str) -> str:
    """`manifestBlobId` -> `manifest_blob_id`, `sha256` stays `sha256`."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()


def _document_error(exc: ValidationError, source: str | Path) -> DocumentError:
    """The most useful validation problem, with its field as written in TOML."""
    path, problem = validation_problem(exc)
    if path and path[0] in FREE_FORM:
        # Value unions (int | float | str | bool) add type names to the location.
        return DocumentError(
            source, ".".join(path[:2]), "a hyperparameter is a number, a string or a boolean"
        )
    return DocumentError(source, ".".join(map(_to_snake, path)) or None, problem)
