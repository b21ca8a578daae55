"""`okai record`: publish a finished run's model and attestation, and record them on chain.

Three steps, each done once: store the model file on Walrus, store the attestation
(its canonical bytes, so the blob's SHA-256 is the attestation digest), send the
registry's `recordModel` transaction. A journal in the run directory (`record.json`)
says which steps are done, per network, so a re-run after any failure (Walrus or the
RPC down, the process killed between steps) finishes the job without storing or
sending anything twice. The registry is write-once: a model someone else (or another
run) recorded is refused before anything is stored.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from okai.atomic import write_atomically
from okai.chain.client import RegistryClient
from okai.chain.errors import (
    ImageNotRegistered,
    ModelExists,
    ModelNotRecorded,
    TransactionDropped,
)
from okai.chain.records import ModelRecord, Transaction
from okai.digest import ZERO_DIGEST, Digest
from okai.documents import read_document
from okai.errors import ConfigError, DocumentError, IntegrityError, OkaiError, UsageError
from okai.provenance.attestation import Attestation, build_attestation
from okai.provenance.receipt import Receipt
from okai.walrus.client import WalrusClient
from okai.walrus.results import StoreResult

RECEIPT_FILE = "receipt.json"
JOB_FILE = "job.json"
JOURNAL_FILE = "record.json"
JOURNAL_SCHEMA = "okai.record-journal/v1"
DEFAULT_EPOCHS = 53
"""Walrus's maximum (about two years on Mainnet): a recorded model should stay readable."""

Advance = Callable[[int], None]
Transfer = Callable[[str, int | None], AbstractContextManager[Advance]]


class AlreadyRecorded(UsageError):
    """This account recorded the model digest already, with another run's attestation."""

    def __init__(self, record: ModelRecord) -> None:
        self.record = record
        when = datetime.fromtimestamp(record.recorded_at, UTC).isoformat().replace("+00:00", "Z")
        super().__init__(
            f"{record.submitter} already recorded model {record.model_digest} at {when}, "
            f"with attestation {record.attestation_digest}; each account's claim is write-once",
            hint="`okai verify MODEL --trainer ACCOUNT` shows that claim; other accounts' "
            "claims never block yours, so record from another account, or witness a "
            "reproduction with `okai verify MODEL --reproduce --attest`",
        )


# ---------------------------------------------------------------- the run directory


@dataclass(frozen=True)
class Run:
    """A finished run directory: its receipt, model file and the attestation built from it."""

    directory: Path
    receipt: Receipt
    model_path: Path
    attestation: Attestation

    @property
    def model_digest(self) -> Digest:
        return Digest(self.receipt.model_sha256)


def load_run(directory: Path) -> Run:
    """Read and check a run directory: the model file must still be the one trained."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(f"{directory} is not a directory", hint="pass the run directory")
    receipt_path = directory / RECEIPT_FILE
    if not receipt_path.is_file():
        raise UsageError(
            f"{directory} has no {RECEIPT_FILE}: not a finished training run",
            hint="training writes the receipt last; record a run that completed",
        )
    receipt = Receipt.load(receipt_path)
    model_path = directory / receipt.model_file
    if not model_path.is_file():
        raise DocumentError(receipt_path, "modelFile", f"{model_path} does not exist")
    actual = Digest.of_file(model_path)
    if actual != receipt.model_sha256:
        raise IntegrityError(f"model file {model_path}", receipt.model_sha256, actual)
    job_path = directory / JOB_FILE
    if job_path.is_file():
        job_digest = Digest.of_json(read_document(job_path, "json"))
        if job_digest != receipt.job_sha256:
            raise IntegrityError(f"job file {job_path}", receipt.job_sha256, job_digest)
    return Run(directory, receipt, model_path, build_attestation(receipt))


# ---------------------------------------------------------------- the journal


class Journal:
    """`record.json`: which steps are done, per network; rewritten atomically after each."""

    def __init__(self, path: Path, run: Run) -> None:
        self.path = path
        self.model_digest = run.model_digest
        self.attestation_digest = run.attestation.digest()
        self.targets: dict[str, dict[str, Any]] = {}
        if path.exists():
            self._load()

    def _load(self) -> None:
        data = read_document(self.path, "json")
        if data.get("schema") != JOURNAL_SCHEMA:
            raise DocumentError(self.path, "schema", f"expected {JOURNAL_SCHEMA}")
        mine = (self.model_digest, self.attestation_digest)
        if (data.get("modelDigest"), data.get("attestationDigest")) != mine:
            raise UsageError(
                f"{self.path} records another model or attestation than this run directory "
                "holds now (the model or receipt changed after `okai record` began)",
                hint=f"move {self.path.name} away to record the run as it is now",
            )
        targets = data.get("targets")
        if not isinstance(targets, dict):
            raise DocumentError(self.path, "targets", "expected an object")
        self.targets = targets

    def target(self, key: str, network: str) -> dict[str, Any]:
        return self.targets.setdefault(key, {"network": network})

    def save(self) -> None:
        data = {
            "schema": JOURNAL_SCHEMA,
            "modelDigest": self.model_digest,
            "attestationDigest": self.attestation_digest,
            "targets": self.targets,
        }
        text = json.dumps(data, indent=2, sort_keys=True) + "\n"
        write_atomically(self.path, text.encode("utf-8"), mode=0o600)


# ---------------------------------------------------------------- the result


@dataclass(frozen=True)
class RecordResult:
    """What `okai record` did, and the record as the registry now holds it."""

    status: Literal["recorded", "already recorded"]
    """'already recorded': this run's own earlier `okai record` had completed."""
    run: Run
    network: str
    chain_id: int
    registry: str
    model_blob: dict[str, Any]
    attestation_blob: dict[str, Any]
    record: ModelRecord
    transaction: dict[str, Any] | None
    explorer: str | None
    journal: Path

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "runDir": str(self.run.directory),
            "network": self.network,
            "chainId": self.chain_id,
            "registry": self.registry,
            "modelDigest": self.run.model_digest,
            "model": self.model_blob,
            "attestation": {"digest": self.run.attestation.digest(), **self.attestation_blob},
            "record": self.record.to_json(),
            "transaction": self.transaction,
            "explorer": self.explorer,
            "journal": str(self.journal),
        }


