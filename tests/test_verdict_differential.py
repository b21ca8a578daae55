"""One verdict: `okai verify`'s rules and the page's give every check the same status and
reason code on every input.

Generated cases (tests/verdict_cases.py: honest and hostile records, attestations,
manifests and job documents) go through okai.verify.rules in this process and through
web/src/rules.js in one node process fed the whole batch. The seed is fixed; set
OKAI_VERDICT_SEED (a number, or "random") and OKAI_VERDICT_CASES to explore further. Every
disagreement found is kept as a fixed vector in tests/vectors/verify (generate.py).
"""

from __future__ import annotations

import base64
import json
import os
import random
from collections import Counter
from functools import partial
from typing import Any

import rfc8785

from okai.digest import CanonicalJsonError, canonical_json
from okai.strict_json import parse_json_document
from vector_runner import PageVerdicts, python_verdict
from verdict_cases import case_digest, cases

DEFAULT_SEED = 14
DEFAULT_CASES = 10_000


def _seed() -> int:
    given = os.environ.get("OKAI_VERDICT_SEED", "")
    if given == "random":
        return random.SystemRandom().randrange(2**32)
    return int(given) if given else DEFAULT_SEED


def compare(seed: int, count: int) -> tuple[list[str], Counter[str]]:
    """(disagreements, how often each check ended in each status and code)."""
    generated = list(cases(seed, count))
    page = PageVerdicts(inputs for _, inputs in generated)  # node judges meanwhile
    python = [python_verdict(inputs) for _, inputs in generated]
    problems: list[str] = []
    seen: Counter[str] = Counter()
    for (notes, inputs), ours, theirs in zip(generated, python, page.wait(), strict=True):
        for check_id, (status, code) in ours.get("checks", {}).items():
            seen[f"{check_id} {status} {code}"] += 1
        if ours != theirs:
            problems.append(
                f"case {case_digest(inputs)} ({notes}):\n  okai verify: {_differences(ours, theirs)}"
            )
    return problems, seen


def _differences(ours: dict[str, Any], theirs: dict[str, Any]) -> str:
    if "crash" in ours or "crash" in theirs:
        return f"{ours.get('crash', 'no crash')}\n  page: {theirs.get('crash', 'no crash')}"
    differ = {
        check_id: (status_code, theirs["checks"][check_id])
        for check_id, status_code in ours["checks"].items()
        if theirs["checks"][check_id] != status_code
    }
    return f"{json.dumps(differ)} (first: okai verify, second: the page)"


def test_the_cli_and_the_page_agree_on_every_generated_case() -> None:
    seed = _seed()
    count = int(os.environ.get("OKAI_VERDICT_CASES", DEFAULT_CASES))
    problems, seen = compare(seed, count)
    assert not problems, f"seed {seed}: {len(problems)} disagreements\n" + "\n".join(problems[:20])
    # The generator reaches past the first checks: every failure class shows up.
    for outcome in (
        "attestation.statement failed malformed",
        "attestation.statement failed duplicate-key",
        "attestation.statement failed not-utf8",
        "attestation.statement failed too-deep",
        "attestation.statement failed big-number",
        "attestation.statement failed not-json",
        "attestation.statement passed well-formed",
        "datasets.manifests failed malformed",
        "datasets.shards passed match",
        "image.bytes passed matches",
    ):
        assert seen[outcome] > 0, f"no generated case ended in {outcome}"


if __name__ == "__main__":  # explore: python tests/test_verdict_differential.py [seed] [count]
    import sys

    found, counts = compare(int(sys.argv[1]), int(sys.argv[2]))
    print("\n".join(found[:40]), f"\n{len(found)} disagreements")
    print("\n".join(f"{n:6} {k}" for k, n in sorted(counts.items())))


def test_canonical_json_is_rfc8785_on_every_generated_document() -> None:
    """okai.digest takes json.dumps for plain documents (as okai.strict_json tells, or as it
    finds by itself) and stand-ins for the rest: the bytes must be rfc8785's."""
    compared = 0
    for _, inputs in cases(DEFAULT_SEED + 1, 300):
        for blob in inputs["blobs"].values():
            parsed = parse_json_document(base64.b64decode(blob.get("bytesBase64", "")))
            if parsed.problem is not None:
                continue
            try:
                expected: bytes | None = rfc8785.dumps(parsed.value)
            except Exception:
                expected = None
            for write in (parsed.canonical, partial(canonical_json, parsed.value)):
                try:  # as the parser tells, and as the walk finds by itself
                    got: bytes | None = write()
                except CanonicalJsonError:
                    got = None
                assert got == expected
            compared += 1
    assert compared > 500
