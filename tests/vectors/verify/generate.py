"""Write the shared verification vectors: `python tests/vectors/verify/generate.py`.

Each vector holds the observations a verifier makes (the model digest, the registry
answer, the blobs an aggregator returns) and the status every check of
docs/verification.md must get from them. The web page (web/test/rules.test.js) and
`okai verify` are both tested against these files. The output is deterministic: running
this again rewrites identical files (tests/test_web_vectors.py checks that).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from okai.digest import ZERO_DIGEST, Digest, canonical_json
from okai.manifest import DatasetManifest, ImageManifest, JobSpec, blob_id_from_bytes32
from okai.verify.checks import CHECK_IDS
from okai.verify.observations import quilt_file_key

HERE = Path(__file__).resolve().parent
SCHEMA = "okai.verify-vector/v1"
NETWORK = {"name": "dev", "chainId": 31337}
SUBMITTER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
REGISTRANT = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
WITNESSES = ["0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"]
TOPLEVEL = "/nix/store/7y1jz2w5q0cb0zwz3d0vgg8h1r3k9m2a-nixos-system-okai-24.11"
OTHER_TOPLEVEL = "/nix/store/0a9s8d7f6g5h4j3k2l1qwertyuiopzxc-nixos-system-evil-24.11"
NIXPKGS = "0123456789abcdef0123456789abcdef01234567"
FLAKE = "89abcdef0123456789abcdef0123456789abcdef"
P, F, N = "passed", "failed", "not checked"


def blob_id(content: bytes) -> str:
    """A stand-in blob ID (32 bytes from the content); vectors never need real Walrus IDs."""
    return blob_id_from_bytes32(hashlib.sha256(b"walrus:" + content).digest())


def quilt_id(identifier: str, content: bytes) -> str:
    """A stand-in quilt ID for a one-file quilt (quilt IDs are blob IDs)."""
    return blob_id(quilt_container(identifier, content))


def quilt_container(identifier: str, content: bytes) -> bytes:
    """Stand-in bytes of a one-file quilt: the file with a header, as a quilt blob holds it."""
    return b"quilt:" + identifier.encode() + b"\n" + content


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def toplevel_digest(path: str) -> str:
    return Digest.of_bytes(path.encode("utf-8"))


class World:
    """One consistent recorded model: its bytes, data, image, job, attestation and record."""

    def __init__(
        self,
        *,
        job_name: str = "digits-mlp",
        hostile: bool = False,
        spoil_manifest: Callable[[dict[str, Any]], None] | None = None,
        store: Callable[[bytes], str] = blob_id,
        store_quilt: Callable[[str, bytes], str] = quilt_id,
        model: bytes = b"\x00okai-demo-model safetensors bytes\n" * 8,
    ) -> None:
        self._store = store
        self._store_quilt = store_quilt
        self.model = model
        self.model_file = "model.safetensors"
        self.blobs: dict[str, bytes] = {}
        self.hyperparameters: dict[str, Any] = {"epochs": 3, "lr": 0.05}
        self.metrics: dict[str, Any] = {"accuracy": 0.97, "loss": 0.12, "steps": 300}
        if hostile:
            self.model_file = "model\u202egnp.exe\u202c.safetensors"
            self.hyperparameters["note"] = "<script>window.__pwned=1</script>" + "A" * 100_000
            self.metrics["link"] = "javascript:window.__pwned=1"
            self.metrics["\u202eevil"] = '<img src=x onerror="window.__pwned=1">'
        # Dataset 1: one file in three shards; dataset 2: a raw blob okai never pushed.
        data = bytes(range(256)) * 3
        name = "<b>digits</b> \u202etxt.exe" if hostile else "digits"
        path = "<script>alert(1)</script>/digits\u202e.csv" if hostile else "digits.csv"
        shards = []
        for offset in range(0, len(data), 300):
            piece = data[offset : offset + 300]
            shards.append(
                {
                    "path": path,
                    "offset": offset,
                    "size": len(piece),
                    "sha256": Digest.of_bytes(piece),
                    "blobId": self.store(piece),
                    "mediaType": "text/csv",
                }
            )
        manifest = {
            "schema": "okai.dataset/v1",
            "name": name,
            "files": [
                {
                    "path": path,
                    "size": len(data),
                    "sha256": Digest.of_bytes(data),
                    "mediaType": "text/csv",
                }
            ],
            "shards": shards,
            "totals": {"files": 1, "shards": len(shards), "bytes": len(data)},
        }
        if spoil_manifest is None:
            DatasetManifest.from_data(manifest, "vector")  # it is a valid okai document
        else:
            spoil_manifest(manifest)
        # Stored pretty-printed: the manifest digest is of its canonical form anyway.
        self.manifest = manifest
        self.manifest_bytes = json.dumps(manifest, indent=2, ensure_ascii=False).encode()
        self.manifest_blob = self.store(self.manifest_bytes)
        self.raw = b"raw labels 0 1 2 3 4 5 6 7 8 9\n"
        self.raw_blob = self.store(self.raw)
        # The image and its registry entry.
        # Stored as okai image publish stores it: the one file of a quilt, named by its
        # file name; the manifest's blob ID is the quilt's.
        self.image_bytes = b"QFI\xfb fake qcow2 image bytes" * 4
        self.image_file = "okai-worker.qcow2"
        self.image_quilt = self.store_quilt(self.image_file, self.image_bytes)
        self.image_manifest = {
            "schema": "okai.image/v1",
            "fileName": self.image_file,
            "format": "qcow2",
            "variant": "qemu",
            "size": len(self.image_bytes),
            "sha256": Digest.of_bytes(self.image_bytes),
            "blobId": self.image_quilt,
            "nixos": {
                "systemToplevel": TOPLEVEL,
                "nixpkgsRevision": NIXPKGS,
                "flakeRevision": FLAKE,
            },
            "python": {
                "version": "3.11.14 <b>py</b>\u202e" if hostile else "3.11.14",
                "packages": [
                    {"name": "einops", "version": "0.8.2", "sha256": Digest.of_bytes(b"einops")},
                    {"name": "torch", "version": "2.13.0+cpu", "sha256": Digest.of_bytes(b"torch")},
                ],
                "extraPackages": ["einops"],
            },
        }
        ImageManifest.from_data(self.image_manifest, "vector")
        self.image_manifest_blob = self.store(canonical_json(self.image_manifest))
        self.image_digest: str = self.image_manifest["sha256"]
        self.job = {
            "schema": "okai.job/v1",
            "name": job_name,
            "model": {"builtin": "mlp"},
            "hyperparameters": self.hyperparameters,
            "seed": 7,
            "deterministic": True,
            "datasets": [
                {
                    "manifestBlobId": self.manifest_blob,
                    "sha256": Digest.of_json(manifest),
                },
                {"blobId": self.raw_blob, "sha256": Digest.of_bytes(self.raw), "path": "labels"},
            ],
            "nodes": 1,
            "procsPerNode": 2,
            "checkpointEvery": 0,
            "outputFormat": "safetensors",
        }
        JobSpec.from_data(self.job, "vector")
        self.host = TOPLEVEL
        self.with_image = True

    def store(self, content: bytes) -> str:
        key = self._store(content)
        self.blobs[key] = content
        return key

    def store_quilt(self, identifier: str, content: bytes) -> str:
        """Store `content` as the one file of a quilt; the quilt ID.

        The file is readable under its quilt-file key; the quilt ID alone reads the
        quilt's container, which is not the file's bytes.
        """
        key = self._store_quilt(identifier, content)
        self.blobs[quilt_file_key(key, identifier)] = content
        self.blobs[key] = quilt_container(identifier, content)
        return key

    @property
    def model_digest(self) -> str:
        return Digest.of_bytes(self.model)

    def dataset_digests(self) -> list[str]:
        return [Digest.of_json(self.manifest), Digest.of_bytes(self.raw)]

    def attestation(self) -> dict[str, Any]:
        """The run attestation as okai.provenance.attestation builds it."""
        dependencies: list[dict[str, Any]] = []
        if self.with_image:
            dependencies.append(
                {
                    "name": "image",
                    "uri": f"walrus://{self.image_manifest_blob}",
                    "digest": {"sha256": self.image_digest[7:]},
                    "annotations": {
                        "systemToplevel": TOPLEVEL,
                        "systemToplevelDigest": toplevel_digest(TOPLEVEL),
                        "nixpkgsRevision": NIXPKGS,
                        "flakeRevision": FLAKE,
                    },
                }
            )
        digests = self.dataset_digests()
        dependencies += [
            {
                "name": "dataset:0",
                "uri": f"walrus://{self.manifest_blob}",
                "digest": {"sha256": digests[0][7:]},
                "annotations": {"ref": "manifest"},
            },
            {
                "name": "dataset:1",
                "uri": f"walrus://{self.raw_blob}",
                "digest": {"sha256": digests[1][7:]},
                "annotations": {"ref": "blob"},
            },
            {
                "name": "code",
                "digest": {"sha256": hashlib.sha256(b"okai 0.1.0 builtin mlp").hexdigest()},
                "annotations": {"description": "okai 0.1.0 builtin model 'mlp'"},
            },
        ]
        host: dict[str, Any] = {"name": "host", "annotations": {"identity": self.host}}
        if self.host != "unregistered host":
            host["digest"] = {"sha256": toplevel_digest(self.host)[7:]}
        statement = {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": self.model_file, "digest": {"sha256": self.model_digest[7:]}}],
            "predicateType": "https://slsa.dev/provenance/v1",
            "predicate": {
                "buildDefinition": {
                    "buildType": "https://okai.dev/provenance/training/v1",
                    "externalParameters": {"job": self.job},
                    "internalParameters": {
                        "libraries": {"okai": "0.1.0", "python": "3.11.2", "torch": "2.13.0"},
                        "worldSize": 2,
                        "nodes": 1,
                    },
                    "resolvedDependencies": dependencies,
                },
                "runDetails": {
                    "builder": {"id": "https://okai.dev/builders/local/v1"},
                    "metadata": {
                        "invocationId": "digits-20260101-120000",
                        "startedOn": "2026-01-01T12:00:00Z",
                        "finishedOn": "2026-01-01T12:03:10Z",
                    },
                    "byproducts": [
                        {
                            "name": "metrics",
                            "digest": {"sha256": Digest.of_json(self.metrics)[7:]},
                            "annotations": self.metrics,
                        },
                        host,
                    ],
                },
            },
        }
        return copy.deepcopy(statement)  # callers tamper with their copy only

    def recorded(
        self, attestation_bytes: bytes | None = None, **changes: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(chain observation, blobs) with the attestation stored and recorded."""
        raw = attestation_bytes or canonical_json(self.attestation())
        blobs = dict(self.blobs)
        key = self._store(raw)
        blobs[key] = raw
        record = {
            "imageDigest": self.image_digest if self.with_image else ZERO_DIGEST,
            "datasetManifestDigests": self.dataset_digests(),
            "jobDigest": Digest.of_json(self.job),
            "attestationDigest": Digest.of_bytes(raw),
            "attestationBlobId": key,
            "submitter": SUBMITTER,
            "recordedAt": 1767268990,
        }
        record.update(changes)
        image = {
            "systemToplevel": toplevel_digest(TOPLEVEL),
            "manifestBlobId": self.image_manifest_blob,
            "manifestSha256": Digest.of_bytes(canonical_json(self.image_manifest)),
            "registrant": REGISTRANT,
            "registeredAt": 1767200000,
        }
        chain = {
            "chainId": 31337,
            "record": record,
            "image": image if record["imageDigest"] != ZERO_DIGEST else None,
            "witnesses": WITNESSES,
        }
        return chain, blobs


