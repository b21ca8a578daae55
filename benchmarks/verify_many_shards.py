"""The check rules on a dataset manifest of many shards: okai verify's and the page's.

    python benchmarks/verify_many_shards.py [--shards 100000]

A recorded model whose dataset manifest lists `--shards` one-byte shards, all served: the
CPU time of every evaluation from the first to the verdict (every round of reads, as the
driver and the page loop; CPU, not wall, time: the benchmark machine is shared), for okai.verify.rules in this process and web/src/rules.js in node. Baseline,
same run: the same for a tenth of the shards (linear checks take about a tenth of the
time; quadratic ones a hundredth), and `json.loads` of the manifest (the least any
verifier must do).

Then the same manifest as an attacker may write it: every size as `1.0` (the same JSON
value, hence the same digest: still verified) and as `1e-07` (a fraction json.dumps does
not write as RFC 8785 does: refused), each against the honest run's time.
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from okai.verify.observations import Inputs  # noqa: E402
from okai.verify.rules import Evaluation, evaluate  # noqa: E402
from vector_runner import run_vector  # noqa: E402
from verdict_cases import many_shards_case  # noqa: E402

# Only the rules are timed (every round), not the test's serving of blobs (the reads).
NODE_TIMER = """
import { readFileSync } from 'node:fs';
import * as rules from './src/rules.js';
import { observe } from './test/observe.js';
let seconds = 0;
const timed = (inputs) => {
  const start = process.cpuUsage();
  const result = rules.evaluate(inputs);
  const used = process.cpuUsage(start);
  seconds += (used.user + used.system) / 1e6;
  return result;
};
const result = observe(JSON.parse(readFileSync(0, 'utf8')), timed);
console.log(JSON.stringify({ seconds, verdict: result.verdict }));
"""


def python_seconds(inputs: dict[str, Any]) -> tuple[float, str]:
    spent = 0.0

    def timed(observed: Inputs) -> Evaluation:
        nonlocal spent
        start = time.process_time()
        result = evaluate(observed)
        spent += time.process_time() - start
        return result

    result = run_vector(inputs, timed)
    return spent, result.verdict


def page_seconds(inputs: dict[str, Any]) -> tuple[float, str]:
    answer = subprocess.run(
        ["node", "--input-type=module", "-e", NODE_TIMER],
        cwd=REPO / "web",
        input=json.dumps(inputs),
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(answer.stdout)
    return result["seconds"], result["verdict"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shards", type=int, default=100_000)
    args = parser.parse_args()
    rows = []
    for count in (args.shards // 10, args.shards):
        inputs = many_shards_case(count)
        manifest = next(v for v in inputs["blobs"].values() if len(v["bytesBase64"]) > 1000)
        raw = base64.b64decode(manifest["bytesBase64"])
        start = time.process_time()
        json.loads(raw)
        floor = time.process_time() - start
        py, py_verdict = python_seconds(inputs)
        js, js_verdict = page_seconds(inputs)
        assert py_verdict == js_verdict == "verified", (py_verdict, js_verdict)
        rows.append((count, len(raw), floor, py, js))
    print(f"{'shards':>8} {'manifest':>10} {'json.loads':>11} {'okai verify':>12} {'page':>8}")
    for count, size, floor, py, js in rows:
        print(f"{count:>8} {size / 1e6:>8.1f}MB {floor:>10.3f}s {py:>11.3f}s {js:>7.3f}s")
    (small, _, _, py_small, js_small), (large, _, floor, py_large, js_large) = rows
    factor = large / small
    print(
        f"{factor:.0f}x the shards: okai verify {py_large / py_small:.1f}x the time, "
        f"the page {js_large / js_small:.1f}x (linear: {factor:.0f}x); "
        f"okai verify {py_large / floor:.1f}x json.loads of the manifest"
    )
    print(f"\n{'sizes written':>14} {'verdict':>13} {'okai verify':>12} {'page':>8}  (honest: 1)")
    for written, expected in (("1.0", "verified"), ("1e-07", "not verified")):
        inputs = with_sizes_written(many_shards_case(large), written)
        py, py_verdict = python_seconds(inputs)
        js, js_verdict = page_seconds(inputs)
        assert py_verdict == js_verdict == expected, (py_verdict, js_verdict)
        print(
            f"{written:>14} {expected:>13} {py:>11.3f}s {js:>7.3f}s"
            f"  ({py / py_large:.2f}x, {js / js_large:.2f}x the honest run)"
        )


def with_sizes_written(inputs: dict[str, Any], written: str) -> dict[str, Any]:
    """The case with its manifest's shard sizes (all 1) written as `written`."""
    for blob in inputs["blobs"].values():
        raw = base64.b64decode(blob["bytesBase64"])
        if b'"size": 1,' in raw:
            raw = raw.replace(b'"size": 1,', f'"size": {written},'.encode())
            blob["bytesBase64"] = base64.b64encode(raw).decode()
    return inputs


if __name__ == "__main__":
    main()
