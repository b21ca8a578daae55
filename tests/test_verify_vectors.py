"""The Python check rules against the shared vectors (tests/vectors/verify/*.json).

The verification page runs the same files through web/src/rules.js; both must give
every check the status the vector expects. Blobs are served the way a reader would:
hashed, kept only when the rules ask to keep them, refused above their size cap.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from okai.verify.checks import CHECK_IDS
from vector_runner import run_vector

VECTORS = Path(__file__).parent / "vectors" / "verify"
FILES = sorted(VECTORS.glob("*.json"))


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
    for check_id, code in vector["expected"].get("codes", {}).items():
        assert result.checks[check_id].code == code, (check_id, reasons[check_id])
