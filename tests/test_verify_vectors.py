"""The Python check rules against the shared vectors (tests/vectors/verify/*.json).

The verification page runs the same files through web/src/rules.js; both must give
every check the status the vector expects. Blobs are served the way a reader would:
hashed, kept only when the rules ask to keep them, refused above their size cap.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from okai.chain.records import ImageRecord, ModelRecord
from okai.digest import ZERO_DIGEST, Digest
from okai.verify.checks import CHECK_IDS, Options
from okai.verify.observations import (
    BlobFailure,
    BlobObservation,
    BlobRead,
    ChainAnswer,
    ChainFailure,
    Inputs,
    ModelInput,
    NetworkId,
    Reproduction,
)
from okai.verify.rules import Evaluation, evaluate

VECTORS = Path(__file__).parent / "vectors" / "verify"
FILES = sorted(VECTORS.glob("*.json"))


def _chain(data: dict[str, Any], model_digest: Digest | None) -> ChainAnswer | ChainFailure:
    if "error" in data:
        return ChainFailure(data["error"])
    raw = data["record"]
    record = None
    image = None
    if raw is not None:
        record = ModelRecord(
            # The registry is only asked about a digest; with none, this record goes unread.
            model_digest=model_digest or ZERO_DIGEST,
            image_digest=Digest.parse(raw["imageDigest"]),
            dataset_digests=tuple(Digest.parse(d) for d in raw["datasetManifestDigests"]),
            job_digest=Digest.parse(raw["jobDigest"]),
            attestation_digest=Digest.parse(raw["attestationDigest"]),
            attestation_blob_id=raw["attestationBlobId"],
            submitter=raw["submitter"],
            recorded_at=raw["recordedAt"],
        )
        if data["image"] is not None:
            image = ImageRecord(
                image_digest=record.image_digest,
                system_toplevel=Digest.parse(data["image"]["systemToplevel"]),
                manifest_blob_id=data["image"]["manifestBlobId"],
                manifest_sha256=Digest.parse(data["image"]["manifestSha256"]),
                registrant=data["image"]["registrant"],
                registered_at=data["image"]["registeredAt"],
            )
    return ChainAnswer(data["chainId"], record, image, tuple(data["witnesses"]))


def run_vector(inputs: dict[str, Any]) -> Evaluation:
    """Evaluate, serve the blobs asked for, evaluate again, until nothing more is needed."""
    options = Options(**inputs["options"])
    model_data = inputs["model"]
    if "bytesBase64" in model_data:
        model = ModelInput(digest=Digest.of_bytes(base64.b64decode(model_data["bytesBase64"])))
    else:
        model = ModelInput(given=model_data["given"])
    first = evaluate(Inputs(options, NetworkId(**{"name": "dev", "chain_id": 31337}), model))
    chain = _chain(inputs["chain"], first.facts.model_digest)
    reproduction = (
        Reproduction(digest=Digest.parse(inputs["reproducedDigest"]))
        if "reproducedDigest" in inputs
        else None
    )
    blobs: dict[str, BlobObservation] = {}
    network = NetworkId(inputs["network"]["name"], inputs["network"]["chainId"])
    for _ in range(10):
        result = evaluate(Inputs(options, network, model, chain, blobs, reproduction))
        if not result.needs:
            return result
        for need in result.needs:
            given = inputs["blobs"].get(need.key)
            if given is None:
                blobs[need.key] = BlobFailure("HTTP 404 BLOB_NOT_FOUND")
            elif "error" in given:
                blobs[need.key] = BlobFailure(given["error"])
            else:
                data = base64.b64decode(given["bytesBase64"])
                if need.max_bytes is not None and len(data) > need.max_bytes:
                    blobs[need.key] = BlobFailure(f"more than {need.max_bytes} bytes")
                else:
                    blobs[need.key] = BlobRead(
                        Digest.of_bytes(data), len(data), data if need.keep else None
                    )
    raise AssertionError("the rules kept asking for blobs")


def test_there_are_vectors() -> None:
    assert len(FILES) >= 20


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_vector(path: Path) -> None:
    vector = json.loads(path.read_text(encoding="utf-8"))
    assert vector["schema"] == "okai.verify-vector/v1"
    result = run_vector(vector["inputs"])
    got = {check_id: result.checks[check_id].status for check_id in CHECK_IDS}
    reasons = {check_id: result.checks[check_id].reason for check_id in CHECK_IDS}
    assert got == vector["expected"]["checks"], reasons
    assert result.verdict == vector["expected"]["verdict"]
    assert result.facts.model_digest == vector["expected"]["modelDigest"]
    assert all(isinstance(reason, str) and reason for reason in reasons.values())
