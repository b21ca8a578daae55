"""The checks of docs/verification.md: their ids, questions, statuses and the verdict.

The verification page (web/src/rules.js) uses the same ids and the same verdict rule;
tests/vectors/verify pins both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["passed", "failed", "not checked", "pending"]
PASSED: Status = "passed"
FAILED: Status = "failed"
NOT_CHECKED: Status = "not checked"
PENDING: Status = "pending"
"""Only while the driver still has something to read; never in a final report."""

CHECKS: tuple[tuple[str, str], ...] = (
    ("model.digest", "What are we verifying?"),
    ("record.exists", "Is this model recorded?"),
    ("attestation.digest", "Is the attestation the recorded one?"),
    ("attestation.statement", "Is it a well-formed statement about this model?"),
    ("attestation.matches-record", "Does it name the recorded inputs?"),
    ("image.registered", "Is the image a registered one?"),
    ("datasets.manifests", "Is the data the recorded data (manifests)?"),
    ("datasets.shards", "Is the data the recorded data (bytes)?"),
    ("image.bytes", "Are the image bytes the registered ones?"),
    ("reproduce", "Does training reproduce the model?"),
    ("witnesses", "Who else re-trained it bit for bit?"),
)
CHECK_IDS: tuple[str, ...] = tuple(check_id for check_id, _ in CHECKS)
QUESTIONS: dict[str, str] = dict(CHECKS)

Verdict = Literal["verified", "not verified", "pending"]


@dataclass(frozen=True)
class Options:
    """Which optional checks were asked for."""

    deep: bool = False
    """Re-download every dataset manifest and shard."""
    image: bool = False
    """With `deep`: re-download the image too."""
    reproduce: bool = False
    """Re-run the deterministic job and compare the model digest."""


@dataclass(frozen=True)
class Check:
    """One check's outcome; `reason` is always set, also for a pass.

    `code` names the rule's branch (`not-recorded`, `malformed`, ...): stable, the same
    in `okai verify` and on the page for the same input, unlike the wording of `reason`.
    """

    id: str
    status: Status
    code: str
    reason: str
    unavailable: bool = False
    """Failed because something could not be read (an endpoint), not because bytes differed."""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "question": QUESTIONS[self.id],
            "status": self.status,
            "code": self.code,
            "reason": self.reason,
        }


def passed(check_id: str, code: str, reason: str) -> Check:
    return Check(check_id, PASSED, code, reason)


def failed(check_id: str, code: str, reason: str, *, unavailable: bool = False) -> Check:
    return Check(check_id, FAILED, code, reason, unavailable)


def not_checked(check_id: str, code: str, reason: str) -> Check:
    return Check(check_id, NOT_CHECKED, code, reason)


def pending(check_id: str, code: str, reason: str) -> Check:
    return Check(check_id, PENDING, code, reason)


def requested_checks(options: Options) -> tuple[str, ...]:
    """The checks a run asked for: the always ones, plus those its options turn on."""

    def wanted(check_id: str) -> bool:
        if check_id in ("datasets.manifests", "datasets.shards"):
            return options.deep
        if check_id == "image.bytes":
            return options.deep and options.image
        if check_id == "reproduce":
            return options.reproduce
        return True

    return tuple(check_id for check_id in CHECK_IDS if wanted(check_id))


def verdict(checks: dict[str, Check], options: Options) -> Verdict:
    """'verified' only if every requested check passed; 'not checked' never counts."""
    statuses = [checks[check_id].status for check_id in requested_checks(options)]
    if FAILED in statuses:
        return "not verified"
    if PENDING in statuses:
        return "pending"
    return "verified" if all(s == PASSED for s in statuses) else "not verified"
