"""The local server speaks the Walrus daemon's HTTP API: checked against the real OpenAPI spec.

The spec (tests/specs/walrus/daemon_openapi.yaml, unmodified from the Walrus
repository) names store-result fields in snake_case, but the daemon sends
camelCase (reference/walrus.md section 3); `corrected_spec` applies exactly
that correction, plus the two wire types the generator gets wrong (txDigest
is a base58 string, a patch list's patch_id is a string). Objects are also
made strict (no unknown fields) so a misspelt field fails.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from jsonschema import Draft202012Validator, ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from okai.errors import UsageError
from okai.walrus.server import WalrusServer
from walrus_helpers import local_server

SPEC = Path(__file__).parent / "specs" / "walrus" / "daemon_openapi.yaml"
SPEC_URI = "urn:walrus-daemon-openapi"
SNAKE_SCHEMAS = ("BlobStoreResult", "RegisterBlobOp")
STRICT = (  # result objects made to refuse unknown fields (not EventOrObjectId: allOf merges it)
    "BlobStoreResult",
    "RegisterBlobOp",
    "Blob",
    "StorageResource",
    "EventID",
    "QuiltStoreResult",
    "StoredQuiltPatch",
    "QuiltPatchItem",
)
ADDRESS = "0x" + "ab" * 32


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _camelize(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "properties":
                out[key] = {_camel(k): _camelize(v) for k, v in value.items()}
            elif key == "required":
                out[key] = [_camel(k) for k in value]
            else:
                out[key] = _camelize(value)
        return out
    if isinstance(node, list):
        return [_camelize(item) for item in node]
    return node


def _strict(node: Any, in_all_of: bool = False) -> Any:
    if isinstance(node, dict):
        out = {k: _strict(v, in_all_of=(k == "allOf")) for k, v in node.items()}
        if ("properties" in node or "allOf" in node) and not in_all_of:
            out["unevaluatedProperties"] = False
        return out
    if isinstance(node, list):
        return [_strict(item, in_all_of) for item in node]
    return node


@cache
def raw_spec() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    return spec


@cache
def corrected_spec() -> dict[str, Any]:
    spec = copy.deepcopy(raw_spec())
    schemas = spec["components"]["schemas"]
    for name in SNAKE_SCHEMAS:
        schemas[name] = _camelize(schemas[name])
    schemas["EventID"]["properties"]["txDigest"] = {"type": "string"}
    schemas["QuiltPatchItem"]["properties"]["patch_id"] = {"type": "string"}
    for name in STRICT:
        schemas[name] = _strict(schemas[name])
    return spec


def validator(schema: str, spec: dict[str, Any] | None = None) -> Draft202012Validator:
    registry: Registry[Any] = Registry().with_resource(
        SPEC_URI, Resource(contents=spec or corrected_spec(), specification=DRAFT202012)
    )
    return Draft202012Validator(
        {"$ref": f"{SPEC_URI}#/components/schemas/{schema}"}, registry=registry
    )


def response_schema(path: str, method: str, status: int) -> str:
    """The component a real spec route declares for a status (checks the route exists)."""
    content = raw_spec()["paths"][path][method]["responses"][str(status)]["content"]
    ref: str = (
        content["application/json"]["schema"].get("$ref")
        or content["application/json"]["schema"]["items"]["$ref"]
    )
    return ref.rsplit("/", 1)[-1]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[WalrusServer]:
    with local_server(tmp_path / "walrus", max_body=1 << 20) as running:
        yield running


@pytest.fixture
def http(server: WalrusServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def store(http: httpx.Client, data: bytes, **params: str) -> dict[str, Any]:
    answer = http.put("/v1/blobs", content=data, params=params)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    body: dict[str, Any] = answer.json()
    validator(response_schema("/v1/blobs", "put", 200)).validate(body)
    return body


def blob_id_of(result: dict[str, Any]) -> str:
    if "newlyCreated" in result:
        return str(result["newlyCreated"]["blobObject"]["blobId"])
    return str(result["alreadyCertified"]["blobId"])


def assert_envelope(
    answer: httpx.Response, code: int, status: str, reason: str, domain: str = "daemon.walrus.space"
) -> None:
    assert answer.status_code == code, answer.text
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    validator("Status").validate(body)
    assert body["error"]["code"] == code and body["error"]["status"] == status
    info = [d for d in body["error"]["details"] if d["@type"] == "ErrorInfo"]
    assert info == [{"@type": "ErrorInfo", "reason": reason, "domain": domain, "metadata": {}}]


def assert_plain(answer: httpx.Response, code: int) -> None:
    assert answer.status_code == code
    assert answer.headers.get("content-type", "").startswith("text/plain")
    assert answer.text and not answer.text.startswith("{")


# ---------------------------------------------------------------- store results


def test_store_results_conform(server: WalrusServer, http: httpx.Client) -> None:
    first = store(http, b"some other string", epochs="2")
    created = first["newlyCreated"]
    blob = created["blobObject"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", blob["blobId"])
    assert re.fullmatch(r"0x[0-9a-f]{64}", blob["id"])
    assert blob["size"] == 17 and blob["deletable"] is True
    assert blob["storage"]["storageSize"] == 66_034_000  # reference section 7
    assert blob["storage"]["endEpoch"] == server.storage.epoch + 2
    assert created["resourceOperation"] == {
        "registerFromScratch": {"encodedLength": 66_034_000, "epochsAhead": 2}
    }
    assert created["cost"] == 132_300 + 63_000 and "sharedBlobObject" not in created

    again = store(http, b"some other string")
    assert again == {
        "alreadyCertified": {
            "blobId": blob["blobId"],
            "object": blob["id"],
            "endEpoch": blob["storage"]["endEpoch"],
        }
    }
    extended = store(http, b"some other string", epochs="4")["newlyCreated"]
    assert extended["resourceOperation"]["reuseAndExtend"]["epochsExtended"] == 2
    permanent = store(http, b"perm", permanent="true", epochs="3")["newlyCreated"]
    assert permanent["blobObject"]["deletable"] is False
    event = store(http, b"perm", permanent="true")["alreadyCertified"]
    assert set(event) == {"blobId", "event", "endEpoch"} and event["event"]["eventSeq"] == "0"
    assert re.fullmatch(r"[1-9A-HJ-NP-Za-km-z]{32,44}", event["event"]["txDigest"])
    shared = store(http, b"shared", share="true")["newlyCreated"]
    assert re.fullmatch(r"0x[0-9a-f]{64}", shared["sharedBlobObject"])
    store(http, b"sent", send_object_to=ADDRESS, force="true", deletable="true")
    store(http, b"", encoding_type="RS2", reuse_resources="false")

    # The spec as published (snake_case) rejects what the daemon really sends.
    with pytest.raises(ValidationError):
        validator("BlobStoreResult", raw_spec()).validate(first)


def test_chunked_upload_is_accepted(http: httpx.Client) -> None:
    def pieces() -> Iterator[bytes]:
        yield b"chunk-one,"
        yield b"chunk-two"

    answer = http.put("/v1/blobs", content=pieces())
    assert answer.status_code == 200
    blob_id = blob_id_of(answer.json())
    assert http.get(f"/v1/blobs/{blob_id}").content == b"chunk-one,chunk-two"


def test_quilt_results_conform(http: httpx.Client) -> None:
    files = {"a.txt": b"alpha", "b.bin": bytes(300)}
    metadata = '[{"identifier": "a.txt", "tags": {"lang": "en", "n": 3}}]'
    answer = http.put(
        "/v1/quilts",
        params={"epochs": "2", "quilt_version": "V1"},
        files=files,
        data={"_metadata": metadata},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    validator(response_schema("/v1/quilts", "put", 200)).validate(body)
    quilt_id = blob_id_of(body["blobStoreResult"])
    patches = {p["identifier"]: p["quiltPatchId"] for p in body["storedQuiltBlobs"]}
    assert set(patches) == {"a.txt", "b.bin"}
    for patch in patches.values():
        assert len(patch) == 50 and patch.startswith(quilt_id)

    listed = http.get(f"/v1/quilts/{quilt_id}/patches")
    assert listed.status_code == 200
    validator("QuiltPatchItem").validate(listed.json()[0])
    assert listed.json()[0] == {
        "identifier": "a.txt",
        "patch_id": patches["a.txt"],
        "tags": {"lang": "en", "n": "3"},
    }
    by_id = http.get(f"/v1/blobs/by-quilt-patch-id/{patches['b.bin']}")
    assert by_id.content == bytes(300)
    assert by_id.headers["x-quilt-patch-identifier"] == "b.bin"
    assert by_id.headers["etag"] == quilt_id
    by_name = http.get(f"/v1/blobs/by-quilt-id/{quilt_id}/a.txt")
    assert by_name.content == b"alpha"

    missing = http.get(f"/v1/blobs/by-quilt-id/{quilt_id}/c.txt")
    assert_envelope(missing, 404, "NOT_FOUND", "QUILT_PATCH_NOT_FOUND")
    empty = http.put("/v1/quilts", files={}, data={"_metadata": "[]"})
    assert_envelope(empty, 400, "INVALID_ARGUMENT", "MALFORMED_REQUEST")
    bad_name = http.put("/v1/quilts", files={"_hidden": b"x"})
    assert_envelope(bad_name, 400, "INVALID_ARGUMENT", "MALFORMED_REQUEST")


# ---------------------------------------------------------------- errors


def test_error_envelopes_conform(server: WalrusServer, http: httpx.Client) -> None:
    blob_id = blob_id_of(store(http, bytes(100)))
    assert_envelope(http.get(f"/v1/blobs/{'A' * 43}"), 404, "NOT_FOUND", "BLOB_NOT_FOUND")
    assert_envelope(
        http.get(f"/v1/blobs/{blob_id}", headers={"Range": "bytes=50-100"}),
        416,
        "RANGE_NOT_SATISFIABLE",
        "INVALID_BYTE_RANGE",
    )
    for start, length in (("0", "0"), ("99", "2"), (str(2**64 - 1), "2")):
        assert_envelope(
            http.get(f"/v1/blobs/{blob_id}/byte-range", params={"start": start, "length": length}),
            400,
            "INVALID_ARGUMENT",
            "INVALID_BYTE_RANGE",
        )
    assert_envelope(
        http.get(
            f"/v1/blobs/{blob_id}",
            params={"strict_consistency_check": "true", "skip_consistency_check": "true"},
        ),
        400,
        "INVALID_ARGUMENT",
        "INVALID_CONSISTENCY_CHECK",
    )
    assert_envelope(
        http.put("/v1/blobs", params={"permanent": "true", "deletable": "true"}, content=b"x"),
        400,
        "INVALID_ARGUMENT",
        "INVALID_BLOB_PERSISTENCE",
    )
    for epochs in ("0", "54"):
        assert_envelope(
            http.put("/v1/blobs", params={"epochs": epochs}, content=b"x"),
            500,
            "INTERNAL",
            "INTERNAL_ERROR",
            domain="global",
        )
    for status, name, reason in (
        (503, "UNAVAILABLE", "BLOB_UNAVAILABLE"),
        (504, "DEADLINE_EXCEEDED", "INSUFFICIENT_CONFIRMATIONS"),
        (451, "UNAVAILABLE_FOR_LEGAL_REASONS", "FORBIDDEN_BLOB"),
        (403, "PERMISSION_DENIED", "BLOB_TOO_LARGE"),
        (404, "NOT_FOUND", "BLOB_NOT_FOUND"),
    ):
        server.faults.set(fail=1, fail_status=status)
        assert_envelope(http.get(f"/v1/blobs/{blob_id}"), status, name, reason)
    server.faults.set(fail=1, fail_status=429)
    assert_plain(http.get(f"/v1/blobs/{blob_id}"), 429)


def test_framework_errors_are_plain(server: WalrusServer, http: httpx.Client) -> None:
    blob_id = blob_id_of(store(http, b"data"))
    assert_plain(http.get(f"/v1/blobs/{blob_id}", params={"nocache": "1"}), 400)
    assert_plain(http.put("/v1/blobs", params={"epochs": "1", "cachebust": "x"}, content=b"x"), 400)
    assert_plain(http.put("/v1/blobs", params={"epochs": "two"}, content=b"x"), 400)
    assert_plain(http.get("/v1/blobs/not-a-blob-id"), 400)
    assert_plain(http.get(f"/v1/blobs/{blob_id}/byte-range", params={"start": "0"}), 400)
    assert_plain(
        http.put("/v1/blobs", params={"share": "true", "send_object_to": ADDRESS}, content=b"x"),
        400,
    )
    assert_plain(http.put("/v1/blobs", params={"encoding_type": "rs2"}, content=b"x"), 400)
    assert_plain(http.get("/v1/blobs/by-object-id/0x12"), 400)
    too_big = http.put("/v1/blobs", content=bytes((1 << 20) + 1))
    assert_plain(too_big, 413)
    # The connection survives an early error: the body was drained.
    assert http.get("/status").text == "OK"
    unknown = http.get("/v2/blobs")
    assert unknown.status_code == 404 and unknown.content == b""
    assert http.get("/_okai/test/stats").status_code == 404  # test controls are off
    wrong_method = http.delete(f"/v1/blobs/{blob_id}")
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "GET"


# ---------------------------------------------------------------- reads


def test_read_headers(http: httpx.Client) -> None:
    data = bytes(range(256))
    blob_id = blob_id_of(store(http, data))
    plain = http.get(f"/v1/blobs/{blob_id}", headers={"Accept": "*/*"})
    assert plain.status_code == 200 and plain.content == data
    assert plain.headers["etag"] == blob_id
    assert plain.headers["x-content-type-options"] == "nosniff"
    assert plain.headers["cache-control"] == "public, max-age=86400, stale-while-revalidate=3600"
    assert "content-type" not in plain.headers
    mirrored = http.get(f"/v1/blobs/{blob_id}", headers={"Accept": "image/png"})
    assert mirrored.headers["content-type"] == "image/png"
    head = http.head(f"/v1/blobs/{blob_id}")
    assert head.status_code == 200 and head.headers["content-length"] == "256"
    assert head.content == b""
    strict = http.get(f"/v1/blobs/{blob_id}", params={"strict_consistency_check": "true"})
    assert strict.content == data


def test_ranges(http: httpx.Client) -> None:
    data = bytes(range(256))
    blob_id = blob_id_of(store(http, data))
    part = http.get(f"/v1/blobs/{blob_id}", headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == data[10:20]
    assert part.headers["content-range"] == "bytes 10-19/256"
    assert part.headers["content-length"] == "10"
    for unsupported in ("bytes=10-", "bytes=-10", "bytes=0-1,4-5", "bytes=9-3", "items=0-1"):
        answer = http.get(f"/v1/blobs/{blob_id}", headers={"Range": unsupported})
        assert answer.status_code == 416, unsupported
    sliced = http.get(f"/v1/blobs/{blob_id}/byte-range", params={"start": "250", "length": "6"})
    assert sliced.status_code == 200 and sliced.content == data[250:]
    assert sliced.headers["etag"] == f"{blob_id}-250-6"


def test_reads_by_object_id(http: httpx.Client) -> None:
    created = store(http, b"object", share="true")["newlyCreated"]
    for object_id in (created["blobObject"]["id"], created["sharedBlobObject"]):
        answer = http.get(f"/v1/blobs/by-object-id/{object_id}")
        assert answer.status_code == 200 and answer.content == b"object"
    assert_envelope(
        http.get(f"/v1/blobs/by-object-id/{ADDRESS}"), 404, "NOT_FOUND", "BLOB_NOT_FOUND"
    )


def test_expiry_follows_the_epoch(server: WalrusServer, http: httpx.Client) -> None:
    blob_id = blob_id_of(store(http, b"soon gone"))
    assert http.get(f"/v1/blobs/{blob_id}").status_code == 200
    server.storage.set_epoch(server.storage.epoch + 1)
    assert_envelope(http.get(f"/v1/blobs/{blob_id}"), 404, "NOT_FOUND", "BLOB_NOT_FOUND")
    assert store(http, b"soon gone")["newlyCreated"]  # stored anew after expiry


# ---------------------------------------------------------------- the rest


def test_status_cors_and_labels(http: httpx.Client) -> None:
    status = http.get("/status")
    assert status.status_code == 200 and status.text == "OK"
    assert status.headers["access-control-allow-origin"] == "*"
    assert status.headers["x-okai-blob-id-scheme"] == "okai-fake-sha256"
    preflight = http.options(
        "/v1/blobs",
        headers={
            "Origin": "https://verify.example",
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "content-type,authorization",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert preflight.headers["access-control-allow-methods"] == "*"
    assert preflight.headers["access-control-allow-headers"] == "*"
    assert preflight.headers["access-control-max-age"] == "86400"
    assert "origin" in preflight.headers["vary"]
    page = http.get("/v1/api")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")


def test_a_folder_keeps_its_blob_id_scheme(tmp_path: Path) -> None:
    with local_server(tmp_path / "walrus"):
        pass
    with pytest.raises(UsageError, match="okai-fake-sha256"):
        WalrusServer(tmp_path / "walrus", fake_blob_ids=False)
