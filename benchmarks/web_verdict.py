"""Time from drop to verdict on the local stack: a demo-sized model (64 KiB) recorded on
anvil and the local Walrus server, handed to the page in Debian's headless Chromium.

    python benchmarks/web_verdict.py [--runs 5]

Baseline, same run: the same reads done directly from Python (SHA-256 of the file, one
getProvenance view call with web3, the attestation fetched with httpx and hashed), i.e.
the least work any verifier must do. Also times "verify data" (every shard re-read).
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from okai.chain.signer import DEV_ADDRESS  # noqa: E402
from okai.digest import Digest  # noqa: E402
from web_stack import World, chromium, web_stack  # noqa: E402

DEMO_MODEL = hashlib.shake_256(b"okai demo model").digest(64 * 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with web_stack() as web:
        recorded = web.record(
            "demo", World(store=web.store, store_quilt=web.store_quilt, model=DEMO_MODEL)
        )
        client = web.client()

        def direct() -> float:
            started = time.perf_counter()
            digest = Digest.of_file(recorded.path)
            provenance = client.get_provenance(digest, DEV_ADDRESS)
            blob = httpx.get(f"{web.walrus_url}/v1/blobs/{provenance.model.attestation_blob_id}")
            assert Digest.of_bytes(blob.content) == provenance.model.attestation_digest
            return time.perf_counter() - started

        baseline = [direct() for _ in range(args.runs)]
        verdicts, data = [], []
        with chromium() as context:
            for _ in range(args.runs):
                page = context.new_page()
                page.goto(web.trusted_page_url)
                page.wait_for_selector("body[data-ready='true']")
                started = time.perf_counter()
                page.set_input_files("#file", str(recorded.path))
                page.wait_for_selector("#verdict[data-verdict='verified']", timeout=60_000)
                page.wait_for_selector("li[data-check='image.registered'].passed")
                verdicts.append(time.perf_counter() - started)
                started = time.perf_counter()
                page.click("#verify-data")
                page.wait_for_selector("li[data-check='datasets.shards'].passed", timeout=60_000)
                data.append(time.perf_counter() - started)
                page.close()
    base, verdict, deep = (statistics.median(x) for x in (baseline, verdicts, data))
    print(f"model: {len(DEMO_MODEL) // 1024} KiB, {args.runs} runs, medians")
    print(f"direct reads (Python: hash + getProvenance + attestation): {base * 1000:7.1f} ms")
    print(f"page, drop to verdict (all always-on checks)             : {verdict * 1000:7.1f} ms")
    print(f"page, verify data (2 manifests, 4 shards)                : {deep * 1000:7.1f} ms")
    print(f"ratio page verdict / direct reads: {verdict / base:.2f}")


if __name__ == "__main__":
    main()
