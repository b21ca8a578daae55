"""The trust policy: whose claims a verification believes, and the verdict it allows.

The registry holds claims by any account (docs/trust-model.md); whether a model is
*verified* depends on which accounts the verifier trusts as trainers (model submitters),
image publishers and witnesses, and on whether a model trained on an unregistered host
(no okai image: local runs, the demo) is acceptable. `apply_policy` turns the rules'
evaluation of one claim into the final checks and verdict under a policy. The page
(web/src/policy.js) applies the same policy to the same checks.

A trust file is TOML::

    [trust]
    trainers = ["0x…"]                 # model submitters whose claims count
    publishers = ["0x…"]               # image publishers whose claims count
    witnesses = ["0x…"]                # reproduction witnesses worth naming
    allow-unregistered-host = false    # accept models trained on no registered image
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from eth_utils.address import is_address, to_checksum_address

from okai.digest import ZERO_DIGEST
from okai.errors import DocumentError, UsageError
from okai.verify.checks import (
    FAILED,
    NOT_CHECKED,
    PASSED,
    PENDING,
    Check,
    Options,
    failed,
    not_checked,
    passed,
    requested_checks,
)

FinalVerdict = Literal["verified", "unpinned", "not verified", "pending"]
"""`unpinned`: every check passed, but no trusted trainer was given, so nothing says who
made the claim that passed; never reported as plain "verified"."""

INFORMATIONAL = ("witnesses",)
"""Checks shown but never part of the verdict: nobody can fail (or pass) a model for you."""

TRUST_KEYS = ("trainers", "publishers", "witnesses", "allow-unregistered-host")


def checksum(address: str, source: str) -> str:
    """`address` checksummed, or a usage error naming where it came from."""
    if not isinstance(address, str) or not is_address(address):
        raise UsageError(f"{source}: not an EVM address: {str(address)[:60]!r}")
    return str(to_checksum_address(address))


def _accounts(values: Any, source: str) -> tuple[str, ...]:
    if not isinstance(values, list):
        raise DocumentError(source, None, "must be a list of 0x addresses")
    return tuple(dict.fromkeys(checksum(v, source) for v in values))


@dataclass(frozen=True)
class TrustPolicy:
    """The accounts a verification trusts, and whether unregistered hosts are acceptable."""

    trainers: tuple[str, ...] = ()
    publishers: tuple[str, ...] = ()
    witnesses: tuple[str, ...] = ()
    allow_unregistered_host: bool = False
    sources: tuple[str, ...] = field(default=())
    """Where the policy came from (trust files, the command line), for the report."""

    @property
    def pinned(self) -> bool:
        """Whether any trainer is trusted; without one, no claim can be "verified"."""
        return bool(self.trainers)

    def trusts(self, role: Literal["trainers", "publishers", "witnesses"], account: str) -> bool:
        return account.lower() in (a.lower() for a in getattr(self, role))

    @classmethod
    def load(cls, path: Path) -> TrustPolicy:
        """A policy from a trust file (see the module docstring)."""
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise UsageError(f"cannot read the trust file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise DocumentError(path, None, f"not valid TOML: {exc}") from None
        table = document.get("trust")
        if not isinstance(table, dict) or set(document) != {"trust"}:
            raise DocumentError(path, None, "want exactly one [trust] table")
        unknown = sorted(set(table) - set(TRUST_KEYS))
        if unknown:
            raise DocumentError(path, f"trust.{unknown[0]}", f"unknown key; known: {TRUST_KEYS}")
        allow = table.get("allow-unregistered-host", False)
        if not isinstance(allow, bool):
            raise DocumentError(path, "trust.allow-unregistered-host", "must be true or false")
        return cls(
            trainers=_accounts(table.get("trainers", []), f"{path}: trust.trainers"),
            publishers=_accounts(table.get("publishers", []), f"{path}: trust.publishers"),
            witnesses=_accounts(table.get("witnesses", []), f"{path}: trust.witnesses"),
            allow_unregistered_host=allow,
            sources=(str(path),),
        )

    def merge(self, other: TrustPolicy) -> TrustPolicy:
        """This policy with `other`'s accounts added (files, then command-line options)."""
        return TrustPolicy(
            trainers=tuple(dict.fromkeys(self.trainers + other.trainers)),
            publishers=tuple(dict.fromkeys(self.publishers + other.publishers)),
            witnesses=tuple(dict.fromkeys(self.witnesses + other.witnesses)),
            allow_unregistered_host=self.allow_unregistered_host or other.allow_unregistered_host,
            sources=self.sources + other.sources,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "pinned": self.pinned,
            "trainers": list(self.trainers),
            "publishers": list(self.publishers),
            "witnesses": list(self.witnesses),
            "allowUnregisteredHost": self.allow_unregistered_host,
            "sources": list(self.sources),
        }

    def describe(self) -> str:
        """One line for the human report."""
        if not self.pinned:
            return "none: no trainer is trusted, so no claim can be verified (--trainer)"
        parts = [f"trainers {', '.join(self.trainers)}"]
        parts.append(f"publishers {', '.join(self.publishers) or 'none'}")
        if self.witnesses:
            parts.append(f"witnesses {', '.join(self.witnesses)}")
        if self.allow_unregistered_host:
            parts.append("unregistered hosts accepted")
        return "; ".join(parts)


