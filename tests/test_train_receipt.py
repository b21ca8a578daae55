"""Receipts and the training code's identity: host identity, code digests, entry points."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from okai.digest import Digest
from okai.errors import DocumentError, IntegrityError, UsageError
from okai.manifest import BlobRef, EntrypointModel, JobSpec, ManifestRef
from okai.provenance import software
from okai.train import LocalShardSource, Receipt, digits_job
from okai.train.entrypoint import training_function
from okai.train.errors import EntrypointError
from okai.train.receipt import (
    IMAGE_DIGEST_ENV,
    IMAGE_FILE_ENV,
    IMAGE_FLAKE_REVISION_ENV,
    UNREGISTERED_HOST,
    dataset_records,
    host_identity,
    library_versions,
    okai_source,
    run_image,
)

REPO = Path(__file__).resolve().parent.parent
TOPLEVEL = "/nix/store/" + "a" * 32 + "-nixos-system-okai-worker-25.05"
REF = ManifestRef(manifest_blob_id="b" * 43, sha256="sha256:" + "c" * 64)


def test_off_an_okai_image_the_host_is_explicitly_unregistered(tmp_path: Path) -> None:
    assert host_identity(tmp_path / "absent.json", tmp_path / "absent") is None


def test_on_an_okai_image_the_running_toplevel_and_the_image_revisions_are_recorded(
    tmp_path: Path,
) -> None:
    current = tmp_path / "current-system"
    current.symlink_to(TOPLEVEL)  # as on NixOS; the store path need not exist here
    image_file = tmp_path / "image.json"
    image_file.write_text(
        json.dumps(
            {
                "schema": "okai.image-identity/v1",
                "systemToplevel": TOPLEVEL.replace("a" * 32, "b" * 32),
                "nixpkgsRevision": "f" * 40,
                "flakeRevision": "e" * 40,
            }
        )
    )
    image = host_identity(image_file, current)
    assert image is not None
    assert image.system_toplevel == TOPLEVEL  # measured from the link, not declared
    assert (image.nixpkgs_revision, image.flake_revision) == ("f" * 40, "e" * 40)


def test_the_image_digest_the_agent_passes_completes_the_identity(tmp_path: Path) -> None:
    image_file = tmp_path / "image.json"
    image_file.write_text(
        json.dumps({"schema": "okai.image-identity/v1", "systemToplevel": TOPLEVEL})
    )
    digest = "sha256:" + "d" * 64
    image = run_image({IMAGE_FILE_ENV: str(image_file), IMAGE_DIGEST_ENV: digest})
    assert image is not None and image.sha256 == digest
    assert run_image({IMAGE_FILE_ENV: str(image_file)}).sha256 is None  # type: ignore[union-attr]
    # No identity, no image: a digest alone makes no host a registered image.
    absent = {IMAGE_FILE_ENV: str(tmp_path / "absent.json"), IMAGE_DIGEST_ENV: digest}
    assert run_image(absent) is None
    with pytest.raises(UsageError):
        run_image({IMAGE_FILE_ENV: str(image_file), IMAGE_DIGEST_ENV: "sha256:nope"})


def test_the_flake_revision_comes_from_the_manifest_the_agent_matched(tmp_path: Path) -> None:
    """Images no longer carry it (a commit, not content): the agent passes the manifest's."""
    image_file = tmp_path / "image.json"
    image_file.write_text(
        json.dumps({"schema": "okai.image-identity/v1", "systemToplevel": TOPLEVEL})
    )
    given = {IMAGE_FILE_ENV: str(image_file), IMAGE_FLAKE_REVISION_ENV: "e" * 40}
    image = run_image(given)
    assert image is not None and image.flake_revision == "e" * 40 and image.sha256 is None
    assert run_image({IMAGE_FILE_ENV: str(image_file)}).flake_revision is None  # type: ignore[union-attr]
    with pytest.raises(UsageError, match="malformed"):
        run_image({**given, IMAGE_FLAKE_REVISION_ENV: "x" * 500})
    # An image that does state one keeps its own.
    image_file.write_text(json.dumps({"systemToplevel": TOPLEVEL, "flakeRevision": "f" * 40}))
    assert run_image(given).flake_revision == "f" * 40  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("content", "problem"),
    [("{not json", "not valid JSON"), ("[1]", "expected a JSON object"), ("{}", "missing")],
)
def test_a_malformed_image_identity_file_stops_the_run(
    tmp_path: Path, content: str, problem: str
) -> None:
    image_file = tmp_path / "image.json"
    image_file.write_text(content)
    with pytest.raises(DocumentError, match=problem):
        host_identity(image_file, tmp_path / "absent")


