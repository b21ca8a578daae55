"""The built-in models a job can name (`[model] builtin = "..."`), and job checks.

Torch-free on purpose: `okai train` checks a job (model name, hyper-parameters,
dataset kinds) before it starts any process, so mistakes surface as field
errors in a second, not as a failed worker a minute later.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from okai.documents import document_error
from okai.errors import DocumentError
from okai.manifest import BlobRef, BuiltinModel, JobSpec, QuiltPatchRef


class DigitsHyperparameters(BaseModel):
    """Hyper-parameters of `digits-cnn`; the defaults reach >= 95% held-out accuracy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(default=12, ge=1, le=10_000)
    batch_size: int = Field(default=32, ge=1, le=65_536)
    lr: float = Field(default=0.003, gt=0, le=10)


class GPTHyperparameters(BaseModel):
    """Hyper-parameters of `byte-gpt`; the defaults make a 3.2M-parameter model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(default=1, ge=1, le=10_000)
    batch_size: int = Field(default=16, ge=1, le=65_536)
    lr: float = Field(default=0.002, gt=0, le=10)
    width: int = Field(default=256, ge=8, le=4096, description="embedding width")
    depth: int = Field(default=4, ge=1, le=64, description="transformer blocks")
    heads: int = Field(default=4, ge=1, le=64, description="attention heads; divide width")
    context: int = Field(default=128, ge=4, le=8192, description="bytes the model sees")
    dropout: float = Field(default=0.0, ge=0, lt=1)
    evaluate_every: int = Field(default=50, ge=0, description="steps between held-out losses")
    sample_bytes: int = Field(default=400, ge=0, le=65_536, description="bytes of sample.txt")
    prompt: str = Field(default="def ", max_length=1024)
    temperature: float = Field(default=0.8, gt=0, le=10)

    @model_validator(mode="after")
    def _heads_divide_width(self) -> Self:
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not a multiple of heads {self.heads}")
        return self


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
        Builtin(
            name="byte-gpt",
            module="okai.train.models.byte_gpt",
            description="a byte-level GPT (decoder-only transformer) on text or JSONL samples",
            hyperparameters=GPTHyperparameters,
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
        raise document_error(exc, source, prefix=["hyperparameters"]) from exc


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
