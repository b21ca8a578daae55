"""The attacks of issue 13, made for real against anvil from a second funded account.

Front-running a model record, squatting an image digest, spamming witnesses, forging the
image manifest on an aggregator, and pointing the verifier at other code: none of them may
forge "verified" for a trusted account's claim, nor block it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from hexbytes import HexBytes

from chain_support import account, rpc, spam_witnesses
from okai.chain import RegistryClient, load_artifact
from okai.chain.dev import dev_network
from okai.digest import Digest
from okai.errors import ExitCode
from okai.manifest import ImageManifest, NixosIdentity
from okai.provenance.receipt import system_toplevel_digest
from okai.tls import tls_context
from okai.verify import ModelTarget, Options, TrustPolicy, VerifyReport, verify_model
from okai.walrus.client import WalrusClient
from provenance_support import (
    FAST_WALRUS_RETRY,
    FLAKE,
    NIXPKGS,
    OTHER_TOPLEVEL,
    Inputs,
    Stack,
    publish_inputs,
    write_run,
)
from provenance_support import stack_fixture as stack_fixture
from test_verify import recorded

HONEST = account(0)
ATTACKER = account(5)
IMAGE_BYTES = b"QFI\xfb fake qcow2 image bytes" * 4
"""The image publish_inputs stores: its digest is known before anyone registers it."""


def trusting(*trainers: str, publishers: tuple[str, ...] = ()) -> TrustPolicy:
    return TrustPolicy(trainers=trainers, publishers=publishers or trainers)


def verify(
    stack: Stack,
    model: Path,
    policy: TrustPolicy,
    options: Options | None = None,
    *,
    registry: RegistryClient | None = None,
    aggregators: list[str] | None = None,
) -> VerifyReport:
    walrus = WalrusClient(
        aggregators or [stack.walrus.url],
        stack.walrus.url,
        retry=FAST_WALRUS_RETRY,
        compute_blob_ids_up_to=0,
        timeout=10.0,
    )
    with walrus:
        return verify_model(
            ModelTarget(path=model),
            options or Options(),
            registry=registry or stack.registry(signer=None),
            walrus=walrus,
            policy=policy,
        )


def status(report: VerifyReport, check_id: str) -> tuple[str, str]:
    check = report.main.checks[check_id]
    return check.status, check.reason


@pytest.fixture(scope="module")
def squatted(stack: Stack) -> Inputs:
    """The attacker registers the honest image digest first, with another toplevel."""
    attacker = stack.registry(signer=ATTACKER)
    attacker.register_image(
        Digest.of_bytes(IMAGE_BYTES),
        system_toplevel_digest(OTHER_TOPLEVEL),
        "squatsquatsquatsquatsquatsquatsquatsquatsqu",
        Digest.of_bytes(b"the attacker's manifest"),
    )
    return publish_inputs(stack)  # the honest publisher still registers


def test_squatting_an_image_digest_neither_blocks_nor_forges(
    stack: Stack, squatted: Inputs, tmp_path: Path
) -> None:
    model = recorded(stack, tmp_path / "run", squatted, values=[31.0])
    deep = Options(deep=True, image=True)

    honest = verify(stack, model, trusting(HONEST.address), deep)
    assert honest.verdict == "verified", [c.reason for c in honest.checks]
    assert status(honest, "image.bytes")[0] == "passed"

    # Trusting the squatter as publisher: its claim names another system.
    fooled = verify(stack, model, trusting(HONEST.address, publishers=(ATTACKER.address,)), deep)
    assert fooled.verdict == "not verified"
    state, why = status(fooled, "image.registered")
    assert state == "failed" and "the registered image's is" in why
    assert fooled.exit_code == ExitCode.VERIFICATION_FAILED


def test_front_running_a_model_record(stack: Stack, squatted: Inputs, tmp_path: Path) -> None:
    run = tmp_path / "run"
    receipt = write_run(run, squatted, values=[32.0])
    model = Digest.parse(receipt.model_sha256)
    # The attacker saw the model and attestation on Walrus and records the digest first,
    # with a job and data of its own.
    attacker = stack.registry(signer=ATTACKER)
    attacker.record_model(
        model_digest=model,
        image_digest=None,
        dataset_digests=[Digest.of_bytes(b"other data")],
        job_digest=Digest.of_bytes(b"another job"),
        attestation_digest=Digest.of_bytes(b"another attestation"),
        attestation_blob_id="frontrunfrontrunfrontrunfrontrunfrontrunfro",
    )
    recorded(stack, run, squatted, values=[32.0])  # the trainer still records

    trained = verify(stack, run / "model.safetensors", trusting(HONEST.address))
    assert trained.verdict == "verified", [c.reason for c in trained.checks]
    state, why = status(trained, "record.exists")
    assert state == "passed" and ATTACKER.address in why and "ignored" in why

    fooled = verify(stack, run / "model.safetensors", trusting(ATTACKER.address))
    assert fooled.verdict == "not verified"
    assert [c.id for c in fooled.failures] == ["attestation.digest", "image.registered"]

    nobody = verify(stack, run / "model.safetensors", TrustPolicy())
    assert nobody.verdict == "unpinned" and nobody.exit_code == ExitCode.NOT_PINNED
    assert {claim.submitter for claim in nobody.claims} == {HONEST.address, ATTACKER.address}
    assert {claim.verdict for claim in nobody.claims} == {"unpinned", "not verified"}


def test_witness_spam_cannot_block_verification(
    stack: Stack, squatted: Inputs, tmp_path: Path
) -> None:
    model_file = recorded(stack, tmp_path / "run", squatted, values=[33.0])
    model = Digest.of_file(model_file)
    policy = trusting(HONEST.address)
    registry = stack.registry(signer=None)
    stack.proxy.reset()
    before = verify(stack, model_file, policy, registry=registry)
    quiet_calls = dict(stack.proxy.calls)
    assert before.verdict == "verified"

    spam_witnesses(stack.anvil_url, stack.registry_address, model, HONEST.address, 20_000)
    page, total = registry.get_witnesses(model, HONEST.address, 19_990, 100)
    assert total == 20_000 and len(set(page)) == 10

    registry = stack.registry(signer=None)
    stack.proxy.reset()
    after = verify(stack, model_file, policy, registry=registry)
    assert after.verdict == "verified", [c.reason for c in after.checks]
    assert dict(stack.proxy.calls) == quiet_calls  # the same RPC calls, whatever the spam
    state, why = status(after, "witnesses")
    assert state == "not checked" and "20000 accounts recorded a reproduction" in why
    # Unpinned, the witnesses come one bounded page at a time.
    listed = verify(stack, model_file, TrustPolicy())
    assert listed.verdict == "unpinned" and len(listed.evaluation.facts.witnesses) == 10


class ForgingAggregator:
    """An aggregator that serves other bytes for one blob ID and forwards the rest."""

    def __init__(self, upstream: str, blob_id: str, forged: bytes) -> None:
        target = f"/v1/blobs/{blob_id}"

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                if self.path == target:
                    body, status = forged, 200
                else:
                    reply = httpx.get(upstream + self.path, timeout=30, verify=tls_context())
                    body, status = reply.content, reply.status_code
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def forger(stack: Stack, squatted: Inputs) -> Iterator[ForgingAggregator]:
    assert squatted.image_manifest_blob is not None
    forged = ImageManifest(
        file_name="okai-worker.qcow2",
        format="qcow2",
        variant="qemu",
        size=len(IMAGE_BYTES),
        sha256=Digest.of_bytes(IMAGE_BYTES),
        blob_id=str(squatted.image_quilt),
        nixos=NixosIdentity(
            system_toplevel=OTHER_TOPLEVEL,
            nixpkgs_revision=NIXPKGS.replace("0", "f"),
            flake_revision=FLAKE.replace("8", "e"),
        ),
    )
    server = ForgingAggregator(
        stack.walrus.url, squatted.image_manifest_blob, forged.canonical_bytes()
    )
    yield server
    server.close()


def test_a_forged_image_manifest_is_caught_and_the_next_aggregator_used(
    stack: Stack, squatted: Inputs, forger: ForgingAggregator, tmp_path: Path
) -> None:
    model = recorded(stack, tmp_path / "run", squatted, values=[34.0])
    policy = trusting(HONEST.address)

    alone = verify(stack, model, policy, aggregators=[forger.url])
    state, why = status(alone, "image.registered")
    assert state == "failed" and f"served by {forger.url}" in why
    assert alone.to_json()["image"]["manifest"] is None  # nothing forged is shown
    assert "f" * 8 not in str(alone.to_json())

    fallback = verify(stack, model, policy, aggregators=[forger.url, stack.walrus.url])
    assert fallback.verdict == "verified", [c.reason for c in fallback.checks]
    shown = fallback.to_json()["image"]["manifest"]
    assert shown["nixpkgsRevision"] == NIXPKGS and shown["describesRegisteredImage"]


def test_a_registry_with_other_code_fails_the_code_check(
    stack: Stack, squatted: Inputs, tmp_path: Path
) -> None:
    model = recorded(stack, tmp_path / "run", squatted, values=[35.0])
    impostor = "0x00000000000000000000000000000000000ba5e0"
    code = HexBytes(load_artifact().deployed_bytecode) + b"\x00"  # same logic, other code
    rpc(stack.anvil_url, "anvil_setCode", impostor, "0x" + bytes(code).hex())
    registry = RegistryClient(dev_network(stack.proxy.url), address=impostor)

    report = verify(stack, model, trusting(HONEST.address), registry=registry)

    assert report.verdict == "not verified"
    state, why = status(report, "record.exists")
    assert state == "failed" and "is not this okai's ProvenanceRegistry" in why
    assert report.to_json()["source"]["registry"].lower() == impostor
