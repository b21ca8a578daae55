"""Generated verification cases, honest and hostile, for the differential test.

`cases(seed, count)` yields (description, inputs) pairs: the inputs of a shared vector
(tests/vectors/verify), built from one honest recorded model (generate.World) and then
mutated the way a hostile submitter or aggregator would: unknown fields, `__proto__`
keys, wrong types ("false" as a string), duplicated list entries, upper-case or padded
digests, numbers at and beyond 2**53, deep nesting, duplicate keys in the raw JSON,
huge arrays, non-canonical serialisations, invalid UTF-8, swapped or missing blobs.
Each record is re-made to match what it records where it can, so a mutation reaches the
deeper checks instead of stopping at the first digest. Deterministic per seed.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import random
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from okai.digest import Digest

sys.path.insert(0, str(Path(__file__).resolve().parent / "vectors" / "verify"))
from generate import NETWORK, World, blob_id

Json = Any
Case = tuple[str, dict[str, Any]]

HEX = "ab" * 32
TRICKY_STRINGS: tuple[Json, ...] = (
    "false",
    "true",
    "1",
    "7",
    "",
    "x" * 201,
    "\u202egnp.exe",
    "\ud800",
    "sha256:" + HEX.upper(),
    "SHA256:" + HEX,
    HEX,
    " sha256:" + HEX,
    "sha256:" + HEX + "\n",
    "\x1csha256:" + HEX,
    "\ufeffsha256:" + HEX,
    "\x85sha256:" + HEX,
    "M4hsZGQ1oCktdzegB6HnI6Mi28S2nqOPHxK-W7_4BUl",
    "M4hsZGQ1oCktdzegB6HnI6Mi28S2nqOPHxK-W7_4BUk",
    "/nix/store/7y1jz2w5q0cb0zwz3d0vgg8h1r3k9m2a-nixos-system-okai-24.11\n",
    "../x",
    "a//b",
    "./a",
    "a/",
    ".",
    "a\\b",
    "2026-01-01T12:00:00+01:00",
    "2026-01-01 12:00:00Z",
    "2026-01-01T12:00Z",
    "2026-01-01T12:00:00.123456789Z",
    "2026-02-30T12:00:00Z",
    "2026-01-01T12:00:00z",
    "https://okai.dev/builders/local/v1\n",
    "manifest",
    "blob",
    "quiltPatch",
    "unregistered host",
    "mlp",
)
TRICKY_VALUES: tuple[Json, ...] = (
    *TRICKY_STRINGS,
    0,
    1,
    -1,
    2,
    1.5,
    5.0,
    -0.0,
    2**53 - 1,
    2**53,
    1e16,
    1767268990,
    True,
    False,
    None,
    [],
    {},
    {"sha256": HEX},
    [1, 2],
)
UNKNOWN_KEYS = ("__proto__", "constructor", "toString", "hasOwnProperty", "note", "Schema")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def paths(value: Json, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value inside `value` (the root excluded)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*prefix, index)
            yield from paths(item, (*prefix, index))


def at(value: Json, path: tuple[Any, ...]) -> Json:
    for part in path:
        value = value[part]
    return value


class Mutator:
    """Random structural changes to a parsed JSON document (in place)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def pick(self, doc: Json, want: Callable[[Json], bool] = lambda v: True) -> tuple[Any, ...]:
        options = [p for p in paths(doc) if want(at(doc, p))]
        return self.rng.choice(options) if options else ()

    def __call__(self, doc: Json) -> str:
        kind = self.rng.choice(
            ["replace", "replace", "delete", "unknown", "duplicate", "digest", "number", "nest"]
        )
        return getattr(self, kind)(doc)

    def replace(self, doc: Json) -> str:
        path = self.pick(doc)
        if not path:
            return "nothing"
        value = copy.deepcopy(self.rng.choice(TRICKY_VALUES))
        at(doc, path[:-1])[path[-1]] = value
        return f"replace {path} with {value!r:.40}"

    def delete(self, doc: Json) -> str:
        path = self.pick(doc)
        if not path:
            return "nothing"
        del at(doc, path[:-1])[path[-1]]
        return f"delete {path}"

    def unknown(self, doc: Json) -> str:
        path = self.pick(doc, lambda v: isinstance(v, dict))
        target = at(doc, path)
        if not isinstance(target, dict):
            return "nothing"
        key = self.rng.choice(UNKNOWN_KEYS)
        value = copy.deepcopy(self.rng.choice([*TRICKY_VALUES, dict(target)]))
        target[key] = value
        return f"add {key!r} to {path}"

    def duplicate(self, doc: Json) -> str:
        path = self.pick(doc, lambda v: isinstance(v, list) and len(v) > 0)
        target = at(doc, path)
        if not isinstance(target, list) or not target:
            return "nothing"
        index = self.rng.randrange(len(target))
        if self.rng.random() < 0.02:
            target.extend(copy.deepcopy(target[index]) for _ in range(2000))
            return f"append 2000 copies of {path}[{index}]"
        target.insert(self.rng.randrange(len(target) + 1), copy.deepcopy(target[index]))
        return f"duplicate {path}[{index}]"

    def digest(self, doc: Json) -> str:
        path = self.pick(
            doc, lambda v: isinstance(v, str) and (v.startswith("sha256:") or len(v) == 64)
        )
        if not path:
            return "nothing"
        value = at(doc, path)
        variant = self.rng.choice(
            [
                value.upper(),
                value.replace("sha256:", "SHA256:"),
                value.removeprefix("sha256:"),
                f" {value}",
                f"{value}\n",
                value[:-1] + value[-1].upper(),
            ]
        )
        at(doc, path[:-1])[path[-1]] = variant
        return f"respell digest {path}"

    def number(self, doc: Json) -> str:
        path = self.pick(doc, lambda v: isinstance(v, int | float) and not isinstance(v, bool))
        if not path:
            path = self.pick(doc)
            if not path:
                return "nothing"
        value = self.rng.choice([1e16, 2**53, 2**53 - 1, -(2**53), 1e300, 5.0, 0.1, -0.0, 1e-7])
        at(doc, path[:-1])[path[-1]] = value
        return f"number {path} = {value!r}"

    def nest(self, doc: Json) -> str:
        path = self.pick(doc, lambda v: isinstance(v, dict))
        target = at(doc, path)
        if not isinstance(target, dict):
            return "nothing"
        depth = self.rng.choice([10, 60, 63, 64, 65, 200])
        nested: Json = "deep"
        for _ in range(depth):
            nested = [nested] if self.rng.random() < 0.5 else {"d": nested}
        target[self.rng.choice(["note", *list(target)[:3]])] = nested
        return f"nest {depth} levels at {path}"


