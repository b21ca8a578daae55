"""`RegistryClient`: deploy the provenance registry, write records, read them back.

Every call checks once that the RPC endpoint serves the network's chain ID, before
anything is sent. Writes estimate gas (with a margin), sign locally, track the nonce
across several transactions in a row, wait for the receipt, and turn reverts into the
`RegistryError` named by the contract. Reads are `view` calls: never a log scan.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import (
    BadFunctionCallOutput,
    ContractLogicError,
    TransactionNotFound,
    Web3Exception,
    Web3RPCError,
)
from web3.middleware import ExtraDataToPOAMiddleware
from web3.types import TxParams

from okai.chain.artifact import decode_revert, load_artifact
from okai.chain.errors import ChainError, TransactionDropped, TransactionReverted, WrongChainError
from okai.chain.records import (
    ZERO_ADDRESS,
    Deployment,
    ImageRecord,
    ModelRecord,
    Provenance,
    Transaction,
)
from okai.chain.rpc import RetryingHTTPProvider, RetryPolicy
from okai.chain.signer import load_signer
from okai.config import Network, Settings
from okai.digest import ZERO_DIGEST, Digest
from okai.errors import ConfigError, OkaiError
from okai.manifest import blob_id_to_bytes32

GAS_MARGIN = 1.2
"""Gas limit = estimate x margin: state may change a little between estimate and mining."""

PAGE = 100
"""Entries per paged read: the registry's MAX_PAGE."""

RECEIPT_TIMEOUT = 120.0
"""Seconds to wait for a receipt; Flare mines a block about every 1.8 s."""


def _blob_bytes(blob_id: str, field: str) -> bytes:
    try:
        return blob_id_to_bytes32(blob_id)
    except ValueError as exc:
        raise ConfigError(f"{field}: {exc}") from None


