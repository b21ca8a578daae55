"""The built-in models a job can name (`[model] builtin = "..."`), and job checks.

Torch-free on purpose: `okai train` checks a job (model name, hyper-parameters,
dataset kinds) before it starts any process, so mistakes surface as field
errors in a second, not as a failed worker a minute later.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from okai.errors import DocumentError
from okai.manifest import BlobRef, BuiltinModel, EntrypointModel, JobSpec, QuiltPatchRef


class DigitsHyperparameters(BaseModel):
    """Hyper-parameters of `digits-cnn`; the defaults reach >= 95% held-out accuracy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(default=12, ge=1, le=10_000)
    batch_size: int = Field(default=32, ge=1, le=65_536)
    lr: float = Field(default=0.003, gt=0, le=10)


@dataclass(frozen=True)
class Builtin:
    """A model shipped with okai: the module holding its `train(ctx)` and its hyper-parameters."""

    name: str
    module: str
    description: str
    hyperparameters: type[BaseModel]


BUILTINS: dict[str, Builtin] = {
    builtin.name: builtin
    for builtin in (
        Builtin(
            name="digits-cnn",
            module="okai.train.models.digits_cnn",
            description="a small CNN on the 8x8 digits bundled with scikit-learn",
            hyperparameters=DigitsHyperparameters,
        ),
    )
}


def builtin_hyperparameters(job: JobSpec, source: str | Path) -> BaseModel:
    """The validated hyper-parameters of a job's built-in model."""
    assert isinstance(job.model, BuiltinModel)
    builtin = BUILTINS[job.model.builtin]
    try:
        return builtin.hyperparameters.model_validate(job.hyperparameters)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(["hyperparameters", *map(str, first["loc"])])
        problem = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
        raise DocumentError(source, field, problem) from exc


def check_job(job: JobSpec, source: str | Path) -> None:
    """Refuse, with a field error, a job this okai cannot train."""
    model = job.model
    if isinstance(model, BuiltinModel):
        if model.builtin not in BUILTINS:
            known = ", ".join(sorted(BUILTINS))
            raise DocumentError(
                source, "model.builtin", f"unknown built-in model {model.builtin!r}; known: {known}"
            )
        builtin_hyperparameters(job, source)
    elif isinstance(model, EntrypointModel) and model.kind != "file":
        raise DocumentError(
            source, "model.kind", "only single-file entry points ('file') can be trained so far"
        )
    for index, ref in enumerate(job.datasets):
        if isinstance(ref, QuiltPatchRef):
            raise DocumentError(
                source,
                f"datasets.{index}",
                "quilt patches cannot be trained on yet; push the data with okai data push",
            )
        if isinstance(ref, BlobRef) and ref.sha256 is None:
            raise DocumentError(
                source,
                f"datasets.{index}.sha256",
                "required for training: a raw blob is trusted only by its SHA-256",
            )
