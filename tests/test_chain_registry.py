"""The registry contract and its client against a real anvil over JSON-RPC."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from eth_account import Account
from web3 import Web3

from chain_support import account, blob_id, client_for, deployed, digest, rpc
from okai.chain import (
    AlreadyWitnessed,
    ChainError,
    ImageExists,
    ImageNotRegistered,
    MissingField,
    ModelExists,
    ModelNotRecorded,
    RecordExists,
    RegistryClient,
    TooManyDatasets,
    TransactionDropped,
    WitnessIsSubmitter,
    load_artifact,
)
from okai.chain.errors import REGISTRY_ERRORS
from okai.dev.anvil import running_anvil
from okai.digest import ZERO_DIGEST, Digest
from okai.errors import ExitCode

TOPLEVEL = digest("/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-okai")
MANIFEST = digest("image manifest bytes")


@pytest.fixture(scope="module")
def anvil() -> Iterator[str]:
    with running_anvil() as url:
        yield url


@pytest.fixture
def registry(anvil: str) -> RegistryClient:
    return deployed(anvil)


def _record(
    client: RegistryClient,
    seed: str,
    *,
    image: Digest | None = None,
    datasets: int = 1,
    wait: bool = True,
):  # type: ignore[no-untyped-def]
    return client.record_model(
        model_digest=digest(f"model:{seed}"),
        image_digest=image,
        dataset_digests=[digest(f"data:{seed}:{i}") for i in range(datasets)],
        job_digest=digest(f"job:{seed}"),
        attestation_digest=digest(f"attestation:{seed}"),
        attestation_blob_id=blob_id(seed),
        wait=wait,
    )


def test_deployed_code_is_the_committed_artifact(registry: RegistryClient) -> None:
    assert registry.has_registry_code()
    code = registry.w3.eth.get_code(registry.contract.address)
    assert code.to_0x_hex() == load_artifact().deployed_bytecode


ME = account(0).address


def test_register_record_and_read_back_exactly(registry: RegistryClient) -> None:
    image = digest("image:1")
    tx = registry.register_image(image, TOPLEVEL, blob_id("image-manifest"), MANIFEST)
    assert tx.block is not None and tx.gas_used is not None
    record = registry.get_image(image, ME)
    assert (record.image_digest, record.system_toplevel) == (image, TOPLEVEL)
    assert record.manifest_blob_id == blob_id("image-manifest")
    assert record.manifest_sha256 == MANIFEST
    assert record.registrant == ME
    assert registry.is_registered(image) and not registry.is_registered(digest("image:2"))
    assert registry.is_registered(image, ME) and not registry.is_registered(
        image, account(1).address
    )
    assert registry.image_publishers(image) == ((ME,), 1)

    _record(registry, "a", image=image, datasets=4)
    model = registry.get_model(digest("model:a"), ME)
    assert model.image_digest == image and not model.unregistered_host
    assert model.dataset_digests == tuple(digest(f"data:a:{i}") for i in range(4))
    assert (model.job_digest, model.attestation_digest) == (
        digest("job:a"),
        digest("attestation:a"),
    )
    assert model.attestation_blob_id == blob_id("a")
    assert model.submitter == account(0).address
    block = registry.w3.eth.get_block(tx.block + 1)
    assert model.recorded_at == block["timestamp"]
    assert registry.is_recorded(digest("model:a"), ME)
    assert not registry.is_recorded(digest("model:b"), ME)
    assert not registry.is_recorded(digest("model:a"), account(1).address)
    assert registry.model_submitters(digest("model:a")) == ((ME,), 1)

    provenance = registry.get_provenance(digest("model:a"), ME, [account(1).address, ME])
    assert provenance.model == model and provenance.images == (record,)
    assert provenance.witnesses == () and provenance.witness_count == 0
    assert provenance.to_json()["model"]["datasetDigests"] == [
        str(d) for d in model.dataset_digests
    ]


def test_unregistered_host_is_the_zero_digest(registry: RegistryClient) -> None:
    _record(registry, "host")
    model = registry.get_model(digest("model:host"), ME)
    assert model.image_digest == ZERO_DIGEST and model.unregistered_host
    assert model.to_json()["host"] == "unregistered host"
    assert registry.get_provenance(digest("model:host"), ME, [ME]).images == ()


def test_duplicates_revert_with_the_named_error_and_arguments(registry: RegistryClient) -> None:
    image = digest("image:dup")
    registry.register_image(image, TOPLEVEL, blob_id("m"), MANIFEST)
    with pytest.raises(ImageExists) as image_error:
        registry.register_image(image, digest("other toplevel"), blob_id("n"), MANIFEST)
    assert (image_error.value.image_digest, image_error.value.publisher) == (image, ME)
    _record(registry, "dup", image=image)
    with pytest.raises(ModelExists) as model_error:
        _record(registry, "dup")
    assert (model_error.value.model_digest, model_error.value.submitter) == (
        digest("model:dup"),
        ME,
    )
    assert isinstance(model_error.value, RecordExists)
    assert model_error.value.exit_code == ExitCode.USAGE_ERROR
    assert "already recorded" in str(model_error.value)
    # The first record is untouched: write-once.
    assert registry.get_model(digest("model:dup"), ME).image_digest == image


def test_unregistered_image_and_missing_records(registry: RegistryClient) -> None:
    with pytest.raises(ImageNotRegistered) as caught:
        _record(registry, "x", image=digest("never registered"))
    assert caught.value.image_digest == digest("never registered")
    assert "by any account" in caught.value.message
    assert not registry.is_recorded(digest("model:x"), ME)
    with pytest.raises(ModelNotRecorded) as missing:
        registry.get_model(digest("model:x"), ME)
    assert (missing.value.model_digest, missing.value.submitter) == (digest("model:x"), ME)
    assert registry.get_witnesses(digest("model:x"), ME) == ((), 0)
    with pytest.raises(ImageNotRegistered) as image_missing:
        registry.get_image(digest("never registered"), ME)
    assert image_missing.value.publisher == ME


def test_fields_that_must_be_set(registry: RegistryClient) -> None:
    cases = {
        "modelDigest": {"model_digest": ZERO_DIGEST},
        "jobDigest": {"job_digest": ZERO_DIGEST},
        "attestationDigest": {"attestation_digest": ZERO_DIGEST},
        "attestationBlobId": {"attestation_blob_id": "A" * 43},
        "datasetManifestDigests": {"dataset_digests": []},
    }
    base = {
        "model_digest": digest("m"),
        "image_digest": None,
        "dataset_digests": [digest("d")],
        "job_digest": digest("j"),
        "attestation_digest": digest("a"),
        "attestation_blob_id": blob_id("a"),
    }
    for field, change in cases.items():
        with pytest.raises(MissingField) as caught:
            registry.record_model(**{**base, **change})  # type: ignore[arg-type]
        assert caught.value.field == field
    with pytest.raises(MissingField, match="datasetManifestDigests"):
        registry.record_model(**{**base, "dataset_digests": [digest("d"), ZERO_DIGEST]})  # type: ignore[arg-type]
    with pytest.raises(TooManyDatasets) as too_many:
        registry.record_model(**{**base, "dataset_digests": [digest(i) for i in range(65)]})  # type: ignore[arg-type]
    assert (too_many.value.count, too_many.value.maximum) == (65, 64)
    with pytest.raises(MissingField, match="systemToplevel"):
        registry.register_image(digest("i"), ZERO_DIGEST, blob_id("i"), MANIFEST)
    with pytest.raises(MissingField, match="manifestSha256"):
        registry.register_image(digest("i"), TOPLEVEL, blob_id("i"), ZERO_DIGEST)


def test_witnesses(anvil: str, registry: RegistryClient) -> None:
    _record(registry, "w")
    model = digest("model:w")
    with pytest.raises(WitnessIsSubmitter) as own:
        registry.attest_reproduction(model, ME)
    assert (own.value.model_digest, own.value.witness) == (model, ME)
    first = client_for(anvil, account(1), address=registry.address)
    second = client_for(anvil, account(2), address=registry.address)
    first.attest_reproduction(model, ME)
    second.attest_reproduction(model, ME)
    with pytest.raises(AlreadyWitnessed) as again:
        first.attest_reproduction(model, ME)
    assert again.value.witness == account(1).address
    both = (account(1).address, account(2).address)
    assert registry.get_witnesses(model, ME) == (both, 2)
    assert registry.get_witnesses(model, ME, 1, 5) == (both[1:], 2)
    assert registry.get_witnesses(model, ME, 7, 5) == ((), 2)
    assert registry.has_witnessed(model, ME, account(2).address)
    assert not registry.has_witnessed(model, ME, account(0).address)
    provenance = registry.get_provenance(model, ME, [], [account(3).address, *both])
    assert (provenance.witnesses, provenance.witness_count) == (both, 2)
    with pytest.raises(ModelNotRecorded):
        first.attest_reproduction(digest("model:none"), ME)
    with pytest.raises(ModelNotRecorded):  # a witness names the claim it reproduced
        first.attest_reproduction(model, account(2).address)


def test_model_record_gas_stays_within_budget(registry: RegistryClient) -> None:
    image = digest("image:gas")
    registry.register_image(image, TOPLEVEL, blob_id("gas"), MANIFEST)
    one = _record(registry, "gas1", image=image, datasets=1)
    four = _record(registry, "gas4", image=image, datasets=4)
    assert one.gas_used is not None and one.gas_used <= 150_000
    assert four.gas_used is not None and one.gas_used < four.gas_used


def test_events_name_the_claim_the_views_return(registry: RegistryClient) -> None:
    image = digest("image:ev")
    image_tx = registry.register_image(image, TOPLEVEL, blob_id("ev"), MANIFEST)
    model_tx = _record(registry, "ev", image=image, datasets=2)
    contract = registry.contract
    receipt = registry.w3.eth.get_transaction_receipt(model_tx.tx_hash)
    (event,) = contract.events.ModelRecorded().process_receipt(receipt)
    model = registry.get_model(digest("model:ev"), ME)
    assert Digest.from_bytes32(event.args.modelDigest) == model.model_digest
    assert Digest.from_bytes32(event.args.imageDigest) == model.image_digest
    assert event.args.submitter == model.submitter
    image_receipt = registry.w3.eth.get_transaction_receipt(image_tx.tx_hash)
    (registered,) = contract.events.ImageRegistered().process_receipt(image_receipt)
    assert Digest.from_bytes32(registered.args.systemToplevel) == TOPLEVEL
    assert Digest.from_bytes32(registered.args.manifestSha256) == MANIFEST


def test_several_transactions_in_a_row_get_consecutive_nonces(registry: RegistryClient) -> None:
    sent = [_record(registry, f"row{i}", wait=False) for i in range(4)]
    assert [tx.nonce for tx in sent] == list(range(sent[0].nonce, sent[0].nonce + 4))
    mined = [registry.wait(tx) for tx in sent]
    assert all(tx.block is not None for tx in mined)
    assert all(registry.is_recorded(digest(f"model:row{i}"), ME) for i in range(4))


def test_a_transaction_that_reverts_when_mined_is_decoded(anvil: str) -> None:
    registry = deployed(anvil)
    rpc(anvil, "evm_setAutomine", False)
    try:
        first = _record(registry, "race", wait=False)
        second = _record(registry, "race", wait=False)  # estimated before the first is mined
        rpc(anvil, "evm_mine")
        registry.wait(first)
        with pytest.raises(ModelExists) as caught:
            registry.wait(second)
        assert caught.value.model_digest == digest("model:race")
    finally:
        rpc(anvil, "evm_setAutomine", True)


def test_a_dropped_transaction_is_a_clear_error_and_frees_its_nonce(anvil: str) -> None:
    registry = deployed(anvil, receipt_timeout=0.5)
    rpc(anvil, "evm_setAutomine", False)
    try:
        sent = _record(registry, "dropped", wait=False)
        rpc(anvil, "anvil_dropTransaction", sent.tx_hash)
        with pytest.raises(TransactionDropped) as caught:
            registry.wait(sent)
        assert caught.value.tx_hash == sent.tx_hash
        assert "dropped" in str(caught.value) and "run the command again" in str(caught.value)
    finally:
        rpc(anvil, "evm_setAutomine", True)
    again = _record(registry, "dropped")  # same nonce again, mined at once
    assert again.nonce == sent.nonce and again.block is not None


def test_a_pending_transaction_past_the_timeout_says_so(anvil: str) -> None:
    registry = deployed(anvil, receipt_timeout=0.3)
    rpc(anvil, "evm_setAutomine", False)
    try:
        sent = _record(registry, "slow", wait=False)
        with pytest.raises(TransactionDropped, match="still pending"):
            registry.wait(sent)
        rpc(anvil, "evm_mine")
        assert registry.wait(sent).block is not None  # waiting again picks it up
    finally:
        rpc(anvil, "evm_setAutomine", True)


def test_no_registry_at_the_address(anvil: str) -> None:
    empty = client_for(anvil, address=Account.create().address)
    with pytest.raises(ChainError, match="no registry contract answers"):
        empty.get_model(digest("m"), ME)
    assert not empty.has_registry_code()


def test_every_contract_error_has_its_python_class() -> None:
    abi_errors = {item["name"] for item in load_artifact().abi if item["type"] == "error"}
    assert abi_errors == {f"ProvenanceRegistry{cls.contract_error}" for cls in REGISTRY_ERRORS}


def test_checksummed_addresses(registry: RegistryClient) -> None:
    assert registry.address == Web3.to_checksum_address(registry.address or "")