@dataclass(frozen=True)
class ClaimContext:
    """What the registry said beyond the one claim the rules judged."""

    submitters: tuple[str, ...]
    """A page of the accounts that recorded the model (oldest first)."""
    submitter_total: int
    image_publishers: tuple[str, ...] = ()
    """The publisher of the image claim judged first, then the others read."""
    witness_count: int = 0
    """Every witness of the judged claim, trusted or not."""


def apply_policy(
    checks: dict[str, Check],
    options: Options,
    policy: TrustPolicy,
    context: ClaimContext,
    *,
    submitter: str | None,
    image_digest: str | None,
    witnesses: tuple[str, ...],
) -> tuple[dict[str, Check], FinalVerdict]:
    """The checks of the judged claim under `policy`, and the verdict it allows.

    `submitter` is the judged claim's account (None: no claim judged), `image_digest` its
    image (the zero digest for an unregistered host), `witnesses` the trusted witnesses (or,
    unpinned, a page of all) that attested it.
    """
    out = dict(checks)
    others = [s for s in context.submitters if submitter is None or s.lower() != submitter.lower()]
    record = out["record.exists"]
    if submitter is None and record.status == FAILED and not record.unavailable:
        if policy.pinned and context.submitter_total:
            out["record.exists"] = failed(
                "record.exists",
                "untrusted-submitter",
                f"no claim by a trusted trainer ({', '.join(policy.trainers)}); "
                f"{_ignored(others, context.submitter_total)}",
            )
    elif submitter is not None and record.status == PASSED:
        whose = "a trusted trainer" if policy.pinned else "an account nobody pinned"
        extra = f"; {_ignored(others, context.submitter_total - 1)}" if others else ""
        out["record.exists"] = passed(
            "record.exists", record.code, f"recorded by {submitter}, {whose}{extra}"
        )

    image = out["image.registered"]
    forged = image.code == "forged-manifest"  # the policy never hides a forged manifest
    if image_digest == ZERO_DIGEST and policy.allow_unregistered_host:
        out["image.registered"] = passed(
            "image.registered",
            "unregistered-accepted",
            "unregistered host, accepted by the trust policy: the software environment "
            "(image, system) was not attested",
        )
    elif image_digest not in (None, ZERO_DIGEST) and image.status == FAILED and not forged:
        if policy.pinned and not policy.publishers:
            out["image.registered"] = failed(
                "image.registered",
                "no-trusted-publisher",
                "no image publisher is trusted (--publisher)",
            )
        elif policy.pinned and not context.image_publishers:
            out["image.registered"] = failed(
                "image.registered",
                "untrusted-publisher",
                f"image {image_digest} has no claim by a trusted publisher "
                f"({', '.join(policy.publishers)})",
            )
    elif image.status == PASSED and context.image_publishers:
        whose = "trusted publisher" if policy.pinned else "publisher nobody pinned"
        out["image.registered"] = passed(
            "image.registered",
            image.code,
            f"{image.reason} (claim of {whose} {context.image_publishers[0]})",
        )

    out["witnesses"] = _witnesses(out["witnesses"], policy, context, witnesses)
    return out, final_verdict(out, options, policy)


def _ignored(accounts: list[str], total: int) -> str:
    if total <= 0:
        return "no other claims"
    shown = ", ".join(accounts[:5]) + (", …" if total > len(accounts[:5]) else "")
    return f"{total} claim{'' if total == 1 else 's'} by other accounts shown and ignored: {shown}"


def _witnesses(
    check: Check, policy: TrustPolicy, context: ClaimContext, seen: tuple[str, ...]
) -> Check:
    if check.status == NOT_CHECKED:
        return check
    total = context.witness_count
    if total == 0:
        return not_checked("witnesses", "none", "none: nobody has recorded a reproduction")
    if policy.witnesses:
        if not seen:
            return not_checked(
                "witnesses",
                "untrusted-witnesses",
                f"none of the trusted witnesses; {total} other account"
                f"{'' if total == 1 else 's'} witnessed it (ignored)",
            )
        return passed(
            "witnesses",
            "trusted-witnesses",
            f"trusted witnesses reproduced it bit for bit: {', '.join(seen)} "
            f"({total} witness{'' if total == 1 else 'es'} in all)",
        )
    return not_checked(
        "witnesses",
        "untrusted-witnesses",
        f"{total} account{'' if total == 1 else 's'} recorded a reproduction, none of them "
        "trusted (--witness)",
    )


def final_verdict(checks: dict[str, Check], options: Options, policy: TrustPolicy) -> FinalVerdict:
    """'verified' only if every requested check passed and a trainer was trusted;
    'unpinned' when every check passed but none was; witnesses never count."""
    statuses = [
        checks[check_id].status
        for check_id in requested_checks(options)
        if check_id not in INFORMATIONAL
    ]
    if FAILED in statuses:
        return "not verified"
    if PENDING in statuses:
        return "pending"
    if not all(status == PASSED for status in statuses):
        return "not verified"
    return "verified" if policy.pinned else "unpinned"
