"""Typed results of the Walrus publisher and aggregator, parsed from the camelCase wire.

The OpenAPI files show store results in snake_case; the servers send camelCase
at every level (reference/walrus.md section 3), which is what these models
read. Unknown fields are ignored so that a newer server does not break us.

A store answers 200 with exactly one of `newlyCreated`, `alreadyCertified`
(both success), `markedInvalid` or `error` (both failure, raised as
`StoreFailed`). Non-2xx answers carry a different `error` envelope, handled
by `error_envelope`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from okai.digest import Digest
from okai.documents import validation_problem
from okai.inert import inert
from okai.walrus.errors import StoreFailed, WalrusProtocolError


class _Wire(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )


class StorageResource(_Wire):
    """The Sui storage object that pays for a blob's space."""

    id: str
    start_epoch: int
    end_epoch: int
    storage_size: int


class BlobObject(_Wire):
    """The Sui Blob object of a stored blob."""

    id: str
    registered_epoch: int
    blob_id: str
    size: int
    encoding_type: str
    certified_epoch: int | None = None
    deletable: bool
    storage: StorageResource


class ResourceOperation(_Wire):
    """How storage was obtained: `kind` is the variant name, e.g. `registerFromScratch`."""

    kind: str
    encoded_length: int
    epochs_ahead: int | None = None
    epochs_extended: int | None = None


class EventId(_Wire):
    """A Sui event: the certification of an already certified blob."""

    tx_digest: str
    event_seq: str


class NewlyCreated(_Wire):
    """The publisher created a new Blob object (and paid `cost` FROST for it)."""

    blob_object: BlobObject
    resource_operation: ResourceOperation
    cost: int
    shared_blob_object: str | None = None


class AlreadyCertified(_Wire):
    """The blob was already certified long enough: `event` or `object` identifies how."""

    blob_id: str
    end_epoch: int
    event: EventId | None = None
    object_id: str | None = Field(default=None, alias="object")


@dataclass(frozen=True)
class StoreResult:
    """A successful store: what the publisher said, plus what okai measured while sending."""

    blob_id: str
    end_epoch: int
    outcome: NewlyCreated | AlreadyCertified
    sha256: Digest
    size: int
    blob_id_verified: bool = False
    """True when okai recomputed the blob ID from the bytes it sent and it matched."""

    @property
    def status(self) -> Literal["newlyCreated", "alreadyCertified"]:
        return "newlyCreated" if isinstance(self.outcome, NewlyCreated) else "alreadyCertified"

    def to_json(self) -> dict[str, Any]:
        return {
            "blobId": self.blob_id,
            "sha256": str(self.sha256),
            "size": self.size,
            "endEpoch": self.end_epoch,
            "status": self.status,
            "blobIdVerified": self.blob_id_verified,
        }


class StoredQuiltPatch(_Wire):
    """One file of a stored quilt and its patch ID."""

    identifier: str
    quilt_patch_id: str
    range: tuple[int, int] | None = None


@dataclass(frozen=True)
class QuiltStoreResult:
    """A stored quilt: its ID (the quilt blob's ID), its outcome, and one entry per file."""

    quilt_id: str
    end_epoch: int
    outcome: NewlyCreated | AlreadyCertified
    patches: tuple[StoredQuiltPatch, ...]

    def patch_id(self, identifier: str) -> str:
        for patch in self.patches:
            if patch.identifier == identifier:
                return patch.quilt_patch_id
        raise KeyError(identifier)