# ---------------------------------------------------------------- recording


class Recorder:
    """Records one run on one network; every step is journalled as soon as it is done."""

    def __init__(
        self,
        run: Run,
        *,
        registry: RegistryClient,
        walrus: WalrusClient,
        epochs: int = DEFAULT_EPOCHS,
        transfer: Transfer | None = None,
        on_event: Callable[[str], None] = lambda message: None,
    ) -> None:
        if registry.signer is None:
            raise ConfigError("recording sends a transaction but no signing key was loaded")
        if registry.address is None:
            raise ConfigError(
                f"no registry address for network {registry.network.name}",
                hint="run `okai chain deploy` (or `okai dev up`), or set OKAI_REGISTRY",
            )
        self.run = run
        self.registry = registry
        self.walrus = walrus
        self.epochs = epochs
        self.transfer: Transfer = transfer or (lambda description, total: nullcontext(_ignore))
        self.on_event = on_event
        self.signer = registry.signer.address
        self.journal = Journal(run.directory / JOURNAL_FILE, run)
        network = registry.network
        key = f"{network.name}:{network.chain_id}:{registry.address.lower()}"
        self.target = self.journal.target(key, network.name)

    def record(self) -> RecordResult:
        """Do what is left to do, then read the record back from the registry."""
        run = self.run
        existing = self._existing()
        if existing is not None:
            return self._finish(existing, "already recorded")
        image = run.receipt.chain_image_digest()
        if image != ZERO_DIGEST and not self.registry.is_registered(image):  # by anyone
            raise ImageNotRegistered(image)
        if "model" not in self.target:
            self.target["model"] = self._store_model()
            self.journal.save()
            self.on_event(f"model stored as blob {self.target['model']['blobId']}")
        if "attestation" not in self.target:
            self.target["attestation"] = self._store_attestation()
            self.journal.save()
            self.on_event(f"attestation stored as blob {self.target['attestation']['blobId']}")
        record = self._send()
        return self._finish(record, "recorded")

    def _existing(self) -> ModelRecord | None:
        """The registry's record of this model if it is ours, None if there is none."""
        try:
            record = self.registry.get_model(self.run.model_digest, self.signer)
        except ModelNotRecorded:
            return None
        if self._is_ours(record):
            return record
        raise AlreadyRecorded(record)

    def _is_ours(self, record: ModelRecord) -> bool:
        # The attestation digest binds this run (ID, times, inputs); the submitter, our key.
        return (
            record.attestation_digest == self.run.attestation.digest()
            and record.submitter.lower() == self.signer.lower()
        )

    # ------------------------------------------------------------ Walrus

    def _store_model(self) -> dict[str, Any]:
        path = self.run.model_path
        size = path.stat().st_size
        with self.transfer(f"store {path.name}", size) as advance:
            result = self.walrus.store_file(path, epochs=self.epochs, on_progress=advance)
        self._check_stored(result, self.run.model_digest, f"model file {path}")
        return _blob_entry(result, self.walrus)

    def _store_attestation(self) -> dict[str, Any]:
        data = self.run.attestation.canonical_bytes()
        digest = self.run.attestation.digest()
        with self.transfer("store attestation", len(data)) as advance:
            result = self.walrus.store_bytes(data, epochs=self.epochs, on_progress=advance)
        self._check_stored(result, digest, "the attestation")
        return _blob_entry(result, self.walrus)

    def _check_stored(self, result: StoreResult, expected: Digest, what: str) -> None:
        """The bytes sent must be the ones recorded, and Walrus must hand them back."""
        if result.sha256 != expected:
            raise IntegrityError(f"{what} as sent to Walrus", expected, result.sha256)
        if result.blob_id_verified:
            return  # the blob ID was recomputed from the bytes sent: it names exactly them
        # No local blob-ID check: read the blob back and hash it.
        with (
            tempfile.TemporaryDirectory(prefix=".okai-readback-", dir=self.run.directory) as tmp,
            self.transfer(f"read back {result.blob_id[:12]}…", result.size) as advance,
        ):
            self.walrus.read_to_file(
                result.blob_id,
                expected,
                Path(tmp) / "blob",
                expected_size=result.size,
                verify_blob_id=False,
                on_progress=advance,
            )

    # ------------------------------------------------------------ the chain

    def _send(self) -> ModelRecord:
        """Send `recordModel` once, or finish waiting for the one a killed run sent."""
        pending = self.target.get("transaction")
        if pending is not None and "block" not in pending:
            tx = Transaction(pending["txHash"], pending["nonce"], "recording the model")
            try:
                mined = self.registry.wait(tx)
            except TransactionDropped:
                # Gone or stuck: send again. Write-once means at most one can succeed.
                self.on_event(f"transaction {tx.tx_hash} was not mined; sending it again")
            except ModelExists:
                return self._read_back()
            else:
                self._journal_mined(mined)
                return self._read_back()
        run = self.run
        try:
            tx = self.registry.record_model(
                model_digest=run.model_digest,
                image_digest=run.receipt.chain_image_digest(),
                dataset_digests=[Digest(d.sha256) for d in run.receipt.datasets],
                job_digest=Digest(run.receipt.job_sha256),
                attestation_digest=run.attestation.digest(),
                attestation_blob_id=self.target["attestation"]["blobId"],
                wait=False,
            )
            self.target["transaction"] = {"txHash": tx.tx_hash, "nonce": tx.nonce}
            self.journal.save()
            self.on_event(f"transaction {tx.tx_hash} sent")
            self._journal_mined(self.registry.wait(tx))
        except ModelExists:
            pass  # an earlier attempt of ours got there first; _read_back tells whose it is
        return self._read_back()

    def _journal_mined(self, tx: Transaction) -> None:
        self.target["transaction"] = {
            "txHash": tx.tx_hash,
            "nonce": tx.nonce,
            "block": tx.block,
            "gasUsed": tx.gas_used,
        }
        self.journal.save()

    def _read_back(self) -> ModelRecord:
        record = self.registry.get_model(self.run.model_digest, self.signer)
        if not self._is_ours(record):
            raise AlreadyRecorded(record)
        return record

    # ------------------------------------------------------------ the result

    def _finish(
        self, record: ModelRecord, status: Literal["recorded", "already recorded"]
    ) -> RecordResult:
        tx = self.target.get("transaction")
        if tx is not None and "block" not in tx:
            # Killed (or the RPC lost) after sending: the record is there, so is the receipt.
            # If this one reverted, an earlier transaction of ours was mined: keep what we know.
            with contextlib.suppress(OkaiError):
                self._journal_mined(
                    self.registry.wait(Transaction(tx["txHash"], tx["nonce"], "recording"))
                )
            tx = self.target.get("transaction")
        self.target["recorded"] = {"recordedAt": record.recorded_at}
        self.journal.save()
        attestation_blob = self.target.get("attestation", {"blobId": record.attestation_blob_id})
        network = self.registry.network
        link = None if tx is None else network.explorer_link("tx", tx["txHash"])
        assert self.registry.address is not None
        return RecordResult(
            status=status,
            run=self.run,
            network=network.name,
            chain_id=network.chain_id,
            registry=self.registry.address,
            model_blob=self.target.get("model", {}),
            attestation_blob=attestation_blob,
            record=record,
            transaction=tx,
            explorer=link,
            journal=self.journal.path,
        )


def _blob_entry(result: StoreResult, walrus: WalrusClient) -> dict[str, Any]:
    return {
        "blobId": result.blob_id,
        "sha256": result.sha256,
        "size": result.size,
        "endEpoch": result.end_epoch,
        "url": walrus.blob_url(result.blob_id),
    }


def _ignore(n: int) -> None:
    return None


def record_run(
    run_dir: Path,
    *,
    registry: RegistryClient,
    walrus: WalrusClient,
    epochs: int = DEFAULT_EPOCHS,
    transfer: Transfer | None = None,
    on_event: Callable[[str], None] = lambda message: None,
) -> RecordResult:
    """Record the run in `run_dir` (see the module docstring); safe to run again."""
    run = load_run(run_dir)
    recorder = Recorder(
        run, registry=registry, walrus=walrus, epochs=epochs, transfer=transfer, on_event=on_event
    )
    return recorder.record()
