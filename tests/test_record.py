"""`okai record` against a real anvil (registry deployed) and the local Walrus server.

Counts what reaches the services: Walrus stores (`PUT blob` on the server) and
transactions (`eth_sendRawTransaction` through the RPC proxy), so "nothing twice"
is measured, not assumed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chain_support import account
from okai.chain.errors import ChainError, ImageNotRegistered
from okai.digest import ZERO_DIGEST, Digest
from okai.errors import ExitCode, IntegrityError, UsageError
from okai.provenance.record import JOURNAL_FILE, AlreadyRecorded, record_run
from okai.verify import ModelTarget, Options, TrustPolicy, verify_model
from okai.walrus.errors import WalrusError
from provenance_support import Inputs, Stack, write_run
from provenance_support import inputs_fixture as inputs_fixture
from provenance_support import stack_fixture as stack_fixture


def stores(stack: Stack) -> int:
    return stack.walrus.faults.counts().get("PUT blobs", 0)


def sent(stack: Stack) -> int:
    return stack.proxy.calls["eth_sendRawTransaction"]


def record(stack: Stack, run_dir: Path, **options: object):  # type: ignore[no-untyped-def]
    with stack.walrus_client() as walrus:
        return record_run(run_dir, registry=stack.registry(), walrus=walrus, **options)  # type: ignore[arg-type]


def test_record_then_verify_passes(stack: Stack, inputs: Inputs, tmp_path: Path) -> None:
    receipt = write_run(tmp_path / "run", inputs, values=[1.0, 2.0])
    before = (stores(stack), sent(stack))

    result = record(stack, tmp_path / "run")

    assert result.status == "recorded"
    assert (stores(stack), sent(stack)) == (before[0] + 2, before[1] + 1)
    record_ = result.record
    assert record_.model_digest == receipt.model_sha256
    assert record_.image_digest == inputs.image_digest
    assert record_.dataset_digests == (inputs.manifest_ref.sha256, inputs.raw_ref.sha256)
    assert record_.job_digest == receipt.job_sha256
    assert record_.attestation_digest == result.run.attestation.digest()
    assert record_.submitter == account(0).address
    assert result.transaction is not None and result.transaction["block"] > 0
    data = result.to_json()
    assert data["model"]["sha256"] == receipt.model_sha256
    assert data["attestation"]["blobId"] == record_.attestation_blob_id
    journal = json.loads((tmp_path / "run" / JOURNAL_FILE).read_text())
    (target,) = journal["targets"].values()
    assert set(target) == {"network", "model", "attestation", "transaction", "recorded"}

    with stack.walrus_client() as walrus:
        report = verify_model(
            ModelTarget(path=tmp_path / "run" / "model.safetensors"),
            Options(deep=True, image=True),
            registry=stack.registry(signer=None),
            walrus=walrus,
            policy=TrustPolicy(trainers=(account(0).address,), publishers=(account(0).address,)),
        )
    statuses = {check.id: check.status for check in report.checks}
    assert report.verdict == "verified", [c.reason for c in report.checks]
    assert statuses["reproduce"] == "not checked"
    assert {s for k, s in statuses.items() if k not in ("reproduce", "witnesses")} == {"passed"}
    assert report.exit_code == ExitCode.OK


def test_second_record_sends_and_stores_nothing(
    stack: Stack, inputs: Inputs, tmp_path: Path
) -> None:
    write_run(tmp_path / "run", inputs, values=[3.0])
    first = record(stack, tmp_path / "run")
    before = (stores(stack), sent(stack))

    again = record(stack, tmp_path / "run")

    assert again.status == "already recorded"
    assert (stores(stack), sent(stack)) == before
    assert again.record == first.record
    assert again.transaction == first.transaction


def test_walrus_dying_after_the_model_store_is_resumed(
    stack: Stack, inputs: Inputs, tmp_path: Path
) -> None:
    write_run(tmp_path / "run", inputs, values=[4.0])
    before = (stores(stack), sent(stack))

    def die_after_model(message: str) -> None:
        if message.startswith("model stored"):
            stack.walrus.stop()

    with pytest.raises(WalrusError) as failure:
        record(stack, tmp_path / "run", on_event=die_after_model)
    assert failure.value.exit_code == ExitCode.OPERATIONAL_FAILURE
    journal = json.loads((tmp_path / "run" / JOURNAL_FILE).read_text())
    (target,) = journal["targets"].values()
    assert "model" in target and "attestation" not in target
    assert sent(stack) == before[1]

    stack.restart_walrus()
    after_restart = stores(stack)  # a new server counts from zero
    result = record(stack, tmp_path / "run")

    assert result.status == "recorded"
    assert stores(stack) == after_restart + 1  # the attestation only: the model stayed stored
    assert sent(stack) == before[1] + 1
    assert result.to_json()["model"]["blobId"] == target["model"]["blobId"]


def test_rpc_dying_before_the_transaction_is_resumed(
    stack: Stack, inputs: Inputs, tmp_path: Path
) -> None:
    write_run(tmp_path / "run", inputs, values=[5.0])

    def rpc_dies(message: str) -> None:
        if message.startswith("attestation stored"):
            stack.proxy.dead = True

    try:
        with pytest.raises(ChainError):
            record(stack, tmp_path / "run", on_event=rpc_dies)
    finally:
        stack.proxy.dead = False
    before = (stores(stack), sent(stack))

    result = record(stack, tmp_path / "run")

    assert result.status == "recorded"
    assert (stores(stack), sent(stack)) == (before[0], before[1] + 1)


def test_killed_after_sending_finishes_without_a_second_transaction(
    stack: Stack, inputs: Inputs, tmp_path: Path
) -> None:
    write_run(tmp_path / "run", inputs, values=[6.0])

    def killed(message: str) -> None:
        if message.startswith("transaction"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        record(stack, tmp_path / "run", on_event=killed)
    journal = json.loads((tmp_path / "run" / JOURNAL_FILE).read_text())
    (target,) = journal["targets"].values()
    assert "txHash" in target["transaction"] and "block" not in target["transaction"]
    before = (stores(stack), sent(stack))

    result = record(stack, tmp_path / "run")

    assert result.status == "already recorded"
    assert (stores(stack), sent(stack)) == before
    assert result.transaction is not None
    assert result.transaction["txHash"] == target["transaction"]["txHash"]
    assert result.transaction["block"] > 0


def test_a_model_recorded_by_another_run_is_refused(
    stack: Stack, inputs: Inputs, tmp_path: Path
) -> None:
    write_run(tmp_path / "first", inputs, values=[7.0])
    record(stack, tmp_path / "first")
    # The same bytes from another run (deterministic training): another attestation.
    write_run(tmp_path / "second", inputs, values=[7.0], run_id="digits-again")
    before = (stores(stack), sent(stack))

    with pytest.raises(AlreadyRecorded) as refused:
        record(stack, tmp_path / "second")

    assert refused.value.exit_code == ExitCode.USAGE_ERROR
    assert "already recorded" in refused.value.message
    assert "--reproduce --attest" in (refused.value.hint or "")
    assert (stores(stack), sent(stack)) == before
    assert not (tmp_path / "second" / JOURNAL_FILE).exists()


def test_a_model_changed_after_training_is_refused(
    stack: Stack, inputs: Inputs, tmp_path: Path
) -> None:
    write_run(tmp_path / "run", inputs, values=[8.0])
    model = tmp_path / "run" / "model.safetensors"
    model.write_bytes(model.read_bytes()[:-1] + b"\x01")
    before = stores(stack)

    with pytest.raises(IntegrityError) as refused:
        record(stack, tmp_path / "run")

    assert refused.value.exit_code == ExitCode.VERIFICATION_FAILED
    assert stores(stack) == before


def test_an_unregistered_image_is_refused_before_storing(
    stack: Stack, inputs: Inputs, tmp_path: Path
) -> None:
    other = Inputs(**{**inputs.__dict__, "image_digest": Digest.of_bytes(b"no such image")})
    write_run(tmp_path / "run", other, values=[9.0])
    before = stores(stack)

    with pytest.raises(ImageNotRegistered):
        record(stack, tmp_path / "run")

    assert stores(stack) == before


def test_an_unregistered_host_is_recorded_with_the_zero_image(
    stack: Stack, inputs: Inputs, tmp_path: Path
) -> None:
    write_run(tmp_path / "run", inputs, values=[10.0], host=None)

    result = record(stack, tmp_path / "run")

    assert result.record.image_digest == ZERO_DIGEST
    assert result.record.to_json()["host"] == "unregistered host"


@pytest.mark.parametrize(
    ("spoil", "problem"),
    [
        (lambda run: (run / "receipt.json").unlink(), "no receipt.json"),
        (lambda run: (run / "receipt.json").write_text("{"), "not valid JSON"),
        (lambda run: (run / "model.safetensors").unlink(), "does not exist"),
        (lambda run: (run / JOURNAL_FILE).write_text('{"schema": "x"}'), "okai.record-journal"),
    ],
)
def test_broken_run_directories_are_usage_errors(
    stack: Stack, inputs: Inputs, tmp_path: Path, spoil: object, problem: str
) -> None:
    write_run(tmp_path / "run", inputs, values=[11.0])
    spoil(tmp_path / "run")  # type: ignore[operator]

    with pytest.raises(UsageError, match=problem):
        record(stack, tmp_path / "run")


def test_a_journal_of_another_model_is_refused(
    stack: Stack, inputs: Inputs, tmp_path: Path
) -> None:
    write_run(tmp_path / "run", inputs, values=[12.0])
    journal = {
        "schema": "okai.record-journal/v1",
        "modelDigest": Digest.of_bytes(b"other"),
        "attestationDigest": Digest.of_bytes(b"other attestation"),
        "targets": {},
    }
    (tmp_path / "run" / JOURNAL_FILE).write_text(json.dumps(journal))

    with pytest.raises(UsageError, match="another model or attestation"):
        record(stack, tmp_path / "run")