def serialise(doc: Json, rng: random.Random) -> tuple[str, bytes]:
    """The document as bytes: canonical, pretty, or spoiled at the text level."""
    style = rng.choice(
        ["canonical"] * 6
        + [
            "pretty",
            "ascii",
            "dup-key",
            "bad-utf8",
            "bom",
            "trailing",
            "nan",
            "big-int",
            "escaped-key",
            "float-int",
            "deep-text",
            "truncated",
            "lone-surrogate",
        ]
    )
    fallback, raw = plain(doc)
    text = raw.decode("utf-8", "surrogatepass")
    style = style if fallback == "canonical" else fallback
    if style == "pretty":
        text = json.dumps(doc, indent=rng.choice([1, 2]), ensure_ascii=False)
    elif style == "ascii":
        text = json.dumps(doc, ensure_ascii=True)
    elif style == "dup-key" and text.startswith("{") and len(text) > 2:
        # Repeat the first member: the same key twice in the top object, or a hidden one.
        first = text[1 : text.index(":") + 1]
        text = "{" + first + rng.choice(['"x",', "1,", "null,"]) + text[1:]
    elif style == "bad-utf8":
        raw = text.encode("utf-8", "surrogatepass")
        cut = rng.randrange(len(raw))
        return style, raw[:cut] + rng.choice(
            [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf"]
        ) + raw[cut:]
    elif style == "bom":
        text = "\ufeff" + text
    elif style == "trailing":
        text += rng.choice([" ", "\n", "x", "{}", "\x00"])
    elif style == "nan":
        text = text.replace("0.", "NaN,0.", 1) if "0." in text else text + "NaN"
    elif style == "big-int":
        text = text.replace(
            ":7",
            ":"
            + rng.choice(
                [
                    "10000000000000000",
                    "9007199254740993",
                    "9007199254740991",
                    "1e16",
                    "1" * 5000,
                    "1e400",
                    "-0",
                    "7.0",
                    "7e0",
                ]
            ),
            1,
        )
    elif style == "escaped-key":
        text = text.replace('"name"', '"\\u006eame"', 1)
    elif style == "float-int":
        text = text.replace(":1,", ":1.0,", 1)
    elif style == "deep-text":
        depth = rng.choice([64, 65, 3000])
        text = text.replace(":7", ":" + "[" * depth + "7" + "]" * depth, 1)
    elif style == "truncated":
        text = text[: rng.randrange(len(text))]
    elif style == "lone-surrogate":
        text = text.replace('"name":"', '"name":"\\udc00', 1)
    return style, text.encode("utf-8", "surrogatepass")


def plain(doc: Json) -> tuple[str, bytes]:
    """Sorted compact bytes: RFC 8785 for these documents (their numbers are plain), and
    much faster to make than `canonical_json`; the verifiers judge them either way."""
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return "canonical", text.encode("utf-8", "surrogatepass")


def try_digest(value: Json) -> str | None:
    """The canonical digest `plain` bytes give, or None for a document with no such form."""
    try:
        return Digest.of_bytes(plain(value)[1]) if not isinstance(value, str) else None
    except Exception:
        return None


class CaseMaker:
    """Honest parts of one recorded model, and the ways to spoil them."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.mutate = Mutator(self.rng)
        self.world = World()
        self.statement = json.dumps(self.world.attestation())
        self.manifest = json.dumps(self.world.manifest)
        self.blobs = {k: {"bytesBase64": b64(v)} for k, v in self.world.blobs.items()}
        self.chain = json.dumps(self.world.recorded()[0])
        self.raw_digest = self.world.dataset_digests()[1]

    def case(self) -> Case:
        rng, w = self.rng, self.world
        notes: list[str] = []
        blobs = dict(self.blobs)

        # The dataset manifest: maybe spoiled, then stored where the job says it is.
        manifest = json.loads(self.manifest)
        if rng.random() < 0.3:  # fields later okai added: formats and sample counts
            for file in manifest["files"]:
                file.update(format=rng.choice(["jsonl", "text", "parquet"]), samples=3)
            for shard in manifest["shards"]:
                shard["firstSample"] = 0
            notes.append("manifest with formats")
        if rng.random() < 0.25:
            notes.append("manifest: " + self.mutate(manifest))
        if rng.random() < 0.005:
            manifest = many_shards(rng.choice([1000, 3000]), rng, blobs)
            notes.append(f"manifest of {len(manifest['shards'])} shards")
        style, manifest_bytes = (
            serialise(manifest, rng)
            if rng.random() < 0.3
            else (
                "pretty",
                json.dumps(manifest, indent=2).encode(),
            )
        )
        notes.append(f"manifest as {style}")
        blobs[w.manifest_blob] = {"bytesBase64": b64(manifest_bytes)}
        manifest_digest = try_digest(manifest) or Digest.of_bytes(manifest_bytes)

        # The image manifest.
        if rng.random() < 0.1:
            image_manifest = copy.deepcopy(w.image_manifest)
            notes.append("image manifest: " + self.mutate(image_manifest))
            style, raw = serialise(image_manifest, rng)
            blobs[w.image_manifest_blob] = {"bytesBase64": b64(raw)}

        # The statement, with the job pointing at the (spoiled) manifest.
        statement = json.loads(self.statement)
        build = statement["predicate"]["buildDefinition"]
        job = build["externalParameters"]["job"]
        job["datasets"][0]["sha256"] = manifest_digest
        if rng.random() < 0.3:  # fields later okai added: a strategy, a package
            job["sync"] = {
                "strategy": "diloco",
                "innerSteps": 50,
                "outerLr": 0.7,
                "outerMomentum": 0.5,
                "compression": "bf16",
            }
            notes.append("job with DiLoCo")
        if rng.random() < 0.15:
            job["model"] = {
                "entrypointBlobId": w.manifest_blob,
                "sha256": manifest_digest,
                "kind": "package",
                "module": "trainer.main",
            }
            notes.append("job with a package entry point")
        build["resolvedDependencies"][1]["digest"]["sha256"] = manifest_digest[7:]
        roll = rng.random()
        if roll < 0.35:
            notes.append("job: " + self.mutate(job))
        elif roll < 0.75:
            notes.append("statement: " + self.mutate(statement))
        elif roll < 0.8:
            statement["predicate"]["runDetails"]["byproducts"].append(
                copy.deepcopy(statement["predicate"]["runDetails"]["byproducts"][rng.randrange(2)])
            )
            notes.append("duplicate byproduct")
        style, raw = serialise(statement, rng) if rng.random() < 0.35 else plain(statement)
        notes.append(f"statement as {style}")

        # The record says what the statement says where it can (a consistent liar).
        chain = json.loads(self.chain)
        chain["record"].update(
            jobDigest=try_digest(job) or Digest.of_bytes(b"no canonical job"),
            datasetManifestDigests=[manifest_digest, self.raw_digest],
            attestationDigest=Digest.of_bytes(raw),
            attestationBlobId=blob_id(raw),
        )
        blobs[chain["record"]["attestationBlobId"]] = {"bytesBase64": b64(raw)}
        if rng.random() < 0.05:
            chain["record"]["jobDigest"] = Digest.of_json(w.job)  # the honest job
            notes.append("record: the honest job digest")
        if rng.random() < 0.05:
            chain["witnesses"] = []
            notes.append("no witnesses")

        # Blob-level trouble: a shard changed or missing, an aggregator error.
        if rng.random() < 0.1:
            key = rng.choice(sorted(blobs))
            blobs[key] = rng.choice(
                [{"error": "HTTP 503 BLOB_UNAVAILABLE"}, {"bytesBase64": b64(b"changed")}]
            )
            notes.append(f"blob {key} spoiled")

        deep = rng.random() < 0.8
        options = {"deep": deep, "image": deep and rng.random() < 0.3, "reproduce": False}
        inputs: dict[str, Any] = {
            "options": options,
            "network": NETWORK,
            "model": {"bytesBase64": b64(w.model)},
            "chain": chain,
            "blobs": blobs,
        }
        if rng.random() < 0.1:
            inputs["model"] = {"given": rng.choice(TRICKY_STRINGS[8:16])}
            notes.append("model digest given")
        if rng.random() < 0.05:
            options["reproduce"] = True
            inputs["reproducedDigest"] = rng.choice([w.model_digest, Digest.of_bytes(b"x")])
        return "; ".join(notes), inputs


def many_shards(count: int, rng: random.Random, blobs: dict[str, Any]) -> dict[str, Any]:
    """An honest manifest of `count` one-byte shards (huge arrays, linear checks); each
    shard's blob goes into `blobs`."""
    data = bytes(rng.randrange(256) for _ in range(count))
    shards = []
    for offset in range(count):
        piece = data[offset : offset + 1]
        key = blob_id(piece + offset.to_bytes(4, "big"))
        blobs[key] = {"bytesBase64": b64(piece)}
        shards.append(
            {
                "path": "d.bin",
                "offset": offset,
                "size": 1,
                "sha256": Digest.of_bytes(piece),
                "blobId": key,
            }
        )
    return {
        "schema": "okai.dataset/v1",
        "name": "many",
        "files": [{"path": "d.bin", "size": count, "sha256": Digest.of_bytes(data)}],
        "shards": shards,
        "totals": {"files": 1, "shards": count, "bytes": count},
    }


def many_shards_case(count: int) -> dict[str, Any]:
    """An honest, verified case whose dataset manifest lists `count` shards."""
    maker = CaseMaker(0)
    maker.manifest = json.dumps(many_shards(count, maker.rng, maker.blobs))
    maker.rng = _Honest()
    inputs = maker.case()[1]
    inputs["options"] = {"deep": True, "image": True, "reproduce": False}
    return inputs


class _Honest(random.Random):
    """A random source under which CaseMaker changes nothing."""

    def random(self) -> float:
        return 0.999

    def choice(self, seq: Any) -> Any:
        return seq[0]


def cases(seed: int, count: int) -> Iterator[Case]:
    maker = CaseMaker(seed)
    for _ in range(count):
        yield maker.case()


def case_digest(inputs: dict[str, Any]) -> str:
    """A short name for a case (to find it again in a report)."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:12]
