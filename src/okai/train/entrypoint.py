"""The training function of a job: a built-in model's, or the user's entry point.

A user entry point is stored as a blob and pinned in the job by its SHA-256:

- `kind = "file"`: one Python file. The bytes that are compiled are the bytes
  that were hashed: nothing is imported from a path that could change between
  the check and the use.
- `kind = "package"`: a tar (plain or gzip) of a source tree, several modules
  and packages; `module` names the one that defines the function. The verified
  bytes are unpacked (regular files and folders only, paths inside the tree,
  bounded in size) into a fresh folder of this process, made read-only, and
  imported from there; a module that resolves anywhere else (an installed
  package of the same name) is refused.
"""

from __future__ import annotations

import atexit
import importlib
import io
import os
import shutil
import sys
import tarfile
import tempfile
import types
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from okai.digest import Digest
from okai.errors import IntegrityError
from okai.formats import tar_end_problem
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
MAX_PACKAGE_BYTES = 256 << 20
"""The most a package may unpack to: a tar bomb stops here, not when the disk is full."""
MAX_PACKAGE_MEMBERS = 20_000


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
    if model.kind == "package":
        assert model.module is not None
        module = load_package(code, model.module)
        what = f"entry point package blob {model.entrypoint_blob_id}, module {model.module}"
    else:
        module = load_module(code, f"<entrypoint {model.entrypoint_blob_id}>")
        what = f"entry point blob {model.entrypoint_blob_id}"
    record = ReceiptCode(sha256=actual, description=f"{what}, function {model.function}")
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


def load_package(archive: bytes, module_name: str) -> types.ModuleType:
    """Unpack verified tar bytes read-only into a folder of this process; import `module_name`."""
    root = Path(tempfile.mkdtemp(prefix="okai-code-"))
    atexit.register(_remove_read_only, root)
    _unpack(archive, root)
    for path in sorted(root.rglob("*"), reverse=True):
        path.chmod(0o555 if path.is_dir() else 0o444)
    root.chmod(0o555)
    top = module_name.split(".")[0]
    if top in sys.modules:
        raise EntrypointError(
            f"the package's module {top!r} is already imported from elsewhere; rename it"
        )
    sys.path.insert(0, str(root))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise EntrypointError(
            f"the entry point package failed to load {module_name}: {type(exc).__name__}: {exc}"
        ) from exc
    location = Path(module.__file__ or "/").resolve()
    if not location.is_relative_to(root.resolve()):
        raise EntrypointError(
            f"module {module_name} resolves to {location}, outside the package; rename it"
        )
    return module


def _unpack(archive: bytes, root: Path) -> None:
    """Write the tar's folders and regular files under `root`; refuse anything else."""
    total = 0
    stream = io.BytesIO(archive)
    try:
        with tarfile.open(fileobj=stream, mode="r:*") as tar:
            for count, member in enumerate(tar, start=1):
                path = PurePosixPath(member.name)
                if path.is_absolute() or ".." in path.parts or "\\" in member.name:
                    raise EntrypointError(f"package member {member.name!r} leaves the package")
                if count > MAX_PACKAGE_MEMBERS:
                    raise EntrypointError(f"the package has over {MAX_PACKAGE_MEMBERS} members")
                target = root.joinpath(*path.parts) if path.parts else root
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                if not member.isfile():
                    raise EntrypointError(
                        f"package member {member.name!r} is not a regular file or folder"
                    )
                total += member.size
                if total > MAX_PACKAGE_BYTES:
                    raise EntrypointError(f"the package unpacks to over {MAX_PACKAGE_BYTES} bytes")
                extracted = tar.extractfile(member)
                data = extracted.read() if extracted is not None else b""
                if len(data) != member.size:
                    raise EntrypointError(f"package member {member.name!r} is truncated")
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "xb") as out:  # a second member of the same name is refused
                    out.write(data)
            end = tar.offset
    except FileExistsError as exc:
        raise EntrypointError(f"the package holds {exc.filename} twice") from exc
    except (tarfile.TarError, EOFError) as exc:
        raise EntrypointError(f"the entry point package is not a readable tar: {exc}") from exc
    if archive[:2] != b"\x1f\x8b":  # a gzip stream checks its own length and CRC
        problem = tar_end_problem(stream, end)
        if problem:
            raise EntrypointError(f"the entry point package is {problem}")


def _remove_read_only(root: Path) -> None:
    for folder, _, _ in os.walk(root):
        os.chmod(folder, 0o755)
    shutil.rmtree(root, ignore_errors=True)


def _function(module: types.ModuleType, name: str, what: str) -> TrainFunction:
    function: Any = getattr(module, name, None)
    if not callable(function):
        raise EntrypointError(f"{what} defines no function {name}(ctx)")
    return function  # type: ignore[no-any-return]