class RegistryClient:
    """The provenance registry on one network, through web3.py."""

    def __init__(
        self,
        network: Network,
        *,
        address: str | None = None,
        signer: LocalAccount | None = None,
        retry: RetryPolicy | None = None,
        receipt_timeout: float = RECEIPT_TIMEOUT,
        poll_interval: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.network = network
        self.provider = RetryingHTTPProvider(network.rpc_url, retry or RetryPolicy(), sleep)
        self.w3 = Web3(self.provider)
        if not network.is_dev:
            # Flare blocks carry more extraData than Ethereum's 32 bytes (see flare.md).
            self.w3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
        chosen = address if address is not None else network.registry_address
        self.address: ChecksumAddress | None = None if chosen is None else self._checksum(chosen)
        self.signer = signer
        self.receipt_timeout = receipt_timeout
        self.poll_interval = poll_interval
        self._sleep = sleep
        self._artifact = load_artifact()
        self._chain_checked = False
        self._next_nonce: int | None = None
        self._sent: dict[str, dict[str, Any]] = {}

    @classmethod
    def from_settings(cls, settings: Settings, *, sign: bool = False) -> RegistryClient:
        """A client for the selected network; `sign` loads the key now, so it fails early."""
        signer = load_signer(settings.network, settings.secrets) if sign else None
        return cls(settings.network, signer=signer)

    # ------------------------------------------------------------------ plumbing

    @staticmethod
    def _checksum(address: str) -> ChecksumAddress:
        try:
            return Web3.to_checksum_address(address)
        except ValueError:
            raise ConfigError(f"not an EVM address: {address[:60]!r}") from None

    @contextmanager
    def _rpc(self, what: str) -> Iterator[None]:
        """Translate web3's exceptions into okai errors at one boundary."""
        try:
            yield
        except (OkaiError, TransactionNotFound):
            raise
        except ContractLogicError as exc:
            raise self._reverted(exc, what) from None
        except Web3RPCError as exc:
            hint = None
            if "insufficient funds" in str(exc.message).lower():
                hint = "the signing account needs native tokens for gas (Coston2: C2FLR from "
                hint += "https://faucet.flare.network/coston2)"
            raise ChainError(f"{what}: the node said: {exc.message}", hint=hint) from None
        except BadFunctionCallOutput:
            raise ChainError(
                f"{what}: no registry contract answers at {self.address} on {self.network.name}",
                hint="check the registry address (okai config show), or deploy one",
            ) from None
        except (Web3Exception, OSError, ValueError) as exc:
            raise ChainError(f"{what}: {type(exc).__name__}: {exc}") from None

    def _reverted(self, exc: ContractLogicError, what: str) -> OkaiError:
        data = exc.data
        if isinstance(data, str) and data.startswith("0x"):
            decoded = decode_revert(bytes(HexBytes(data)))
            if decoded is not None:
                return decoded
        return ChainError(f"{what}: the registry reverted: {exc.message or data}")

    def check_chain(self) -> None:
        """Refuse to go on if the endpoint serves another chain than the network's."""
        if self._chain_checked:
            return
        with self._rpc("reading the chain ID"):
            actual = self.w3.eth.chain_id
        if actual != self.network.chain_id:
            raise WrongChainError(
                self.network.name, self.network.chain_id, actual, self.provider.public_url
            )
        self._chain_checked = True

    @property
    def contract(self) -> Contract:
        if self.address is None:
            raise ConfigError(
                f"no registry address for network {self.network.name}",
                hint="run `okai chain deploy` (or `okai dev up` for the local stack), "
                "or set OKAI_REGISTRY",
            )
        return self.w3.eth.contract(address=self.address, abi=self._artifact.abi)

    def _account(self) -> LocalAccount:
        if self.signer is None:
            raise ConfigError("this operation sends a transaction but no signing key was loaded")
        return self.signer

    # ------------------------------------------------------------------ writes

    def _take_nonce(self, sender: str) -> int:
        """The next nonce: the node's pending count, or ours if we are ahead of it."""
        pending = self.w3.eth.get_transaction_count(self._checksum(sender), "pending")
        nonce = pending if self._next_nonce is None else max(self._next_nonce, pending)
        self._next_nonce = nonce + 1
        return nonce

    def _send(self, call: Any, description: str, wait: bool) -> Transaction:
        account = self._account()
        self.check_chain()
        with self._rpc(description):
            estimate = call.estimate_gas({"from": account.address})
            nonce = self._take_nonce(account.address)
        try:
            with self._rpc(description):
                request = call.build_transaction(
                    {
                        "from": account.address,
                        "nonce": nonce,
                        "gas": math.ceil(estimate * GAS_MARGIN),
                        "chainId": self.network.chain_id,
                    }
                )
            signed = account.sign_transaction(request)
            tx_hash = Web3.to_hex(signed.hash)
            self._broadcast(signed.raw_transaction, tx_hash, description)
        except BaseException:
            self._next_nonce = None  # that nonce was not used: re-read it next time
            raise
        self._sent[tx_hash] = {"from": account.address, **request}
        sent = Transaction(tx_hash=tx_hash, nonce=nonce, description=description)
        return self.wait(sent) if wait else sent

    def _broadcast(self, raw: bytes, tx_hash: str, description: str) -> None:
        try:
            with self._rpc(f"sending {description}"):
                self.w3.eth.send_raw_transaction(raw)
        except ChainError:
            # A retried send may be refused ("already known") although an earlier attempt
            # reached the node; then the transaction is in the pool and all is well.
            if not self._known(tx_hash):
                raise

    def _known(self, tx_hash: str) -> bool:
        try:
            with self._rpc("looking up a transaction"):
                self.w3.eth.get_transaction(HexBytes(tx_hash))
        except (ChainError, TransactionNotFound):
            return False
        return True

    def _receipt(self, tx_hash: str) -> Any:
        try:
            with self._rpc("reading a receipt"):
                return self.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
        except TransactionNotFound:
            return None

    def wait(self, tx: Transaction) -> Transaction:
        """Wait for `tx` to be mined; raise the decoded error if it reverted."""
        deadline = time.monotonic() + self.receipt_timeout
        receipt = self._receipt(tx.tx_hash)
        while receipt is None:
            if time.monotonic() >= deadline:
                # The nonce may be free again (dropped) or still taken (pending): re-read it.
                self._next_nonce = None
                raise TransactionDropped(
                    tx.tx_hash,
                    self.receipt_timeout,
                    pending=self._known(tx.tx_hash),
                    link=self.network.explorer_link("tx", tx.tx_hash),
                )
            self._sleep(self.poll_interval)
            receipt = self._receipt(tx.tx_hash)
        if receipt["status"] != 1:
            raise self._revert_reason(tx, receipt)
        return replace(tx, block=int(receipt["blockNumber"]), gas_used=int(receipt["gasUsed"]))

    def _revert_reason(self, tx: Transaction, receipt: Any) -> OkaiError:
        """Replay a reverted transaction as a call to learn the contract's error."""
        request = self._sent.get(tx.tx_hash)
        if request is not None and request.get("to"):
            call: TxParams = {"from": request["from"], "to": request["to"], "data": request["data"]}
            try:
                with self._rpc(tx.description):
                    self.w3.eth.call(call, block_identifier=int(receipt["blockNumber"]))
            except OkaiError as exc:
                if not isinstance(exc, ChainError):
                    return exc
        if request is not None and int(receipt["gasUsed"]) >= int(request["gas"]):
            return TransactionReverted(tx.tx_hash, f"{tx.description} ran out of gas")
        return TransactionReverted(tx.tx_hash, f"{tx.description} failed without a reason")

    def deploy(self) -> Deployment:
        """Deploy a new registry from the committed artifact; the client then points at it."""
        factory = self.w3.eth.contract(abi=self._artifact.abi, bytecode=self._artifact.bytecode)
        tx = self._send(factory.constructor(), "deploying the registry", wait=True)
        receipt = self._receipt(tx.tx_hash)
        self.address = self._checksum(str(receipt["contractAddress"]))
        assert tx.block is not None
        return Deployment(
            address=self.address, chain_id=self.network.chain_id, tx_hash=tx.tx_hash, block=tx.block
        )

    def register_image(
        self,
        image_digest: Digest,
        system_toplevel: Digest,
        manifest_blob_id: str,
        manifest_sha256: Digest,
        *,
        wait: bool = True,
    ) -> Transaction:
        """Register this account's claim about a worker image (write-once per account).

        `system_toplevel` per `system_toplevel_digest`; `manifest_sha256` is the SHA-256 of
        the manifest's bytes on Walrus, so verifiers can authenticate what an aggregator serves.
        """
        call = self.contract.functions.registerImage(
            Digest.parse(image_digest).to_bytes32(),
            Digest.parse(system_toplevel).to_bytes32(),
            _blob_bytes(manifest_blob_id, "manifest blob ID"),
            Digest.parse(manifest_sha256).to_bytes32(),
        )
        return self._send(call, f"registering image {Digest.parse(image_digest).short()}", wait)

    def record_model(
        self,
        *,
        model_digest: Digest,
        image_digest: Digest | None,
        dataset_digests: Sequence[Digest],
        job_digest: Digest,
        attestation_digest: Digest,
        attestation_blob_id: str,
        wait: bool = True,
    ) -> Transaction:
        """Record this account's claim about a model (write-once per account).

        `image_digest` None = unregistered host.
        """
        model = Digest.parse(model_digest)
        call = self.contract.functions.recordModel(
            model.to_bytes32(),
            Digest.parse(image_digest or ZERO_DIGEST).to_bytes32(),
            [Digest.parse(d).to_bytes32() for d in dataset_digests],
            Digest.parse(job_digest).to_bytes32(),
            Digest.parse(attestation_digest).to_bytes32(),
            _blob_bytes(attestation_blob_id, "attestation blob ID"),
        )
        return self._send(call, f"recording model {model.short()}", wait)

    def attest_reproduction(
        self, model_digest: Digest, submitter: str, *, wait: bool = True
    ) -> Transaction:
        """Witness that this account re-trained `submitter`'s claim on `model_digest` bit for bit."""
        model = Digest.parse(model_digest)
        call = self.contract.functions.attestReproduction(
            model.to_bytes32(), self._checksum(submitter)
        )
        return self._send(call, f"witnessing model {model.short()}", wait)

    # ------------------------------------------------------------------ reads

    def _call(self, function: Any, what: str) -> Any:
        self.check_chain()
        with self._rpc(what):
            return function.call()

    def get_image(self, image_digest: Digest, publisher: str) -> ImageRecord:
        """`publisher`'s image claim; `ImageNotRegistered` if there is none."""
        image = Digest.parse(image_digest)
        call = self.contract.functions.getImage(image.to_bytes32(), self._checksum(publisher))
        return ImageRecord.from_chain(image, self._call(call, "reading an image"))

    def get_model(self, model_digest: Digest, submitter: str) -> ModelRecord:
        """`submitter`'s model claim; `ModelNotRecorded` if there is none."""
        model = Digest.parse(model_digest)
        call = self.contract.functions.getModel(model.to_bytes32(), self._checksum(submitter))
        return ModelRecord.from_chain(model, self._call(call, "reading a model"))

    def image_publishers(
        self, image_digest: Digest, start: int = 0, limit: int = PAGE
    ) -> tuple[tuple[str, ...], int]:
        """A page of the accounts that registered `image_digest`, and how many did in all."""
        call = self.contract.functions.imagePublishers(
            Digest.parse(image_digest).to_bytes32(), start, limit
        )
        page, total = self._call(call, "reading image publishers")
        return tuple(page), int(total)

    def model_submitters(
        self, model_digest: Digest, before: str | None = None, limit: int = PAGE
    ) -> tuple[tuple[str, ...], int]:
        """A page of the accounts that recorded `model_digest`, newest first, and how many
        did in all; `before` is the last account of the previous page."""
        call = self.contract.functions.modelSubmitters(
            Digest.parse(model_digest).to_bytes32(),
            self._checksum(before or ZERO_ADDRESS),
            limit,
        )
        page, total = self._call(call, "reading model submitters")
        return tuple(page), int(total)

    def get_witnesses(
        self, model_digest: Digest, submitter: str, start: int = 0, limit: int = PAGE
    ) -> tuple[tuple[str, ...], int]:
        """A page of the witnesses of `submitter`'s claim, and how many there are in all."""
        call = self.contract.functions.witnesses(
            Digest.parse(model_digest).to_bytes32(), self._checksum(submitter), start, limit
        )
        page, total = self._call(call, "reading witnesses")
        return tuple(page), int(total)

    def get_provenance(
        self,
        model_digest: Digest,
        submitter: str,
        publishers: Sequence[str] = (),
        witnesses: Sequence[str] = (),
    ) -> Provenance:
        """`submitter`'s claim, the claims of `publishers` on its image, and which of
        `witnesses` witnessed it: one `eth_call`, whose cost the caller's lists bound."""
        model = Digest.parse(model_digest)
        asked_publishers = [self._checksum(p) for p in publishers]
        asked_witnesses = [self._checksum(w) for w in witnesses]
        record, images, witnessed, count = self._call(
            self.contract.functions.getProvenance(
                model.to_bytes32(), self._checksum(submitter), asked_publishers, asked_witnesses
            ),
            "reading a model",
        )
        model_record = ModelRecord.from_chain(model, record)
        found = tuple(
            ImageRecord.from_chain(model_record.image_digest, image)
            for image in images
            if image[3] != ZERO_ADDRESS
        )
        seen = tuple(w for w, yes in zip(asked_witnesses, witnessed, strict=True) if yes)
        return Provenance(model_record, found, seen, int(count))

    def is_recorded(self, model_digest: Digest, submitter: str) -> bool:
        call = self.contract.functions.isRecorded(
            Digest.parse(model_digest).to_bytes32(), self._checksum(submitter)
        )
        return bool(self._call(call, "reading a model"))

    def is_registered(self, image_digest: Digest, publisher: str | None = None) -> bool:
        """Whether `publisher` (default: any account) registered `image_digest`."""
        digest = Digest.parse(image_digest)
        if publisher is None:
            return self.image_publishers(digest, 0, 1)[1] > 0
        call = self.contract.functions.isRegistered(digest.to_bytes32(), self._checksum(publisher))
        return bool(self._call(call, "reading an image"))

    def has_witnessed(self, model_digest: Digest, submitter: str, account: str) -> bool:
        call = self.contract.functions.hasWitnessed(
            Digest.parse(model_digest).to_bytes32(),
            self._checksum(submitter),
            self._checksum(account),
        )
        return bool(self._call(call, "reading witnesses"))

    def has_registry_code(self, address: str | None = None) -> bool:
        """Whether `address` (default: the client's) holds exactly this okai's registry code."""
        target = address or self.address
        if target is None:
            return False
        self.check_chain()
        with self._rpc("reading contract code"):
            code = self.w3.eth.get_code(self._checksum(target))
        return bytes(code) == bytes(HexBytes(self._artifact.deployed_bytecode))
