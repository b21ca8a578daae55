"""Run receipts and the in-toto/SLSA attestation built from them: round trip and tampering."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from okai.digest import ZERO_DIGEST, Digest, canonical_json
from okai.errors import DocumentError, IntegrityError
from okai.manifest import JobSpec
from okai.provenance import (
    BUILD_TYPE,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    UNREGISTERED_HOST,
    Attestation,
    Receipt,
    build_attestation,
    parse_attestation,
    system_toplevel_digest,
)

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "docs" / "schemas"
TOPLEVEL = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-okai-24.11"


def _d(seed: str) -> str:
    return str(Digest.of_bytes(seed.encode()))


def _blob(letter: str) -> str:
    return letter * 43


def _job() -> dict[str, Any]:
    return JobSpec.model_validate(
        {
            "name": "digits",
            "model": {"builtin": "mlp"},
            "hyperparameters": {"epochs": 3, "lr": 0.01},
            "seed": 7,
            "datasets": [
                {"manifestBlobId": _blob("M"), "sha256": _d("manifest")},
                {"blobId": _blob("B")},
                {"quiltPatchId": "patch-1", "sha256": _d("patch")},
            ],
            "nodes": 2,
            "procsPerNode": 2,
        }
    ).to_json()


def _receipt(**changes: Any) -> dict[str, Any]:
    job = JobSpec.from_data(_job(), "job")
    receipt: dict[str, Any] = {
        "schema": "okai.receipt/v1",
        "runId": "digits-1",
        "provider": "local",
        "modelFile": "model.safetensors",
        "modelSha256": _d("model"),
        "job": job.to_json(),
        "jobSha256": str(job.digest()),
        "datasets": [
            {"ref": "manifest", "manifestBlobId": _blob("M"), "sha256": _d("manifest")},
            {"ref": "blob", "blobId": _blob("B"), "sha256": _d("raw bytes")},
            {"ref": "quiltPatch", "quiltPatchId": "patch-1", "sha256": _d("patch")},
        ],
        "code": {"sha256": _d("okai"), "description": "okai 0.1.0 builtin model 'mlp'"},
        "image": {
            "sha256": _d("image"),
            "manifestBlobId": _blob("I"),
            "systemToplevel": TOPLEVEL,
            "nixpkgsRevision": "a" * 40,
            "flakeRevision": "b" * 40,
        },
        "libraries": {"python": "3.11.7", "torch": "2.13.0", "okai": "0.1.0"},
        "worldSize": 4,
        "nodes": 2,
        "startedAt": "2026-01-01T12:00:00+01:00",
        "finishedAt": "2026-01-01T11:03:10Z",
        "metrics": {"loss": 0.125, "accuracy": 0.97, "steps": 300},
    }
    receipt.update(changes)
    return receipt


def _receipt_model(**changes: Any) -> Receipt:
    return Receipt.from_data(_receipt(**changes), "receipt.json")


def test_round_trip_keeps_every_fact() -> None:
    receipt = _receipt_model()
    attestation = build_attestation(receipt)
    raw = attestation.canonical_bytes()
    assert attestation.digest() == Digest.of_bytes(raw) == Digest.of_json(json.loads(raw))
    back = parse_attestation(raw, "blob", expected_digest=attestation.digest())
    assert back.model_file == "model.safetensors"
    assert back.model_digest == receipt.model_sha256
    assert back.job == receipt.job and back.job_digest == receipt.job_sha256
    assert back.dataset_digests == tuple(Digest(d.sha256) for d in receipt.datasets)
    assert back.image_digest == back.chain_image_digest == receipt.chain_image_digest()
    assert back.code_digest == receipt.code.sha256
    assert back.host_identity == TOPLEVEL
    assert back.system_toplevel_digest == system_toplevel_digest(TOPLEVEL)
    assert back.metrics == {"loss": 0.125, "accuracy": 0.97, "steps": 300}
    assert back.run_id == "digits-1"
    assert back.builder_id == "https://okai.dev/builders/local/v1"
    statement = back.to_json()
    assert statement["_type"] == STATEMENT_TYPE and statement["predicateType"] == PREDICATE_TYPE
    build = statement["predicate"]["buildDefinition"]
    assert build["buildType"] == BUILD_TYPE
    assert build["externalParameters"]["job"]["schema"] == "okai.job/v1"
    names = [d["name"] for d in build["resolvedDependencies"]]
    assert names == ["image", "dataset:0", "dataset:1", "dataset:2", "code"]
    uris = [d.get("uri") for d in build["resolvedDependencies"]]
    assert uris == [
        f"walrus://{_blob('I')}",
        f"walrus://{_blob('M')}",
        f"walrus://{_blob('B')}",
        "walrus-quilt-patch://patch-1",
        None,
    ]
    image = build["resolvedDependencies"][0]["annotations"]
    assert image["systemToplevel"] == TOPLEVEL and image["nixpkgsRevision"] == "a" * 40
    metadata = statement["predicate"]["runDetails"]["metadata"]
    assert metadata == {
        "invocationId": "digits-1",
        "startedOn": "2026-01-01T11:00:00Z",
        "finishedOn": "2026-01-01T11:03:10Z",
    }


def test_unregistered_host() -> None:
    receipt = _receipt_model(image=None, host=UNREGISTERED_HOST)
    attestation = build_attestation(receipt)
    assert attestation.image_digest is None and attestation.chain_image_digest == ZERO_DIGEST
    assert attestation.host_identity == UNREGISTERED_HOST
    assert attestation.system_toplevel_digest is None
    names = [
        d["name"]
        for d in attestation.to_json()["predicate"]["buildDefinition"]["resolvedDependencies"]
    ]
    assert names[0] == "dataset:0"


def test_image_without_a_known_file_digest_is_an_unregistered_image() -> None:
    receipt = _receipt_model(image={"systemToplevel": TOPLEVEL})
    attestation = build_attestation(receipt)
    assert receipt.chain_image_digest() == ZERO_DIGEST == attestation.chain_image_digest
    assert attestation.host_identity == TOPLEVEL


def test_any_changed_byte_fails_the_digest() -> None:
    attestation = build_attestation(_receipt_model())
    raw = attestation.canonical_bytes()
    tampered = raw.replace(b'"loss":0.125', b'"loss":0.025')
    assert tampered != raw
    with pytest.raises(IntegrityError) as caught:
        parse_attestation(tampered, "blob X", expected_digest=attestation.digest())
    assert caught.value.expected == attestation.digest()
    # A re-serialisation of the same statement is the same attestation.
    pretty = json.dumps(json.loads(raw), indent=2, sort_keys=False).encode()
    assert parse_attestation(pretty, "blob", expected_digest=attestation.digest()).digest() == (
        attestation.digest()
    )


def _mutated(change: Any) -> bytes:
    data = copy.deepcopy(build_attestation(_receipt_model()).to_json())
    change(data)
    return canonical_json(data)


def _deps(data: dict[str, Any]) -> list[dict[str, Any]]:
    deps: list[dict[str, Any]] = data["predicate"]["buildDefinition"]["resolvedDependencies"]
    return deps


def _byproduct(data: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [b for b in data["predicate"]["runDetails"]["byproducts"] if b["name"] == name]
    return found  # type: ignore[no-any-return]


TAMPERS = {
    "statement type": (lambda d: d.update({"_type": "https://in-toto.io/Statement/v0.1"}), "_type"),
    "predicate type": (lambda d: d.update({"predicateType": "x"}), "predicateType"),
    "two subjects": (lambda d: d["subject"].append(d["subject"][0]), "subject"),
    "subject digest": (lambda d: d["subject"][0]["digest"].update({"sha256": "zz"}), "subject"),
    "unknown field": (lambda d: d.update({"extra": 1}), "extra"),
    "dataset digest": (
        lambda d: _deps(d)[1]["digest"].update({"sha256": "0" * 64}),
        "resolvedDependencies",
    ),
    "dataset dropped": (lambda d: _deps(d).pop(2), "resolvedDependencies"),
    "dataset kind": (
        lambda d: _deps(d)[2]["annotations"].update({"ref": "quiltPatch"}),
        "dataset:1",
    ),
    "code dropped": (lambda d: _deps(d).pop(), "resolvedDependencies"),
    "toplevel": (
        lambda d: _deps(d)[0]["annotations"].update({"systemToplevel": TOPLEVEL + "x"}),
        "image",
    ),
    "world size": (
        lambda d: d["predicate"]["buildDefinition"]["internalParameters"].update({"worldSize": 3}),
        "internalParameters",
    ),
    "metrics": (lambda d: _byproduct(d, "metrics")["annotations"].update({"loss": 0}), "metrics"),
    "host": (
        lambda d: _byproduct(d, "host")["annotations"].update({"identity": TOPLEVEL + "y"}),
        "host",
    ),
    "job": (
        lambda d: d["predicate"]["buildDefinition"]["externalParameters"]["job"].update(
            {"nodes": 0}
        ),
        "nodes",
    ),
    "times": (
        lambda d: d["predicate"]["runDetails"]["metadata"].update(
            {"finishedOn": "2020-01-01T00:00:00Z"}
        ),
        "metadata",
    ),
    "builder": (
        lambda d: d["predicate"]["runDetails"]["builder"].update({"id": "https://evil/x"}),
        "builder",
    ),
}


@pytest.mark.parametrize("name", sorted(TAMPERS))
def test_structural_tampering_is_named(name: str) -> None:
    change, field = TAMPERS[name]
    with pytest.raises(DocumentError) as caught:
        parse_attestation(_mutated(change), "attestation.json")
    assert field in str(caught.value)


@pytest.mark.parametrize(
    "raw", [b"", b"[]", b"\xff\xfe", b'{"_type": 1}', b"NaN", b"{" * 10000], ids=str
)
def test_malformed_bytes_are_document_errors(raw: bytes) -> None:
    with pytest.raises(DocumentError):
        parse_attestation(raw, "attestation.json")


def test_oversized_blob_is_refused_before_parsing() -> None:
    with pytest.raises(DocumentError, match="too large"):
        parse_attestation(b" " * (4 * 1024 * 1024 + 1), "attestation.json")


RECEIPT_PROBLEMS = {
    "jobSha256": ({"jobSha256": _d("other job")}, "jobSha256"),
    "image and host": ({"host": UNREGISTERED_HOST}, "exactly one"),
    "neither image nor host": ({"image": None}, "exactly one"),
    "dataset count": ({"datasets": _receipt()["datasets"][:2]}, "2 datasets reported"),
    "dataset order": ({"datasets": _receipt()["datasets"][::-1]}, "dataset 0"),
    "manifest digest": (
        {
            "datasets": [
                {**_receipt()["datasets"][0], "sha256": _d("x")},
                *_receipt()["datasets"][1:],
            ]
        },
        "expects",
    ),
    "two locators": (
        {"datasets": [{**_receipt()["datasets"][0], "blobId": _blob("B")}]},
        "cannot also have",
    ),
    "world size": ({"worldSize": 2}, "worldSize"),
    "times": ({"finishedAt": "2025-01-01T00:00:00Z"}, "before"),
    "naive time": ({"startedAt": "2026-01-01T12:00:00"}, "startedAt"),
    "infinite metric": ({"metrics": {"loss": float("inf")}}, "infinity"),
    "huge integer metric": ({"metrics": {"n": 2**53}}, "no canonical JSON form"),
    "float printed as a huge integer": ({"metrics": {"x": 1e16}}, "no canonical JSON form"),
    "escaping model path": ({"modelFile": "../model.safetensors"}, "modelFile"),
    "toplevel": ({"image": {"systemToplevel": "/tmp/evil"}}, "systemToplevel"),
    "unknown field": ({"gpu": "yes"}, "gpu"),
    "provider": ({"provider": "Local Machine"}, "provider"),
}


@pytest.mark.parametrize("name", sorted(RECEIPT_PROBLEMS))
def test_receipt_problems_name_the_field(name: str) -> None:
    changes, expected = RECEIPT_PROBLEMS[name]
    with pytest.raises(DocumentError) as caught:
        _receipt_model(**changes)
    assert expected in str(caught.value)
    assert "receipt.json" in str(caught.value)


def test_entrypoint_code_must_be_the_jobs() -> None:
    job_doc = _job() | {"model": {"entrypointBlobId": _blob("E"), "sha256": _d("user code")}}
    job = JobSpec.from_data(job_doc, "job")
    base = {"job": job.to_json(), "jobSha256": str(job.digest())}
    with pytest.raises(DocumentError, match="entrypoint"):
        _receipt_model(**base)
    good = _receipt_model(**base, code={"sha256": _d("user code"), "description": "train.py"})
    attestation = build_attestation(good)
    code = _deps(attestation.to_json())[-1]
    assert code["uri"] == f"walrus://{_blob('E')}"


def test_receipt_file_round_trip(tmp_path: Path) -> None:
    receipt = _receipt_model()
    receipt.write(tmp_path / "receipt.json")
    assert Receipt.load(tmp_path / "receipt.json") == receipt
    assert json.loads((tmp_path / "receipt.json").read_text())["schema"] == "okai.receipt/v1"


metric_values = st.one_of(
    st.integers(-(2**53) + 1, 2**53 - 1),
    st.floats(min_value=-1e15, max_value=1e15, allow_nan=False),
    st.text(max_size=20),
    st.booleans(),
)


@settings(max_examples=40, deadline=None)
@given(
    metrics=st.dictionaries(st.text(min_size=1, max_size=12), metric_values, max_size=6),
    run_id=st.from_regex(r"[A-Za-z0-9._-]{1,40}", fullmatch=True),
    registered=st.booleans(),
)
def test_any_receipt_round_trips_through_its_attestation(
    metrics: dict[str, Any], run_id: str, registered: bool
) -> None:
    host = {} if registered else {"image": None, "host": UNREGISTERED_HOST}
    receipt = _receipt_model(metrics=metrics, runId=run_id, **host)
    attestation = build_attestation(receipt)
    back = parse_attestation(
        attestation.canonical_bytes(), "blob", expected_digest=attestation.digest()
    )
    assert back.metrics == metrics and back.run_id == run_id
    assert back.chain_image_digest == receipt.chain_image_digest()
    assert isinstance(back, Attestation)
    # Key order never changes the digest.
    shuffled = json.dumps(dict(reversed(list(attestation.to_json().items())))).encode()
    assert parse_attestation(shuffled, "blob").digest() == attestation.digest()