def vector(
    name: str,
    description: str,
    world: World,
    expected: dict[str, str],
    *,
    deep: bool = True,
    image: bool = False,
    model: dict[str, Any] | None = None,
    chain: dict[str, Any] | None = None,
    blobs: dict[str, bytes | str] | None = None,
    model_digest: str | None = "",
    codes: dict[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    default_chain, default_blobs = world.recorded()
    chain = default_chain if chain is None else chain
    blobs = default_blobs if blobs is None else blobs
    statuses = {check: expected.get(check, P) for check in CHECK_IDS}
    if not deep:
        statuses["datasets.manifests"] = statuses["datasets.shards"] = N
    if not (deep and image):
        statuses["image.bytes"] = N
    if "reproducedDigest" not in extra:
        statuses["reproduce"] = N
    requested = [c for c in CHECK_IDS if not (c == "reproduce" and "reproducedDigest" not in extra)]
    requested = [c for c in requested if deep or not c.startswith("datasets.")]
    requested = [c for c in requested if (deep and image) or c != "image.bytes"]
    verified = all(statuses[c] == P for c in requested)
    inputs: dict[str, Any] = {
        "options": {"deep": deep, "image": image, "reproduce": "reproducedDigest" in extra},
        "network": NETWORK,
        "model": model or {"bytesBase64": b64(world.model)},
        "chain": chain,
        "blobs": {
            key: {"error": value} if isinstance(value, str) else {"bytesBase64": b64(value)}
            for key, value in sorted(blobs.items())
        },
        **extra,
    }
    return {
        "schema": SCHEMA,
        "name": name,
        "description": description,
        "inputs": inputs,
        "expected": {
            "modelDigest": world.model_digest if model_digest == "" else model_digest,
            "verdict": "verified" if verified else "not verified",
            "checks": statuses,
            **({"codes": codes} if codes else {}),
        },
    }


def vectors() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    add: Callable[[dict[str, Any]], None] = out.append
    w = World()
    after_attestation = {
        "attestation.statement": N,
        "attestation.matches-record": N,
        "image.registered": N,
        "datasets.manifests": N,
        "datasets.shards": N,
    }
    nothing = {check: N for check in CHECK_IDS if check != "model.digest"}

    add(vector("passing", "A recorded model, its data re-checked: every check passes.", w, {}))
    add(
        vector(
            "passing-shallow",
            "The same model without the data checks: they are not checked, it still verifies.",
            w,
            {},
            deep=False,
        )
    )
    chain, blobs = w.recorded()
    add(
        vector(
            "passing-image-bytes",
            "--deep --image: the image is re-downloaded too, as the file of its quilt (the "
            "manifest's blob ID is the quilt's), and matches.",
            w,
            {},
            image=True,
        )
    )
    tampered_image = dict(blobs)
    tampered_image[quilt_file_key(w.image_quilt, w.image_file)] = w.image_bytes[:-1] + b"!"
    add(
        vector(
            "tampered-image-bytes",
            "--deep --image: the image file's bytes differ from the registered digest.",
            w,
            {"image.bytes": F},
            image=True,
            blobs=tampered_image,
        )
    )
    add(
        vector(
            "given-digest",
            "A digest pasted instead of a file (upper case, with prefix): accepted as given.",
            w,
            {},
            model={"given": "  SHA256:" + w.model_digest[7:].upper() + " "},
        )
    )
    add(
        vector(
            "malformed-digest",
            "A pasted digest that is not one: nothing else can be checked.",
            w,
            {"model.digest": F, **nothing},
            model={"given": "sha256:1234xyz"},
            model_digest=None,
        )
    )
    add(
        vector(
            "tampered-model",
            "One byte of the model changed: the registry holds no record of its digest.",
            w,
            {"record.exists": F, **{k: v for k, v in nothing.items() if k != "record.exists"}},
            model={"bytesBase64": b64(w.model[:-1] + b"?")},
            chain={**chain, "record": None, "image": None, "witnesses": []},
            model_digest=Digest.of_bytes(w.model[:-1] + b"?"),
        )
    )
    add(
        vector(
            "wrong-chain",
            "The RPC endpoint serves another chain than the selected network's.",
            w,
            {"record.exists": F, **{k: v for k, v in nothing.items() if k != "record.exists"}},
            chain={**chain, "chainId": 14},
        )
    )
    add(
        vector(
            "rpc-unreachable",
            "The registry cannot be read: the record check fails, nothing after it runs.",
            w,
            {"record.exists": F, **{k: v for k, v in nothing.items() if k != "record.exists"}},
            chain={"error": "the RPC endpoint did not answer"},
        )
    )
    statement = w.attestation()
    statement["predicate"]["runDetails"]["byproducts"][0]["annotations"]["accuracy"] = 0.99
    add(
        vector(
            "tampered-attestation",
            "The attestation blob returned differs from the recorded one (a metric changed).",
            w,
            {"attestation.digest": F, **after_attestation},
            blobs={**blobs, chain["record"]["attestationBlobId"]: canonical_json(statement)},
        )
    )
    add(
        vector(
            "attestation-unavailable",
            "The aggregator cannot serve the attestation blob.",
            w,
            {"attestation.digest": F, **after_attestation},
            blobs={**blobs, chain["record"]["attestationBlobId"]: "HTTP 404 BLOB_NOT_FOUND"},
        )
    )
    pretty = json.dumps(w.attestation(), indent=1).encode()
    add(
        vector(
            "attestation-reserialised",
            "The same statement stored with other whitespace: its SHA-256 is not the recorded "
            "one, and only the recorded bytes count.",
            w,
            {"attestation.digest": F, **after_attestation},
            blobs={**blobs, chain["record"]["attestationBlobId"]: pretty},
        )
    )
    add(
        vector(
            "attestation-not-json",
            "The recorded attestation (its digest matches) is not JSON.",
            w,
            {**after_attestation, "attestation.statement": F},
            chain=w.recorded(b"\xff\xfe not json")[0],
            blobs=w.recorded(b"\xff\xfe not json")[1],
        )
    )
    other = World()
    other.model = b"another model"
    add(
        vector(
            "attestation-other-subject",
            "The recorded attestation is a well-formed statement about another model.",
            w,
            {**after_attestation, "attestation.statement": F},
            chain=w.recorded(canonical_json(other.attestation()))[0],
            blobs=w.recorded(canonical_json(other.attestation()))[1],
        )
    )
    wrong_type = w.attestation()
    wrong_type["predicateType"] = "https://slsa.dev/provenance/v0.2"
    add(
        vector(
            "attestation-wrong-predicate",
            "The recorded attestation is not SLSA Provenance v1.",
            w,
            {**after_attestation, "attestation.statement": F},
            chain=w.recorded(canonical_json(wrong_type))[0],
            blobs=w.recorded(canonical_json(wrong_type))[1],
        )
    )
    extra_field = w.attestation()
    extra_field["predicate"]["runDetails"]["note"] = "unexpected"
    add(
        vector(
            "attestation-unknown-field",
            "The recorded attestation carries a field the format does not have.",
            w,
            {**after_attestation, "attestation.statement": F},
            chain=w.recorded(canonical_json(extra_field))[0],
            blobs=w.recorded(canonical_json(extra_field))[1],
        )
    )
    mismatch_chain, mismatch_blobs = w.recorded(
        datasetManifestDigests=[w.dataset_digests()[0], Digest.of_bytes(b"other data")]
    )
    add(
        vector(
            "attestation-not-matching-record",
            "The recorded attestation names other data than the record does.",
            w,
            {"attestation.matches-record": F, "datasets.manifests": N, "datasets.shards": N},
            chain=mismatch_chain,
            blobs=mismatch_blobs,
        )
    )
    job_chain, job_blobs = w.recorded(jobDigest=Digest.of_bytes(b"another job"))
    add(
        vector(
            "attestation-other-job",
            "The record's job digest is not the digest of the job in the attestation.",
            w,
            {"attestation.matches-record": F, "datasets.manifests": N, "datasets.shards": N},
            chain=job_chain,
            blobs=job_blobs,
        )
    )
    unregistered = World()
    unregistered.with_image = False
    unregistered.host = "unregistered host"
    add(
        vector(
            "unregistered-host",
            "Trained on a host that ran no registered image: the record's image is the zero "
            "digest, and image.registered fails with that reason.",
            unregistered,
            {"image.registered": F},
        )
    )
    swapped = World()
    swapped.host = OTHER_TOPLEVEL
    add(
        vector(
            "swapped-image",
            "The node ran another system than the registered image's toplevel.",
            swapped,
            {"image.registered": F},
        )
    )
    forged_manifest = copy.deepcopy(w.image_manifest)
    forged_manifest["nixos"]["nixpkgsRevision"] = "f" * 40
    forged_manifest["nixos"]["flakeRevision"] = "e" * 40
    add(
        vector(
            "forged-image-manifest",
            "--deep --image: the aggregator serves another well-formed image manifest (other "
            "nixpkgs and flake revisions) under the claim's manifest blob ID. Its SHA-256 is "
            "not the one the image claim commits to: image.registered fails and nothing of it "
            "is used, not even to find the image.",
            w,
            {"image.registered": F, "image.bytes": F},
            image=True,
            blobs={**w.recorded()[1], w.image_manifest_blob: canonical_json(forged_manifest)},
            codes={"image.registered": "forged-manifest", "image.bytes": "manifest-unusable"},
        )
    )
    shard = w.manifest["shards"][1]
    add(
        vector(
            "tampered-shard",
            "Shard 2 of dataset 1 comes back with one byte changed.",
            w,
            {"datasets.shards": F},
            blobs={**blobs, shard["blobId"]: w.blobs[shard["blobId"]][:-1] + b"!"},
        )
    )

    def longer_second_shard(manifest: dict[str, Any]) -> None:
        # Still a valid manifest: the later shard and the file move by the byte it claims.
        manifest["shards"][1]["size"] += 1
        manifest["shards"][2]["offset"] += 1
        manifest["files"][0]["size"] += 1
        manifest["totals"]["bytes"] += 1

    add(
        vector(
            "shard-size-mismatch",
            "The manifest says shard 2 of dataset 1 is one byte longer than the blob whose "
            "SHA-256 it gives: the bytes hash right, their size is wrong.",
            World(spoil_manifest=longer_second_shard),
            {"datasets.shards": F},
            codes={"datasets.shards": "size-mismatch"},
        )
    )
    add(
        vector(
            "shard-unavailable",
            "Shard 3 of dataset 1 cannot be read.",
            w,
            {"datasets.shards": F},
            blobs={**blobs, w.manifest["shards"][2]["blobId"]: "HTTP 503 BLOB_UNAVAILABLE"},
        )
    )
    add(
        vector(
            "tampered-raw-data",
            "The raw blob of dataset 2 comes back changed.",
            w,
            {"datasets.shards": F},
            blobs={**blobs, w.raw_blob: w.raw + b"extra"},
        )
    )
    tampered_manifest = copy.deepcopy(w.manifest)
    tampered_manifest["shards"][0]["sha256"] = Digest.of_bytes(b"forged")
    add(
        vector(
            "tampered-manifest",
            "Dataset 1's manifest now lists another shard digest: its canonical digest is not "
            "the recorded one, and the shards are not checked.",
            w,
            {"datasets.manifests": F, "datasets.shards": N},
            blobs={**blobs, w.manifest_blob: json.dumps(tampered_manifest).encode()},
        )
    )
    # The same JSON numbers written otherwise: JavaScript reads 30.0 and 300e-1 as 30, and
    # RFC 8785 writes them 30, so the digest is the recorded one (okai reads them as integers).
    whole_numbers = re.sub(rb'"(size|offset)": ([0-9]+)', rb'"\1": \2.0', w.manifest_bytes)
    whole_numbers = re.sub(rb'"bytes": ([0-9]+)', rb'"bytes": \g<1>0e-1', whole_numbers)
    add(
        vector(
            "manifest-numbers-written-as-fractions",
            "Dataset 1's manifest writes its sizes and offsets as 30.0 and its total bytes as "
            "300e-1: the same numbers, the same canonical form, so it verifies.",
            w,
            {},
            blobs={**blobs, w.manifest_blob: whole_numbers},
        )
    )
    spoilers: dict[str, tuple[str, Callable[[dict[str, Any]], None]]] = {
        "manifest-unknown-field": (
            "a field okai.dataset/v1 does not have",
            lambda m: m.update(comment="hello"),
        ),
        "manifest-bad-totals": (
            "totals that do not add up",
            lambda m: m["totals"].update(bytes=1),
        ),
        "manifest-unsafe-path": (
            "a shard path escaping the dataset folder",
            lambda m: [x.update(path="../../etc/passwd") for x in m["files"] + m["shards"]],
        ),
    }
    for name, (what, spoil) in spoilers.items():
        add(
            vector(
                name,
                f"Dataset 1's recorded manifest (its digest matches) has {what}: the manifest "
                "check fails and the shards are not checked.",
                World(spoil_manifest=spoil),
                {"datasets.manifests": F, "datasets.shards": N},
            )
        )
    add(
        vector(
            "reproduced",
            "--reproduce: re-training produced the same bytes.",
            w,
            {"reproduce": P},
            deep=False,
            reproducedDigest=w.model_digest,
        )
    )
    add(
        vector(
            "not-reproduced",
            "--reproduce: re-training produced other bytes.",
            w,
            {"reproduce": F},
            deep=False,
            reproducedDigest=Digest.of_bytes(b"different"),
        )
    )

    # Inputs on which okai verify and the page once disagreed (issue 14), and the verdict
    # docs/verification.md decides for each: kept here so both suites hold it.
    def spoiled_statement(spoil: Callable[[dict[str, Any]], None]) -> bytes:
        statement = w.attestation()
        spoil(statement)
        return json.dumps(statement, separators=(",", ":"), ensure_ascii=False).encode()

    def job_of(statement: dict[str, Any]) -> dict[str, Any]:
        job: dict[str, Any] = statement["predicate"]["buildDefinition"]["externalParameters"]["job"]
        return job

    statement_cases: dict[str, tuple[str, bytes, str]] = {
        "job-unknown-field": (
            "The attested job carries a field okai.job/v1 does not have.",
            spoiled_statement(lambda s: job_of(s).update(note="ignored by a lenient reader")),
            "malformed",
        ),
        "job-proto-key": (
            'The attested job carries a "__proto__" key (an unknown field, whatever it holds).',
            spoiled_statement(lambda s: job_of(s).update({"__proto__": {"deterministic": False}})),
            "malformed",
        ),
        "job-deterministic-string": (
            'The attested job says "deterministic": "false", a string, not a boolean.',
            spoiled_statement(lambda s: job_of(s).update(deterministic="false")),
            "malformed",
        ),
        "job-seed-string": (
            'The attested job says "seed": "7", a string, not a number.',
            spoiled_statement(lambda s: job_of(s).update(seed="7")),
            "malformed",
        ),
        "duplicate-byproduct": (
            "The statement lists the metrics byproduct twice.",
            spoiled_statement(
                lambda s: s["predicate"]["runDetails"]["byproducts"].append(
                    copy.deepcopy(s["predicate"]["runDetails"]["byproducts"][0])
                )
            ),
            "malformed",
        ),
        "job-big-number": (
            "The attested job says checkpointEvery 1e16: at or beyond 2**53 no reader agrees on "
            "its value, so the document is refused.",
            spoiled_statement(lambda s: job_of(s).update(checkpointEvery=1e16)),
            "big-number",
        ),
        "attestation-duplicate-key": (
            "The recorded attestation names a key twice in one object (JSON parsers differ on "
            "which one counts).",
            b'{"_type":"https://in-toto.io/Statement/v1",' + canonical_json(w.attestation())[1:],
            "duplicate-key",
        ),
        "attestation-too-deep": (
            "A metric nests 65 arrays deep.",
            spoiled_statement(
                lambda s: s["predicate"]["runDetails"]["byproducts"][0]["annotations"].update(
                    deep=json.loads("[" * 65 + "]" * 65)
                )
            ),
            "too-deep",
        ),
        "attestation-time-nanoseconds": (
            "startedOn has nanoseconds: a time is RFC 3339 with at most microseconds.",
            spoiled_statement(
                lambda s: s["predicate"]["runDetails"]["metadata"].update(
                    startedOn="2026-01-01T12:00:00.123456789Z"
                )
            ),
            "malformed",
        ),
    }
    for name, (what, raw, code) in statement_cases.items():
        spoiled_chain, spoiled_blobs = w.recorded(raw)
        add(
            vector(
                name,
                what,
                w,
                {**after_attestation, "attestation.statement": F},
                chain=spoiled_chain,
                blobs=spoiled_blobs,
                codes={"attestation.statement": code},
            )
        )
    add(
        vector(
            "attestation-not-utf8",
            "The recorded attestation is not UTF-8 text.",
            w,
            {**after_attestation, "attestation.statement": F},
            chain=w.recorded(b'{"_type":"\xff"}')[0],
            blobs=w.recorded(b'{"_type":"\xff"}')[1],
            codes={"attestation.statement": "not-utf8"},
        )
    )
    manifest_cases: dict[str, tuple[str, Callable[[dict[str, Any]], None], str]] = {
        "manifest-upper-case-digest": (
            "a shard digest in upper-case hex (a digest in a document has one spelling)",
            lambda m: m["shards"][0].update(sha256=m["shards"][0]["sha256"].upper()),
            "malformed",
        ),
        "manifest-path-two-spellings": (
            "the path ./digits.csv, another spelling of digits.csv",
            lambda m: [x.update(path="./digits.csv") for x in m["files"] + m["shards"]],
            "malformed",
        ),
        "manifest-string-size": (
            'a shard size of "300", a string',
            lambda m: m["shards"][0].update(size="300"),
            "malformed",
        ),
    }
    for name, (what, spoil, code) in manifest_cases.items():
        add(
            vector(
                name,
                f"Dataset 1's recorded manifest (its digest matches) has {what}: the manifest "
                "check fails and the shards are not checked.",
                World(spoil_manifest=spoil),
                {"datasets.manifests": F, "datasets.shards": N},
                codes={"datasets.manifests": code, "datasets.shards": "manifests-failed"},
            )
        )
    big = World()
    big_manifest = json.dumps(big.manifest).replace('"size": 300', '"size": 10000000000000000', 1)
    big_key = big.manifest_blob
    add(
        vector(
            "manifest-big-number",
            "Dataset 1's manifest blob holds a shard size of 10000000000000000 (beyond 2**53).",
            big,
            {"datasets.manifests": F, "datasets.shards": N},
            blobs={**big.recorded()[1], big_key: big_manifest.encode()},
            codes={"datasets.manifests": "big-number"},
        )
    )
    add(
        vector(
            "given-digest-exotic-space",
            "A digest given with a next-line character (U+0085) around it: only ASCII white "
            "space is trimmed.",
            w,
            {"model.digest": F, **nothing},
            model={"given": "\x85" + w.model_digest},
            model_digest=None,
            codes={"model.digest": "malformed", "record.exists": "no-model-digest"},
        )
    )
    hostile_world = World(job_name='<img src=x onerror="window.__pwned=1"> \u202ejob', hostile=True)
    add(
        vector(
            "hostile-strings",
            "Every string field holds markup, javascript: URLs, bidi overrides or 100 kB of "
            "text; the model still verifies, and a verifier must show them as inert text.",
            hostile_world,
            {},
        )
    )
    return out


def render_all() -> dict[str, str]:
    """Every vector file's name and exact text."""
    return {
        f"{v['name']}.json": json.dumps(v, indent=1, ensure_ascii=True) + "\n" for v in vectors()
    }


def main() -> None:
    """Rewrite the vector files (or, with --check, exit non-zero if any is out of date)."""
    rendered = render_all()
    on_disk = {path.name for path in HERE.glob("*.json")}
    if "--check" in sys.argv:
        stale = [
            n for n, text in rendered.items() if n not in on_disk or (HERE / n).read_text() != text
        ]
        stale += sorted(on_disk - set(rendered))
        if stale:
            sys.exit(f"vectors out of date: {stale}; run {Path(__file__).name}")
        return
    for name, text in rendered.items():
        (HERE / name).write_text(text, encoding="utf-8")
    for name in on_disk - set(rendered):
        (HERE / name).unlink()


if __name__ == "__main__":
    main()
