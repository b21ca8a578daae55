"""The training function of a job: a built-in model's, or the user's entry point.

A user entry point is one Python file stored as a blob and pinned in the job
by its SHA-256. It is fetched through the job's source, and the bytes that are
compiled are the bytes that were hashed: nothing is imported from a path that
could change between the check and the use.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from okai.digest import Digest
from okai.errors import IntegrityError
from okai.manifest import BuiltinModel, EntrypointModel, JobSpec
from okai.provenance.receipt import ReceiptCode
from okai.train.builtins import BUILTINS
from okai.train.data import ShardSource
from okai.train.errors import EntrypointError
from okai.train.receipt import okai_source

if TYPE_CHECKING:
    from torch import nn

    from okai.train.context import Context

TrainFunction = Callable[["Context"], "nn.Module"]
ENTRYPOINT_MODULE = "okai_entrypoint"


def training_function(job: JobSpec, source: ShardSource) -> tuple[TrainFunction, ReceiptCode]:
    """The function that trains `job`, and the identity of the code it comes from."""
    model = job.model
    if isinstance(model, BuiltinModel):
        module = importlib.import_module(BUILTINS[model.builtin].module)
        return _function(module, "train", f"built-in model {model.builtin}"), okai_source()
    assert isinstance(model, EntrypointModel)
    path = source.blob(model.entrypoint_blob_id, Digest(model.sha256))
    code = path.read_bytes()
    actual = Digest.of_bytes(code)
    if actual != model.sha256:
        raise IntegrityError(f"entry point blob {model.entrypoint_blob_id}", model.sha256, actual)
    module = load_module(code, f"<entrypoint {model.entrypoint_blob_id}>")
    record = ReceiptCode(
        sha256=actual,
        description=f"entry point blob {model.entrypoint_blob_id}, function {model.function}",
    )
    return _function(module, model.function, "the entry point"), record


def load_module(code: bytes, filename: str) -> types.ModuleType:
    """Execute verified source bytes as the module `okai_entrypoint`."""
    module = types.ModuleType(ENTRYPOINT_MODULE)
    module.__file__ = filename
    # Registered before running, as an import would: dataclasses and pickling look it up.
    sys.modules[ENTRYPOINT_MODULE] = module
    try:
        exec(compile(code, filename, "exec"), module.__dict__)
    except Exception as exc:
        del sys.modules[ENTRYPOINT_MODULE]
        raise EntrypointError(
            f"the entry point failed to load: {type(exc).__name__}: {exc}"
        ) from exc
    return module


def _function(module: types.ModuleType, name: str, what: str) -> TrainFunction:
    function: Any = getattr(module, name, None)
    if not callable(function):
        raise EntrypointError(f"{what} defines no function {name}(ctx)")
    return function  # type: ignore[no-any-return]
