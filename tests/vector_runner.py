"""Serving a vector's inputs to okai.verify.rules, as a reader would, and to the page's rules.

`run_vector` evaluates, serves the blobs asked for (hashed, kept only when the rules ask
to keep them, refused above their size cap) and evaluates again until nothing more is
needed; web/test/observe.js serves the page's rules the same way. `PageRules` is one
long-lived node process answering a batch of cases (web/test/verdicts.js); `page_map`
applies one function of the page's modules to each of a list of values.
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

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

WEB = Path(__file__).resolve().parent.parent / "web"


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


def run_vector(
    inputs: dict[str, Any], judge: Callable[[Inputs], Evaluation] = evaluate
) -> Evaluation:
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
        result = judge(Inputs(options, network, model, chain, blobs, reproduction))
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


def python_verdict(inputs: dict[str, Any]) -> dict[str, Any]:
    """What okai.verify.rules says about a case, in the form web/test/verdicts.js answers."""
    try:
        result = run_vector(inputs)
    except Exception as exc:  # a crash is a disagreement to report, not to hide
        return {"crash": f"{type(exc).__name__}: {exc}"[:2000]}
    return {
        "checks": {i: [result.checks[i].status, result.checks[i].code] for i in CHECK_IDS},
        "verdict": result.verdict,
    }


class PageVerdicts:
    """What the page's rules say about each case: one node process for the whole batch,
    fed and read by two threads, so this process can judge the same cases meanwhile."""

    def __init__(self, cases: Iterable[dict[str, Any]]) -> None:
        self.answers: list[dict[str, Any]] = []
        self._process = subprocess.Popen(
            ["node", str(WEB / "test" / "verdicts.js")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self._threads = [
            threading.Thread(target=self._feed, args=(cases,), daemon=True),
            threading.Thread(target=self._read, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _feed(self, cases: Iterable[dict[str, Any]]) -> None:
        assert self._process.stdin is not None
        with self._process.stdin as stdin:
            for case in cases:
                stdin.write(json.dumps(case, ensure_ascii=True) + "\n")

    def _read(self) -> None:
        assert self._process.stdout is not None
        self.answers.extend(json.loads(line) for line in self._process.stdout)

    def wait(self) -> list[dict[str, Any]]:
        for thread in self._threads:
            thread.join()
        if self._process.wait(timeout=60) != 0:
            raise RuntimeError(f"web/test/verdicts.js exited with {self._process.returncode}")
        return self.answers


def page_map(module: str, function: str, values: list[Any]) -> list[Any]:
    """`values.map(function)` in node, `function` imported from web/`module`."""
    script = (
        "import { readFileSync } from 'node:fs';\n"
        f"import {{ {function} }} from './{module}';\n"
        "const values = JSON.parse(readFileSync(0, 'utf8'));\n"
        f"console.log(JSON.stringify(values.map((value) => {function}(value))));\n"
    )
    answer = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        cwd=WEB,
        input=json.dumps(values),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert answer.returncode == 0, answer.stderr
    return list(json.loads(answer.stdout))
