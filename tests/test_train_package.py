"""Entry points as source trees: a tar of a package, pinned by digest, imported read-only.

The hostile cases run in-process (the loader is plain Python); the training runs use
torchrun with 2 gloo processes, like every other entry point.
"""

from __future__ import annotations

import io
import stat
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from okai.digest import Digest
from okai.errors import IntegrityError
from okai.manifest import EntrypointModel, JobSpec, ManifestRef
from okai.train import LaunchOptions, LocalShardSource, RunResult, SourceSpec, digits_files, launch
from okai.train.entrypoint import load_package, training_function
from okai.train.errors import EntrypointError
from train_helpers import kill_after_first_checkpoint

MODEL = b"""
from torch import nn


def build(hidden: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))
"""
TRAIN = b"""
import torch

from .model import build
from .settings import HIDDEN


def train(ctx):
    model = build(HIDDEN)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return ctx.fit(model, optimizer, epochs=3, batch_size=32)
"""


def tar_of(members: dict[str, bytes | None], *, links: dict[str, str] | None = None) -> bytes:
    """A tar of files (None: a folder), and symbolic links; fixed times, so fixed bytes."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for name, data in members.items():
            member = tarfile.TarInfo(name)
            member.mtime = 0
            if data is None:
                member.type = tarfile.DIRTYPE
                archive.addfile(member)
            else:
                member.size = len(data)
                archive.addfile(member, io.BytesIO(data))
        for name, target in (links or {}).items():
            link = tarfile.TarInfo(name)
            link.type, link.linkname = tarfile.SYMTYPE, target
            archive.addfile(link)
    return out.getvalue()


def package(name: str = "digitspkg", hidden: int = 64) -> bytes:
    return tar_of(
        {
            f"{name}/": None,
            f"{name}/__init__.py": b"",
            f"{name}/model.py": MODEL,
            f"{name}/settings.py": f"HIDDEN = {hidden}\n".encode(),
            f"{name}/train.py": TRAIN,
        }
    )


@pytest.fixture
def clean_imports() -> Iterator[None]:
    path, modules = list(sys.path), set(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        del sys.modules[name]


@pytest.mark.usefixtures("clean_imports")
def test_a_package_is_imported_from_a_read_only_copy() -> None:
    module = load_package(package("readonlypkg"), "readonlypkg.train")
    folder = Path(module.__file__ or "").parent
    assert (folder / "settings.py").read_text() == "HIDDEN = 64\n"
    # Modes, not a write attempt: these tests may run as root, whom modes do not stop.
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in folder.parent.rglob("*")}
    assert modes["readonlypkg"] == 0o555
    assert {modes[name] for name in ("settings.py", "train.py", "model.py")} == {0o444}
    assert stat.S_IMODE(folder.parent.stat().st_mode) == 0o555
    assert callable(module.train)


@pytest.mark.usefixtures("clean_imports")
@pytest.mark.parametrize(
    ("archive", "module", "problem"),
    [
        (tar_of({"p/__init__.py": b"", "p/x.py": b""}, links={"p/y.py": "/etc/passwd"}), "p.x",
         "is not a regular file or folder"),
        (tar_of({"../escape.py": b"x = 1\n"}), "escape", "leaves the package"),
        (tar_of({"/abs.py": b"x = 1\n"}), "abs", "leaves the package"),
        (tar_of({"json/__init__.py": b"x = 1\n"}), "json", "already imported from elsewhere"),
        (tar_of({"okpkg/__init__.py": b"raise RuntimeError('boom')\n"}), "okpkg", "RuntimeError: boom"),
        (package()[:700], "digitspkg.train", "not a complete tar file: it is cut short"),
        (tar_of({"dup/a.py": b"1", "dup/./a.py": b"2"}), "dup.a", "twice"),
    ],
)  # fmt: skip
def test_hostile_or_broken_packages_are_refused(archive: bytes, module: str, problem: str) -> None:
    with pytest.raises(EntrypointError, match=problem):
        load_package(archive, module)


def test_package_bytes_are_checked_against_the_job_before_unpacking(tmp_path: Path) -> None:
    source = LocalShardSource(tmp_path)
    blob_id = source.put(package())
    job = JobSpec(
        name="p",
        model=EntrypointModel(
            entrypoint_blob_id=blob_id,
            sha256=Digest.of_bytes(package(hidden=65)),
            kind="package",
            module="digitspkg.train",
        ),
        datasets=(ManifestRef(manifest_blob_id=blob_id, sha256=Digest.of_bytes(b"")),),
    )
    with pytest.raises(IntegrityError):
        training_function(job, source)
    with pytest.raises(ValueError, match="names its module"):
        EntrypointModel(entrypoint_blob_id=blob_id, sha256=Digest.of_bytes(b""), kind="package")


@pytest.fixture(scope="module")
def package_job(tmp_path_factory: pytest.TempPathFactory) -> tuple[SourceSpec, JobSpec]:
    root = tmp_path_factory.mktemp("store")
    source = LocalShardSource(root)
    ref, _ = source.put_dataset("digits", digits_files())
    code = package()
    job = JobSpec(
        name="digits-package",
        model=EntrypointModel(
            entrypoint_blob_id=source.put(code),
            sha256=Digest.of_bytes(code),
            kind="package",
            module="digitspkg.train",
        ),
        datasets=(ref,),
        procs_per_node=2,
        checkpoint_every=30,
    )
    return SourceSpec.local(root), job


@pytest.fixture(scope="module")
def reference(
    package_job: tuple[SourceSpec, JobSpec], tmp_path_factory: pytest.TempPathFactory
) -> RunResult:
    source, job = package_job
    return launch(job, LaunchOptions(source=source, run_dir=tmp_path_factory.mktemp("r") / "run"))


@pytest.mark.slow
def test_a_package_trains_and_the_receipt_names_its_digest(
    reference: RunResult, package_job: tuple[SourceSpec, JobSpec]
) -> None:
    receipt = reference.receipt
    assert receipt is not None and float(receipt.metrics["testAccuracy"]) >= 0.9
    assert receipt.code.sha256 == Digest.of_bytes(package())
    assert "package" in receipt.code.description and "digitspkg.train" in receipt.code.description


@pytest.mark.slow
def test_a_killed_worker_resumes_the_package_run_to_the_same_model(
    reference: RunResult, package_job: tuple[SourceSpec, JobSpec], tmp_path: Path
) -> None:
    source, job = package_job
    run_dir = tmp_path / "killed"
    killer, killed = kill_after_first_checkpoint(run_dir)
    result = launch(job, LaunchOptions(source=source, run_dir=run_dir))
    killer.join(timeout=5)
    assert killed
    assert result.receipt is not None and reference.receipt is not None
    assert result.receipt.model_sha256 == reference.receipt.model_sha256