class QuiltPatchItem(BaseModel):
    """An entry of `GET /v1/quilts/{id}/patches`; this struct is snake_case on the wire."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    identifier: str
    patch_id: str
    tags: dict[str, str] = Field(default_factory=dict)


def _one_key(body: Any, where: str) -> tuple[str, Any]:
    if not isinstance(body, dict) or len(body) != 1:
        raise WalrusProtocolError(
            f"{where}: expected an object with one key, got {str(body)[:200]}"
        )
    ((key, value),) = body.items()
    return key, value


def parse_resource_operation(value: Any, where: str) -> dict[str, Any]:
    kind, fields = _one_key(value, f"{where}: resourceOperation")
    if not isinstance(fields, dict):
        raise WalrusProtocolError(f"{where}: resourceOperation.{kind} is not an object")
    return {"kind": kind, **fields}


def parse_store_outcome(body: Any, where: str) -> NewlyCreated | AlreadyCertified:
    """The outcome of a 200 store answer; raises `StoreFailed` for the failure shapes."""
    kind, value = _one_key(body, where)
    try:
        if kind == "newlyCreated":
            fields = dict(value)
            fields["resourceOperation"] = parse_resource_operation(
                fields.get("resourceOperation"), where
            )
            return NewlyCreated.model_validate(fields)
        if kind == "alreadyCertified":
            certified = AlreadyCertified.model_validate(value)
            if (certified.event is None) == (certified.object_id is None):
                raise WalrusProtocolError(
                    f"{where}: alreadyCertified must carry exactly one of event and object"
                )
            return certified
    except (ValidationError, TypeError, ValueError) as exc:
        raise WalrusProtocolError(f"{where}: malformed {kind} result: {_detail(exc)}") from exc
    if kind == "markedInvalid" and isinstance(value, dict):
        raise StoreFailed(f"{where}: the blob {value.get('blobId')} is marked invalid on Walrus")
    if kind == "error" and isinstance(value, dict):
        raise StoreFailed(
            f"{where}: the store failed during {value.get('failurePhase', '?')}: "
            f"{value.get('errorMsg', 'no message')}",
            hint="retry later, or try another publisher",
        )
    raise WalrusProtocolError(f"{where}: unknown store result {kind!r}")


def _detail(exc: Exception) -> str:
    """What was wrong with an answer, in one line: a publisher's strings shown inert."""
    if isinstance(exc, ValidationError):
        fields, problem = validation_problem(exc)
        return f"field '{inert('.'.join(fields))}': {problem}" if fields else problem
    return inert(exc)


def outcome_blob_id(outcome: NewlyCreated | AlreadyCertified) -> str:
    if isinstance(outcome, NewlyCreated):
        return outcome.blob_object.blob_id
    return outcome.blob_id


def outcome_end_epoch(outcome: NewlyCreated | AlreadyCertified) -> int:
    if isinstance(outcome, NewlyCreated):
        return outcome.blob_object.storage.end_epoch
    return outcome.end_epoch


def parse_quilt_store_result(body: Any, where: str) -> QuiltStoreResult:
    if not isinstance(body, dict) or "blobStoreResult" not in body:
        raise WalrusProtocolError(f"{where}: not a quilt store result: {str(body)[:200]}")
    outcome = parse_store_outcome(body["blobStoreResult"], where)
    try:
        patches = tuple(
            StoredQuiltPatch.model_validate(item) for item in body.get("storedQuiltBlobs", [])
        )
    except (ValidationError, TypeError) as exc:
        raise WalrusProtocolError(f"{where}: malformed storedQuiltBlobs: {_detail(exc)}") from exc
    return QuiltStoreResult(
        quilt_id=outcome_blob_id(outcome),
        end_epoch=outcome_end_epoch(outcome),
        outcome=outcome,
        patches=patches,
    )


@dataclass(frozen=True)
class ApiError:
    """The JSON error envelope of a non-2xx answer (AIP-193 style)."""

    code: int
    status: str
    message: str
    reason: str | None
    domain: str | None


def error_envelope(body: Any) -> ApiError | None:
    """The envelope's fields, or None when the body is not one (plain-text errors)."""
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return None
    error = body["error"]
    if "code" not in error or "message" not in error:
        return None
    reason = domain = None
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and detail.get("@type") == "ErrorInfo":
            reason, domain = detail.get("reason"), detail.get("domain")
            break
    return ApiError(
        code=int(error["code"]),
        status=str(error.get("status", "")),
        message=str(error["message"]),
        reason=reason,
        domain=domain,
    )
