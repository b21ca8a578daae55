"""Deep verification of a manifest with many shards: the check rules, in process, no network.

A record's author chooses how many shards its manifest lists. For growing counts, builds
one consistent recorded world (tests/vectors/verify/generate.py) whose dataset manifest
has that many one-blob shards, and times `okai verify --deep`'s rules over it (evaluate,
serve each blob asked for, evaluate again: tests/test_verify_vectors.run_vector), beside
the baseline of the same size: parsing the manifest JSON and hashing every shard once,
the least any verifier does. Time per shard should stay flat (linear work); the target
(issue 14) is 100,000 shards evaluated, or refused with a reason, in under 2 s. A size
that takes longer than --give-up seconds ends the run.

    PYTHONPATH=src .venv/bin/python benchmarks/verify_shards.py [--sizes 1000,8000,100000]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import struct
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "vectors" / "verify")]

from generate import World, blob_id, vector  # noqa: E402

from okai.digest import Digest  # noqa: E402
from test_verify_vectors import run_vector  # noqa: E402


def world_inputs(count: int) -> dict[str, Any]:
    """The deep-verification inputs of a recorded world whose manifest has `count` shards."""
    pieces = [struct.pack(">I", index) for index in range(count)]
    data = b"".join(pieces)

    def many_shards(manifest: dict[str, Any]) -> None:
        path = manifest["files"][0]["path"]
        manifest["files"][0].update(size=len(data), sha256=Digest.of_bytes(data))
        manifest["shards"] = [
            {
                "path": path,
                "offset": 4 * index,
                "size": 4,
                "sha256": Digest.of_bytes(piece),
                "blobId": blob_id(piece),
            }
            for index, piece in enumerate(pieces)
        ]
        manifest["totals"] = {"files": 1, "shards": count, "bytes": len(data)}

    world = World(spoil_manifest=many_shards)
    world.blobs.update({blob_id(piece): piece for piece in pieces})
    inputs: dict[str, Any] = vector("bench", "", world, {})["inputs"]
    return inputs


def baseline(inputs: dict[str, Any]) -> float:
    """Parse the manifest and hash every shard once: the floor."""
    blobs = inputs["blobs"]
    start = time.perf_counter()
    manifest_key = inputs["chain"]["record"] and next(
        key for key, blob in blobs.items() if b'"shards"' in base64.b64decode(blob["bytesBase64"])
    )
    manifest = json.loads(base64.b64decode(blobs[manifest_key]["bytesBase64"]))
    for shard in manifest["shards"]:
        hashlib.sha256(base64.b64decode(blobs[shard["blobId"]]["bytesBase64"])).hexdigest()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,4000,8000,16000,100000")
    parser.add_argument("--give-up", type=float, default=60.0)
    args = parser.parse_args()

    print("shards   rules (deep)   per shard   baseline   ratio   datasets.shards")
    for count in (int(size) for size in args.sizes.split(",")):
        inputs = world_inputs(count)
        floor = baseline(inputs)
        start = time.perf_counter()
        result = run_vector(inputs)
        took = time.perf_counter() - start
        status = result.checks["datasets.shards"].status
        print(
            f"{count:>7}   {took:10.2f} s   {took / count * 1e6:6.1f} µs"
            f"   {floor:6.2f} s   {took / floor:5.1f}x   {status}",
            flush=True,
        )
        if took > args.give_up:
            print(f"gave up: {count} shards took over {args.give_up:g} s")
            break


if __name__ == "__main__":
    main()
