"""Random sequences of registry operations on anvil keep the invariants.

Write-once (a second write of a digest fails with the named error and changes nothing),
every record reads back exactly as written, and replaying the events from the logs
rebuilds exactly the state the views return.
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
            self.images: dict[Digest, tuple[Digest, str, str]] = {}
            self.models: dict[Digest, dict[str, Any]] = {}
            self.witnesses: dict[Digest, list[str]] = {}

        @property
        def reader(self) -> RegistryClient:
            return self.clients[0]

        @rule(sender=who, seed=image_seed, variant=st.integers(0, 3))
        def register_image(self, sender: int, seed: int, variant: int) -> None:
            image = digest(f"image:{seed}")
            entry = (
                digest(f"toplevel:{seed}:{variant}"),
                blob_id(f"im:{variant}"),
                account(sender).address,
            )
            client = self.clients[sender]
            if image in self.images:
                with pytest.raises(ImageExists) as caught:
                    client.register_image(image, entry[0], entry[1])
                assert caught.value.image_digest == image
            else:
                client.register_image(image, entry[0], entry[1])
                self.images[image] = entry

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
            image_digest = None if image is None else digest(f"image:{image}")
            fields = {
                "image_digest": image_digest,
                "dataset_digests": [digest(f"data:{d}") for d in datasets],
                "job_digest": digest(f"job:{seed}:{sender}"),
                "attestation_digest": digest(f"att:{seed}:{sender}"),
                "attestation_blob_id": blob_id(f"att:{seed}"),
            }
            client = self.clients[sender]
            if model in self.models:
                with pytest.raises(ModelExists) as exists:
                    client.record_model(model_digest=model, **fields)
                assert exists.value.model_digest == model
            elif image_digest is not None and image_digest not in self.images:
                with pytest.raises(ImageNotRegistered) as missing:
                    client.record_model(model_digest=model, **fields)
                assert missing.value.image_digest == image_digest
            else:
                client.record_model(model_digest=model, **fields)
                self.models[model] = {**fields, "submitter": account(sender).address}
                self.witnesses[model] = []

        @rule(sender=who, seed=model_seed)
        def attest(self, sender: int, seed: int) -> None:
            model = digest(f"model:{seed}")
            address = account(sender).address
            client = self.clients[sender]
            if model not in self.models:
                with pytest.raises(ModelNotRecorded):
                    client.attest_reproduction(model)
            elif self.models[model]["submitter"] == address:
                with pytest.raises(WitnessIsSubmitter):
                    client.attest_reproduction(model)
            elif address in self.witnesses[model]:
                with pytest.raises(AlreadyWitnessed):
                    client.attest_reproduction(model)
            else:
                client.attest_reproduction(model)
                self.witnesses[model].append(address)

        @invariant()
        def records_read_back_exactly(self) -> None:
            for seed in range(6):
                model = digest(f"model:{seed}")
                expected = self.models.get(model)
                assert self.reader.is_recorded(model) == (expected is not None)
                if expected is None:
                    continue
                provenance = self.reader.get_provenance(model)
                record = provenance.model
                assert record.image_digest == (expected["image_digest"] or ZERO_DIGEST)
                assert list(record.dataset_digests) == expected["dataset_digests"]
                assert record.job_digest == expected["job_digest"]
                assert record.attestation_digest == expected["attestation_digest"]
                assert record.attestation_blob_id == expected["attestation_blob_id"]
                assert record.submitter == expected["submitter"]
                assert list(provenance.witnesses) == self.witnesses[model]
                if provenance.image is not None:
                    image = self.images[record.image_digest]
                    assert (
                        provenance.image.system_toplevel,
                        provenance.image.manifest_blob_id,
                        provenance.image.registrant,
                    ) == image
            for seed in range(4):
                image = digest(f"image:{seed}")
                assert self.reader.is_registered(image) == (image in self.images)

        def teardown(self) -> None:
            """Replaying every event rebuilds exactly the state the views return."""
            contract = self.reader.contract
            logs = self.reader.w3.eth.get_logs(
                {"address": contract.address, "fromBlock": self.deployment.block}
            )
            images: dict[Digest, tuple[Digest, str, str]] = {}
            models: dict[Digest, dict[str, Any]] = {}
            witnesses: dict[Digest, list[str]] = {}
            events = contract.events
            for log in logs:
                topic = Web3.to_hex(log["topics"][0])
                if topic == events.ImageRegistered().topic:
                    args = events.ImageRegistered().process_log(log).args
                    images[Digest.from_bytes32(args.imageDigest)] = (
                        Digest.from_bytes32(args.systemToplevel),
                        blob_id_from_bytes32(args.manifestBlobId),
                        args.registrant,
                    )
                elif topic == events.ModelRecorded().topic:
                    args = events.ModelRecorded().process_log(log).args
                    image = Digest.from_bytes32(args.imageDigest)
                    models[Digest.from_bytes32(args.modelDigest)] = {
                        "image_digest": None if image == ZERO_DIGEST else image,
                        "dataset_digests": [
                            Digest.from_bytes32(d) for d in args.datasetManifestDigests
                        ],
                        "job_digest": Digest.from_bytes32(args.jobDigest),
                        "attestation_digest": Digest.from_bytes32(args.attestationDigest),
                        "attestation_blob_id": blob_id_from_bytes32(args.attestationBlobId),
                        "submitter": args.submitter,
                    }
                    witnesses[Digest.from_bytes32(args.modelDigest)] = []
                else:
                    args = events.ReproductionAttested().process_log(log).args
                    witnesses[Digest.from_bytes32(args.modelDigest)].append(args.witness)
            assert (images, models, witnesses) == (self.images, self.models, self.witnesses)

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