def test_the_okai_source_digest_covers_every_python_file() -> None:
    first, second = okai_source(), okai_source()
    assert first == second
    files = list((REPO / "src" / "okai").rglob("*.py"))
    assert f"({len(files)} Python files)" in first.description


def test_the_measured_parts_make_a_valid_receipt() -> None:
    job = digits_job((REF,))
    receipt = Receipt(
        run_id="r1",
        provider="local",
        model_file="model.safetensors",
        model_sha256="sha256:" + "1" * 64,
        job_sha256=job.digest(),
        job=job,
        datasets=dataset_records(job),
        code=okai_source(),
        host=UNREGISTERED_HOST,
        libraries=library_versions(),
        world_size=2,
        nodes=1,
        started_at="2025-01-01T00:00:00Z",
        finished_at="2025-01-01T00:01:00Z",
        metrics={"finalLoss": 0.1},
    )
    document = receipt.to_json()
    assert document["schema"] == "okai.receipt/v1"
    assert document["datasets"][0] == {
        "ref": "manifest", "manifestBlobId": REF.manifest_blob_id, "sha256": REF.sha256
    }  # fmt: skip
    # The software identity that decides the bytes (okai.provenance.software), and okai.
    assert set(document["libraries"]) == {*software.DECISIVE, "okai"}
    again = Receipt.from_json_bytes(json.dumps(document).encode(), "receipt.json")
    assert again == receipt
    with pytest.raises(DocumentError, match="startedAt"):
        Receipt.from_data({**document, "startedAt": "yesterday"}, "receipt.json")


def test_a_dataset_without_a_digest_cannot_be_receipted() -> None:
    job = digits_job((BlobRef(blob_id="d" * 43),))
    with pytest.raises(UsageError, match="no sha256"):
        dataset_records(job)


# ------------------------------------------------------------ entry points


def entrypoint_job(source: LocalShardSource, code: bytes, function: str = "train") -> JobSpec:
    blob_id = source.put(code)
    model = EntrypointModel(
        entrypoint_blob_id=blob_id, sha256=Digest.of_bytes(code), function=function
    )
    return digits_job((REF,)).model_copy(update={"model": model})


def test_an_entry_point_is_loaded_from_its_verified_blob(tmp_path: Path) -> None:
    source = LocalShardSource(tmp_path)
    code = (REPO / "examples" / "digits_mlp.py").read_bytes()
    function, record = training_function(entrypoint_job(source, code), source)
    assert callable(function) and function.__name__ == "train"
    assert record.sha256 == Digest.of_bytes(code)


def test_a_tampered_entry_point_is_never_run(tmp_path: Path) -> None:
    source = LocalShardSource(tmp_path)
    job = entrypoint_job(source, b"def train(ctx):\n    return None\n")
    assert isinstance(job.model, EntrypointModel)
    (tmp_path / "blobs" / job.model.entrypoint_blob_id).write_bytes(
        b"import os\nos.system('echo owned')\ndef train(ctx):\n    return None\n"
    )
    with pytest.raises(IntegrityError, match="blob"):
        training_function(job, source)


@pytest.mark.parametrize(
    ("code", "function", "problem"),
    [
        (b"def train(ctx) return 1\n", "train", "failed to load: SyntaxError"),
        (b"import no_such_module_anywhere\n", "train", "ModuleNotFoundError"),
        (b"def fit(ctx):\n    pass\n", "train", r"defines no function train\(ctx\)"),
        (b"train = 3\n", "train", r"defines no function train\(ctx\)"),
    ],
)
def test_a_broken_entry_point_is_a_usage_error(
    tmp_path: Path, code: bytes, function: str, problem: str
) -> None:
    source = LocalShardSource(tmp_path)
    with pytest.raises(EntrypointError, match=problem):
        training_function(entrypoint_job(source, code, function), source)
