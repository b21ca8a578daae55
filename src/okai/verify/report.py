"""The result of `okai verify`: every check with its reason, the facts read, the exit code.

`VerifyReport.to_json()` is the `--json` document (schema `okai.verify-report/v1`);
its keys are stable, and tests pin them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from okai.chain.records import Transaction
from okai.errors import ExitCode
from okai.verify.checks import CHECK_IDS, FAILED, Check, Options, requested_checks
from okai.verify.observations import NetworkId
from okai.verify.rules import Attested, DatasetFact, Evaluation, ImageManifestFact

REPORT_SCHEMA = "okai.verify-report/v1"

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
class VerifyReport:
    """One verification: what was verified, where, how, and what came out."""

    target: str
    network: NetworkId
    options: Options
    evaluation: Evaluation
    witness: WitnessOutcome | None = None

    @property
    def checks(self) -> list[Check]:
        return [self.evaluation.checks[check_id] for check_id in CHECK_IDS]

    @property
    def verdict(self) -> str:
        return self.evaluation.verdict

    @property
    def failures(self) -> list[Check]:
        """The requested checks that failed."""
        requested = requested_checks(self.options)
        return [c for c in self.checks if c.id in requested and c.status == FAILED]

    @property
    def exit_code(self) -> ExitCode:
        """0 verified; 3 when bytes or records disagree, or a requested check could not run;
        1 when the only failures are endpoints that could not be read (try again)."""
        if self.verdict == "verified":
            return ExitCode.OK
        failures = self.failures
        if failures and all(check.unavailable for check in failures):
            return ExitCode.OPERATIONAL_FAILURE
        return ExitCode.VERIFICATION_FAILED

    def to_json(self) -> dict[str, Any]:
        facts = self.evaluation.facts
        record = facts.record
        return {
            "schema": REPORT_SCHEMA,
            "target": self.target,
            "modelDigest": facts.model_digest,
            "network": {"name": self.network.name, "chainId": self.network.chain_id},
            "options": {
                "deep": self.options.deep,
                "image": self.options.image,
                "reproduce": self.options.reproduce,
            },
            "verdict": self.verdict,
            "checks": [check.to_json() for check in self.checks],
            "record": None if record is None else record.to_json(),
            "image": _image_json(self.evaluation),
            "attestation": None if facts.attested is None else _attested_json(facts.attested),
            "datasets": [_dataset_json(d) for d in facts.datasets],
            "witnesses": list(facts.witnesses) if record is not None else [],
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
    if fact is None or fact.manifest is None:
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
