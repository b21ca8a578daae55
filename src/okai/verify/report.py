"""The result of `okai verify`: every check with its reason, the facts read, the exit code.

`VerifyReport.to_json()` is the `--json` document (schema `okai.verify-report/v2`);
its keys are stable, and tests pin them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from okai.chain.reader import RegistryReader
from okai.chain.records import Transaction
from okai.errors import ExitCode
from okai.verify.checks import CHECK_IDS, FAILED, Check, Options, requested_checks
from okai.verify.observations import NetworkId
from okai.verify.policy import ClaimContext, FinalVerdict, TrustPolicy
from okai.verify.rules import Attested, DatasetFact, Evaluation, ImageManifestFact

REPORT_SCHEMA = "okai.verify-report/v2"

WitnessStatus = Literal["recorded", "already witnessed", "not recorded"]


@dataclass(frozen=True)
class WitnessOutcome:
    """What `--attest` did: recorded this account's witness, found it there, or did not."""

    status: WitnessStatus
    reason: str
    transaction: Transaction | None = None

    def to_json(self) -> dict[str, Any]:
        tx = self.transaction
        return {
            "status": self.status,
            "reason": self.reason,
            "txHash": None if tx is None else tx.tx_hash,
            "block": None if tx is None else tx.block,
        }


@dataclass(frozen=True)
class Origin:
    """Where the answer came from: the chain, the registry and the RPC endpoint asked."""

    chain_id: int
    registry: str | None
    rpc: str
    """The RPC URL with any credentials redacted."""
    overridden: tuple[str, ...] = ()
    """Settings of a public network that local files changed, by explicit permission."""

    @classmethod
    def of(cls, registry: RegistryReader, overridden: tuple[str, ...] = ()) -> Origin:
        return cls(registry.network.chain_id, registry.address, registry.public_url, overridden)

    @property
    def rpc_host(self) -> str:
        return urlsplit(self.rpc).netloc or self.rpc

    def to_json(self) -> dict[str, Any]:
        return {
            "chainId": self.chain_id,
            "registry": self.registry,
            "rpc": self.rpc,
            "rpcHost": self.rpc_host,
            "overridden": list(self.overridden),
        }


@dataclass(frozen=True)
class ClaimReport:
    """One account's claim, judged: the rules' evaluation, its checks under the policy."""

    evaluation: Evaluation
    checks: dict[str, Check]
    verdict: FinalVerdict
    context: ClaimContext
    witness: WitnessOutcome | None = None

    @property
    def submitter(self) -> str | None:
        record = self.evaluation.facts.record
        return None if record is None else record.submitter

    def to_json(self, options: Options) -> dict[str, Any]:
        return {
            "submitter": self.submitter,
            "verdict": self.verdict,
            "failed": [c.id for c in _failures(self.checks, options)],
            "checks": [self.checks[check_id].to_json() for check_id in CHECK_IDS],
        }


_RANK: dict[str, int] = {"verified": 0, "unpinned": 1, "pending": 2, "not verified": 3}


def _failures(checks: dict[str, Check], options: Options) -> list[Check]:
    requested = requested_checks(options)
    return [checks[i] for i in CHECK_IDS if i in requested and checks[i].status == FAILED]


