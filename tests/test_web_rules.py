"""The page's check rules: the JS tests against the shared vectors, and those vectors'
agreement with the Python side (okai.provenance reads their attestations the same way)."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from okai.digest import Digest
from okai.errors import OkaiError
from okai.provenance import parse_attestation
from okai.verify.checks import CHECK_IDS
from okai.web.networks import render
from okai.web.server import PAGE_CSP

REPO = Path(__file__).resolve().parent.parent
VECTORS = REPO / "tests" / "vectors" / "verify"
sys.path.insert(0, str(VECTORS))
from generate import render_all  # noqa: E402


def load_vectors() -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(VECTORS.glob("*.json"))]


def test_the_js_rules_pass_every_shared_vector() -> None:
    result = subprocess.run(
        ["node", "--test", *sorted(str(p.name) for p in (REPO / "web" / "test").glob("*.test.js"))],
        cwd=REPO / "web" / "test",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    passed = int(re.search(r"^# pass (\d+)$", result.stdout, re.MULTILINE)[1])  # type: ignore[index]
    assert passed >= len(load_vectors()) and "# fail 0" in result.stdout


def test_the_vectors_are_what_the_generator_writes() -> None:
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in VECTORS.glob("*.json")}
    assert on_disk == render_all(), "run tests/vectors/verify/generate.py"


def test_the_vectors_cover_the_scenarios_and_every_check() -> None:
    vectors = {v["name"]: v for v in load_vectors()}
    for name in (
        "passing",
        "tampered-model",
        "tampered-attestation",
        "attestation-not-matching-record",
        "unregistered-host",
        "swapped-image",
        "tampered-shard",
        "hostile-strings",
    ):
        assert name in vectors
    for vector in vectors.values():
        assert tuple(vector["expected"]["checks"]) == CHECK_IDS
        assert set(vector["expected"]["checks"].values()) <= {"passed", "failed", "not checked"}
    for check in CHECK_IDS:
        if check != "witnesses":  # informational: never failed
            assert any(v["expected"]["checks"][check] == "failed" for v in vectors.values())


@pytest.mark.parametrize("vector", load_vectors(), ids=lambda v: v["name"])
def test_okai_provenance_reads_the_vector_attestations_as_the_page_does(
    vector: dict[str, Any],
) -> None:
    expected = vector["expected"]["checks"]
    if expected["attestation.digest"] != "passed":
        return  # the statement is never read
    record = vector["inputs"]["chain"]["record"]
    raw = base64.b64decode(vector["inputs"]["blobs"][record["attestationBlobId"]]["bytesBase64"])
    try:
        attestation = parse_attestation(
            raw, vector["name"], expected_digest=Digest(record["attestationDigest"])
        )
    except OkaiError:
        assert expected["attestation.statement"] == "failed"
        return
    about_this_model = attestation.model_digest == vector["expected"]["modelDigest"]
    assert about_this_model == (expected["attestation.statement"] == "passed")
    if expected["attestation.statement"] == "passed":
        matches = (
            attestation.job_digest == record["jobDigest"]
            and list(attestation.dataset_digests) == record["datasetManifestDigests"]
            and attestation.chain_image_digest == record["imageDigest"]
        )
        assert matches == (expected["attestation.matches-record"] == "passed")


def test_the_page_networks_are_the_cli_presets() -> None:
    committed = (REPO / "web" / "src" / "networks.json").read_text(encoding="utf-8")
    assert committed == render(), "run python -m okai.web.networks web/src/networks.json"


def test_the_page_and_the_server_carry_the_same_policy() -> None:
    html = (REPO / "web" / "index.html").read_text(encoding="utf-8")
    meta = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
    assert meta is not None and meta[1] == PAGE_CSP
    for directive in ("script-src 'self' 'wasm-unsafe-eval'", "require-trusted-types-for 'script'"):
        assert directive in PAGE_CSP
    assert "unsafe-inline" not in PAGE_CSP and "'unsafe-eval'" not in PAGE_CSP
