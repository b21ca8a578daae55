"""Manifests: versioned schemas, field-level errors, canonical digests."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from okai.digest import Digest
from okai.errors import DocumentError, ExitCode
from okai.manifest import (
    DOCUMENT_TYPES,
    DatasetManifest,
    ImageManifest,
    JobSpec,
    blob_id_from_bytes32,
    blob_id_to_bytes32,
)
from okai.provenance.receipt import Receipt

BLOB = "M4hsZGQ1oCktdzegB6HnI6Mi28S2nqOPHxK-W7_4BUk"
SHA = "sha256:" + "ab" * 32
SCHEMA_DIR = Path(__file__).resolve().parent.parent / "docs" / "schemas"


def dataset_doc() -> dict[str, Any]:
    return {
        "schema": "okai.dataset/v1",
        "name": "digits",
        "files": [{"path": "train/0.npz", "size": 15, "sha256": SHA}],
        "shards": [
            {"path": "train/0.npz", "offset": 0, "size": 10, "sha256": SHA, "blobId": BLOB},
            {"path": "train/0.npz", "offset": 10, "size": 5, "sha256": SHA, "blobId": BLOB},
        ],
        "totals": {"files": 1, "shards": 2, "bytes": 15},
    }


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "manifest.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_dataset_round_trip_and_digest_is_key_order_free(tmp_path: Path) -> None:
    doc = dataset_doc()
    path = write(tmp_path, json.dumps(doc))
    manifest = DatasetManifest.load(path)
    assert manifest.to_json() == {
        **doc,
        "shards": [{**shard, "mediaType": "application/octet-stream"} for shard in doc["shards"]],
        "files": [{**doc["files"][0], "mediaType": "application/octet-stream"}],
    }
    reordered = dict(reversed(list(manifest.to_json().items())))
    again = DatasetManifest.from_json_bytes(json.dumps(reordered, indent=1).encode(), "x")
    assert again.digest() == manifest.digest()
    assert manifest.digest() == Digest.of_bytes(manifest.canonical_bytes())


@pytest.mark.parametrize(
    ("mutate", "field", "problem"),
    [
        (lambda d: d.pop("schema"), "schema", "missing"),
        (lambda d: d.update(schema="okai.image/v1"), "schema", "okai.image document"),
        (
            lambda d: d.update(schema="okai.dataset/v2"),
            "schema",
            "v2 of okai.dataset is not supported",
        ),
        (lambda d: d.update(schema="something"), "schema", "not an okai schema"),
        (lambda d: d["shards"][1].update(blobId="short"), "shards.1.blobId", "pattern"),
        (lambda d: d["files"][0].update(sha256="md5:00"), "files.0.sha256", "not a SHA-256"),
        (lambda d: d["files"][0].update(path="../../etc/passwd"), "files.0.path", "relative"),
        (lambda d: d["files"][0].update(path="/etc/passwd"), "files.0.path", "relative"),
        (lambda d: d.update(surprise=1), "surprise", "unknown field"),
        (lambda d: d["totals"].update(bytes=16), None, "totals do not match"),
        (lambda d: d["shards"][1].update(offset=11), None, "gap or overlap"),
        (lambda d: d.pop("name"), "name", "required"),
    ],
)
def test_bad_dataset_manifests_name_file_and_field(
    tmp_path: Path, mutate: Any, field: str | None, problem: str
) -> None:
    doc = dataset_doc()
    mutate(doc)
    path = write(tmp_path, json.dumps(doc))
    with pytest.raises(DocumentError) as caught:
        DatasetManifest.load(path)
    error = caught.value
    assert error.source == str(path)
    assert error.field == field
    assert problem in str(error)
    assert str(path) in str(error)
    assert error.exit_code == ExitCode.USAGE_ERROR


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b'{"schema": "okai.dataset/v1", "name": ', "not valid JSON (line 1"),
        (b"", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b"[1, 2]", "expected a JSON object"),
    ],
)
def test_malformed_and_truncated_files(tmp_path: Path, raw: bytes, problem: str) -> None:
    with pytest.raises(DocumentError, match=re.escape(problem)):
        DatasetManifest.load(write(tmp_path, raw))


def test_missing_file_is_a_document_error(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match=r"nope\.json: does not exist"):
        JobSpec.load(tmp_path / "nope.json")
    (tmp_path / "folder.json").mkdir()
    with pytest.raises(DocumentError, match=r"folder\.json: cannot read: Is a directory"):
        JobSpec.load(tmp_path / "folder.json")


def test_job_defaults_digest_and_union_errors() -> None:
    job = JobSpec.model_validate(
        {
            "name": "demo",
            "model": {"builtin": "digits-cnn"},
            "datasets": [{"manifestBlobId": BLOB, "sha256": SHA}],
            "nodes": 2,
            "procsPerNode": 2,
        }
    )
    assert job.schema_ == "okai.job/v1"
    assert job.world_size == 4
    assert job.digest() == Digest.of_json(job.to_json())
    with pytest.raises(DocumentError) as caught:
        JobSpec.from_data({**job.to_json(), "nodes": 0}, "job.toml")
    assert caught.value.field == "nodes"


def test_image_manifest_checks_nix_identity() -> None:
    doc = {
        "schema": "okai.image/v1",
        "fileName": "okai-node.qcow2",
        "format": "qcow2",
        "variant": "qemu",
        "size": 1,
        "sha256": SHA,
        "nixos": {
            "systemToplevel": "/nix/store/" + "a" * 32 + "-nixos-system-okai-node-25.11",
            "nixpkgsRevision": "0" * 40,
            "flakeRevision": "dirty",
        },
    }
    assert ImageManifest.from_data(doc, "image.json").nixos.flake_revision == "dirty"
    doc["nixos"]["systemToplevel"] = "/tmp/evil"  # type: ignore[index]
    with pytest.raises(DocumentError) as caught:
        ImageManifest.from_data(doc, "image.json")
    assert caught.value.field == "nixos.systemToplevel"


def test_blob_id_bytes32_round_trip() -> None:
    raw = blob_id_to_bytes32(BLOB)
    assert len(raw) == 32 and blob_id_from_bytes32(raw) == BLOB
    with pytest.raises(ValueError, match="not a Walrus blob ID"):
        blob_id_to_bytes32("x" * 42)


@pytest.mark.parametrize("document_type", [*DOCUMENT_TYPES, Receipt])
def test_published_json_schemas_match_the_code(document_type: type) -> None:
    kind = document_type.KIND  # type: ignore[attr-defined]
    published = json.loads((SCHEMA_DIR / f"okai.{kind}.v1.schema.json").read_text())
    assert published == document_type.model_json_schema(by_alias=True) | {  # type: ignore[attr-defined]
        "$id": f"https://okai.dev/schemas/okai.{kind}.v1.schema.json",
        "$schema": "https://json-schema.org/draft/2020-12/schema",
    }