@dataclass(frozen=True)
class VerifyReport:
    """One verification: what was verified, where, under which policy, and what came out.

    `claims` holds every claim judged (several only without a trusted trainer, or with
    several trusted trainers); the main one is the best judged, and sets the verdict.
    """

    target: str
    network: NetworkId
    options: Options
    claims: list[ClaimReport]
    policy: TrustPolicy
    origin: Origin

    @property
    def main(self) -> ClaimReport:
        return min(self.claims, key=lambda claim: _RANK[claim.verdict])

    @property
    def evaluation(self) -> Evaluation:
        return self.main.evaluation

    @property
    def witness(self) -> WitnessOutcome | None:
        return self.main.witness

    @property
    def checks(self) -> list[Check]:
        return [self.main.checks[check_id] for check_id in CHECK_IDS]

    @property
    def verdict(self) -> FinalVerdict:
        return self.main.verdict

    @property
    def failures(self) -> list[Check]:
        """The requested checks of the main claim that failed."""
        return _failures(self.main.checks, self.options)

    @property
    def exit_code(self) -> ExitCode:
        """0 verified; 4 when every check passed but no trainer was trusted; 3 when bytes
        or records disagree, or a requested check could not run; 1 when the only failures
        are endpoints that could not be read (try again)."""
        if self.verdict == "verified":
            return ExitCode.OK
        if self.verdict == "unpinned":
            return ExitCode.NOT_PINNED
        failures = self.failures
        if failures and all(check.unavailable for check in failures):
            return ExitCode.OPERATIONAL_FAILURE
        return ExitCode.VERIFICATION_FAILED

    def to_json(self) -> dict[str, Any]:
        facts = self.evaluation.facts
        record = facts.record
        context = self.main.context
        return {
            "schema": REPORT_SCHEMA,
            "target": self.target,
            "modelDigest": facts.model_digest,
            "network": {"name": self.network.name, "chainId": self.network.chain_id},
            "source": self.origin.to_json(),
            "policy": self.policy.to_json(),
            "options": {
                "deep": self.options.deep,
                "image": self.options.image,
                "reproduce": self.options.reproduce,
            },
            "verdict": self.verdict,
            "checks": [check.to_json() for check in self.checks],
            "claims": [claim.to_json(self.options) for claim in self.claims],
            "submitters": {"page": list(context.submitters), "total": context.submitter_total},
            "record": None if record is None else record.to_json(),
            "image": _image_json(self.evaluation),
            "attestation": None if facts.attested is None else _attested_json(facts.attested),
            "datasets": [_dataset_json(d) for d in facts.datasets],
            "witnesses": list(facts.witnesses) if record is not None else [],
            "witnessCount": context.witness_count if record is not None else 0,
            "witness": None if self.witness is None else self.witness.to_json(),
        }


def _image_json(evaluation: Evaluation) -> dict[str, Any] | None:
    image = evaluation.facts.image
    if image is None:
        return None
    return {
        **image.to_json(),
        "manifest": _image_manifest_json(evaluation.facts.image_manifest),
    }


def _image_manifest_json(fact: ImageManifestFact | None) -> dict[str, Any] | None:
    if fact is None or fact.manifest is None or fact.forged:
        return None
    manifest = fact.manifest
    return {
        "fileName": manifest.file_name,
        "format": manifest.format,
        "size": manifest.size,
        "sha256": manifest.sha256,
        "blobId": manifest.blob_id,
        "systemToplevel": manifest.nixos.system_toplevel,
        "nixpkgsRevision": manifest.nixos.nixpkgs_revision,
        "flakeRevision": manifest.nixos.flake_revision,
        "python": None if manifest.python is None else manifest.python.to_json(),
        "describesRegisteredImage": fact.consistent,
    }


def _attested_json(attested: Attested) -> dict[str, Any]:
    attestation = attested.attestation
    metadata = attestation.statement.predicate.run_details.metadata
    internal = attestation.statement.predicate.build_definition.internal_parameters
    job = attested.job
    return {
        "runId": attestation.run_id,
        "builder": attestation.builder_id,
        "modelFile": attestation.model_file,
        "startedOn": metadata.started_on.isoformat(),
        "finishedOn": metadata.finished_on.isoformat(),
        "job": {
            "name": job.name,
            "digest": attested.job_digest,
            "model": job.model.to_json(),
            "seed": job.seed,
            "deterministic": job.deterministic,
            "nodes": job.nodes,
            "procsPerNode": job.procs_per_node,
            "hyperparameters": dict(job.hyperparameters),
            # DDP, the default, is left out as in the job document itself.
            **({} if job.sync is None else {"sync": job.sync.to_json()}),
        },
        "codeDigest": attestation.code_digest,
        "imageDigest": attestation.image_digest,
        "host": attestation.host_identity,
        "libraries": dict(internal.libraries),
        "metrics": attestation.metrics,
    }


def _dataset_json(dataset: DatasetFact) -> dict[str, Any]:
    manifest = dataset.manifest
    return {
        "index": dataset.index,
        "kind": dataset.kind,
        "locator": dataset.locator,
        "digest": dataset.digest,
        "manifest": None
        if manifest is None
        else {
            "name": manifest.name,
            "files": manifest.totals.files,
            "shards": manifest.totals.shards,
            "bytes": manifest.totals.bytes,
        },
    }
