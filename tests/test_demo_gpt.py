"""`okai demo --model gpt` as a whole, on the local stack: push the Python-source dataset to
the Walrus server, train byte-gpt on a 2-node local cluster, record on anvil, verify shallow
and deep. One epoch (`OKAI_DEMO_EPOCHS`) keeps it short; the default is the demo's three."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import call_okai, run_okai
from okai.train.demo import GPT_DEMO_HYPERPARAMETERS


def test_a_bad_epoch_count_is_refused_before_anything_starts(
    okai_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for bad in ("0", "two"):
        monkeypatch.setenv("OKAI_DEMO_EPOCHS", bad)
        result = call_okai("demo", "--model", "gpt")
        assert result.returncode == 2, result.stderr
        assert "OKAI_DEMO_EPOCHS" in result.stderr
    assert not (okai_home / ".okai" / "dev").exists()  # no stack was started


@pytest.mark.slow
def test_okai_demo_gpt_pushes_trains_records_and_verifies(
    okai_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OKAI_DEMO_EPOCHS", "1")
    try:
        result = run_okai("--json", "demo", "--model", "gpt", timeout=600)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        output = json.loads(result.stdout)
        steps = {step["name"]: step for step in output["steps"]}
        assert output["model"] == "gpt"
        assert steps["push dataset to Walrus"]["status"] == "done"
        assert steps["train on a 2-node local cluster"]["status"] == "done"
        assert steps["record provenance on chain"]["status"] == "done"
        assert steps["verify (shallow)"]["status"] == "done"
        deep = steps["verify (deep: every shard re-downloaded)"]
        assert deep["status"] == "done" and "unregistered host accepted" in deep["detail"]

        run_dir = Path(output["runDir"])
        job = json.loads((run_dir / "job.json").read_text())
        assert job["hyperparameters"] == {**GPT_DEMO_HYPERPARAMETERS, "epochs": 1}
        assert (job["nodes"], job["model"]["builtin"]) == (2, "byte-gpt")
        events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        evaluations = [event for event in events if event["event"] == "eval"]
        assert evaluations and all(0 < event["testBitsPerByte"] < 9 for event in evaluations)
        receipt = json.loads((run_dir / "receipt.json").read_text())
        assert 0 < float(receipt["metrics"]["testBitsPerByte"]) < 9
        sample = (run_dir / "sample.txt").read_text(encoding="utf-8")
        assert sample.startswith("def ") and len(sample) > len("def ")  # byte-gpt's own prompt
        assert output["modelDigest"] == receipt["modelSha256"]
    finally:
        run_okai("dev", "down", timeout=60)
