"""Random sequences of registry operations on anvil keep the invariants.

Write-once per claim (a second write by the same account fails with the named error and
changes nothing; another account's claim on the same digest always succeeds), every claim
reads back exactly as written, paged reads list every claimant, and replaying the events
from the logs rebuilds exactly the claims the views return.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from web3 import Web3

from chain_support import account, blob_id, client_for, digest
from okai.chain import (
    AlreadyWitnessed,
    ImageExists,
    ImageNotRegistered,
    ModelExists,
    ModelNotRecorded,
    RegistryClient,
    WitnessIsSubmitter,
)
from okai.dev.anvil import running_anvil
from okai.digest import ZERO_DIGEST, Digest
from okai.manifest import blob_id_from_bytes32

ACCOUNTS = (0, 1, 2)
who = st.sampled_from(ACCOUNTS)
image_seed = st.integers(0, 3)
model_seed = st.integers(0, 5)


@pytest.fixture(scope="module")
def anvil() -> Iterator[str]:
    with running_anvil() as url:
        yield url


def _machine(url: str) -> type[RuleBasedStateMachine]:
    class Registry(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            deployer = client_for(url, account(0))
            self.deployment = deployer.deploy()
            self.clients = {
                index: client_for(url, account(index), address=deployer.address)
                for index in ACCOUNTS
            }
            # Claims keyed by (digest, account): the model of the registry's promise.
            self.images: dict[tuple[Digest, str], tuple[Digest, str, Digest]] = {}
            self.models: dict[tuple[Digest, str], dict[str, Any]] = {}
            self.witnesses: dict[tuple[Digest, str], list[str]] = {}

        @property
        def reader(self) -> RegistryClient:
            return self.clients[0]

        @rule(sender=who, seed=image_seed, variant=st.integers(0, 3))
        def register_image(self, sender: int, seed: int, variant: int) -> None:
            image = digest(f"image:{seed}")
            address = account(sender).address
            entry = (
                digest(f"toplevel:{seed}:{variant}"),
                blob_id(f"im:{variant}"),
                digest(f"manifest:{variant}"),
            )
            client = self.clients[sender]
            if (image, address) in self.images:
                with pytest.raises(ImageExists) as caught:
                    client.register_image(image, *entry)
                assert (caught.value.image_digest, caught.value.publisher) == (image, address)
            else:
                client.register_image(image, *entry)  # others' claims never block it
                self.images[(image, address)] = entry

        @rule(
            sender=who,
            seed=model_seed,
            image=st.none() | image_seed,
            datasets=st.lists(st.integers(0, 9), min_size=1, max_size=4),
        )
        def record_model(
            self, sender: int, seed: int, image: int | None, datasets: list[int]
        ) -> None:
            model = digest(f"model:{seed}")
            address = account(sender).address
            image_digest = None if image is None else digest(f"image:{image}")
            fields = {
                "image_digest": image_digest,
                "dataset_digests": [digest(f"data:{d}") for d in datasets],
                "job_digest": digest(f"job:{seed}:{sender}"),
                "attestation_digest": digest(f"att:{seed}:{sender}"),
                "attestation_blob_id": blob_id(f"att:{seed}"),
            }
            client = self.clients[sender]
            registered = {key[0] for key in self.images}
            if (model, address) in self.models:
                with pytest.raises(ModelExists) as exists:
                    client.record_model(model_digest=model, **fields)
                assert (exists.value.model_digest, exists.value.submitter) == (model, address)
            elif image_digest is not None and image_digest not in registered:
                with pytest.raises(ImageNotRegistered) as missing:
                    client.record_model(model_digest=model, **fields)
                assert missing.value.image_digest == image_digest
            else:
                client.record_model(model_digest=model, **fields)
                self.models[(model, address)] = {**fields, "submitter": address}
                self.witnesses[(model, address)] = []

        @rule(sender=who, seed=model_seed, claimant=who)
        def attest(self, sender: int, seed: int, claimant: int) -> None:
            model = digest(f"model:{seed}")
            address = account(sender).address
            submitter = account(claimant).address
            client = self.clients[sender]
            if (model, submitter) not in self.models:
                with pytest.raises(ModelNotRecorded):
                    client.attest_reproduction(model, submitter)
            elif submitter == address:
                with pytest.raises(WitnessIsSubmitter):
                    client.attest_reproduction(model, submitter)
            elif address in self.witnesses[(model, submitter)]:
                with pytest.raises(AlreadyWitnessed):
                    client.attest_reproduction(model, submitter)
            else:
                client.attest_reproduction(model, submitter)
                self.witnesses[(model, submitter)].append(address)

        @invariant()
        def claims_read_back_exactly(self) -> None:
            everyone = [account(i).address for i in ACCOUNTS]
            for seed in range(6):
                model = digest(f"model:{seed}")
                claimants = [a for a in everyone if (model, a) in self.models]
                page, total = self.reader.model_submitters(model)
                assert total == len(claimants) and sorted(page) == sorted(claimants)
                if len(page) > 1:  # the next page starts after the last account given
                    rest, _ = self.reader.model_submitters(model, page[0], 1)
                    assert rest == (page[1],)
                for address in everyone:
                    expected = self.models.get((model, address))
                    assert self.reader.is_recorded(model, address) == (expected is not None)
                    if expected is None:
                        continue
                    provenance = self.reader.get_provenance(model, address, everyone, everyone)
                    record = provenance.model
                    assert record.image_digest == (expected["image_digest"] or ZERO_DIGEST)
                    assert list(record.dataset_digests) == expected["dataset_digests"]
                    assert record.job_digest == expected["job_digest"]
                    assert record.attestation_digest == expected["attestation_digest"]
                    assert record.attestation_blob_id == expected["attestation_blob_id"]
                    assert record.submitter == address
                    witnessed = self.witnesses[(model, address)]
                    assert sorted(provenance.witnesses) == sorted(witnessed)
                    assert provenance.witness_count == len(witnessed)
                    assert self.reader.get_witnesses(model, address) == (
                        tuple(witnessed),
                        len(witnessed),
                    )
                    expected_images = [
                        (record.image_digest, p)
                        for p in everyone
                        if (record.image_digest, p) in self.images
                    ]
                    assert len(provenance.images) == len(expected_images)
                    for image in provenance.images:
                        key = (image.image_digest, image.registrant)
                        assert (
                            image.system_toplevel,
                            image.manifest_blob_id,
                            image.manifest_sha256,
                        ) == self.images[key]
            for seed in range(4):
                image = digest(f"image:{seed}")
                publishers = [a for a in everyone if (image, a) in self.images]
                assert self.reader.is_registered(image) == bool(publishers)
                page, total = self.reader.image_publishers(image)
                assert total == len(publishers) and sorted(page) == sorted(publishers)

        def teardown(self) -> None:
            """Replaying every event rebuilds exactly the claims the views return."""
            contract = self.reader.contract
            logs = self.reader.w3.eth.get_logs(
                {"address": contract.address, "fromBlock": self.deployment.block}
            )
            images: dict[tuple[Digest, str], tuple[Digest, str, Digest]] = {}
            models: set[tuple[Digest, str]] = set()
            witnesses: dict[tuple[Digest, str], list[str]] = {}
            events = contract.events
            for log in logs:
                topic = Web3.to_hex(log["topics"][0])
                if topic == events.ImageRegistered().topic:
                    args = events.ImageRegistered().process_log(log).args
                    images[(Digest.from_bytes32(args.imageDigest), args.publisher)] = (
                        Digest.from_bytes32(args.systemToplevel),
                        blob_id_from_bytes32(args.manifestBlobId),
                        Digest.from_bytes32(args.manifestSha256),
                    )
                elif topic == events.ModelRecorded().topic:
                    args = events.ModelRecorded().process_log(log).args
                    key = (Digest.from_bytes32(args.modelDigest), args.submitter)
                    models.add(key)
                    witnesses[key] = []
                    image = Digest.from_bytes32(args.imageDigest)
                    assert (self.models[key]["image_digest"] or ZERO_DIGEST) == image
                else:
                    args = events.ReproductionAttested().process_log(log).args
                    key = (Digest.from_bytes32(args.modelDigest), args.submitter)
                    witnesses[key].append(args.witness)
            assert (images, models, witnesses) == (self.images, set(self.models), self.witnesses)

    return Registry


def test_random_operation_sequences_keep_the_invariants(anvil: str) -> None:
    run_state_machine_as_test(
        _machine(anvil),
        settings=settings(
            max_examples=8,
            stateful_step_count=10,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
