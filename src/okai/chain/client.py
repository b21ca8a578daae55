"""`RegistryClient`: deploy the provenance registry and write records, through web3.py.

Every call checks once that the RPC endpoint serves the network's chain ID, before
anything is sent. Writes estimate gas (with a margin), sign locally, track the nonce
across several transactions in a row, wait for the receipt, and turn reverts into the
`RegistryError` named by the contract. Reads are inherited from `RegistryReader` (plain
JSON-RPC, `view` calls, never a log scan); web3 sends through the same `JsonRpc`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, cast

from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import (
    ContractLogicError,
    TransactionNotFound,
    Web3Exception,
    Web3RPCError,
)
from web3.middleware import ExtraDataToPOAMiddleware
from web3.providers import JSONBaseProvider
from web3.types import RPCEndpoint, RPCResponse, TxParams

from okai.chain.artifact import decode_revert
from okai.chain.errors import ChainError, TransactionDropped, TransactionReverted
from okai.chain.reader import RegistryReader
from okai.chain.records import Deployment, Transaction
from okai.chain.rpc import JsonRpc, RetryPolicy
from okai.chain.signer import load_signer
from okai.config import Network, Settings
from okai.digest import ZERO_DIGEST, Digest
from okai.errors import ConfigError, OkaiError
from okai.manifest import blob_id_to_bytes32
from okai.retry import Sleep

GAS_MARGIN = 1.2
"""Gas limit = estimate x margin: state may change a little between estimate and mining."""

RECEIPT_TIMEOUT = 120.0
"""Seconds to wait for a receipt; Flare mines a block about every 1.8 s."""


def _blob_bytes(blob_id: str, field: str) -> bytes:
    try:
        return blob_id_to_bytes32(blob_id)
    except ValueError as exc:
        raise ConfigError(f"{field}: {exc}") from None


class Web3Transport(JSONBaseProvider):
    """web3's provider: every request goes through the client's `JsonRpc`, so reads and
    writes share one retry policy and one redaction of the endpoint."""

    def __init__(self, rpc: JsonRpc) -> None:
        super().__init__()
        self.rpc = rpc

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        return cast(RPCResponse, self.rpc.send(method, self.encode_rpc_request(method, params)))

    def is_connected(self, show_traceback: bool = False) -> bool:
        return True  # asked nowhere: every call reports its own failure


class RegistryClient(RegistryReader):
    """The provenance registry on one network: its reads, and transactions through web3.py."""

    def __init__(
        self,
        network: Network,
        *,
        address: str | None = None,
        signer: LocalAccount | None = None,
        retry: RetryPolicy | None = None,
        receipt_timeout: float = RECEIPT_TIMEOUT,
        poll_interval: float = 0.5,
        sleep: Sleep = time.sleep,
    ) -> None:
        super().__init__(network, address=address, retry=retry, sleep=sleep)
        self.provider = Web3Transport(self.rpc)
        self.w3 = Web3(self.provider)
        if not network.is_dev:
            # Flare blocks carry more extraData than Ethereum's 32 bytes (see flare.md).
            self.w3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
        self.signer = signer
        self.receipt_timeout = receipt_timeout
        self.poll_interval = poll_interval
        self._sleep = sleep
        self._next_nonce: int | None = None
        self._sent: dict[str, dict[str, Any]] = {}

    @classmethod
    def from_settings(cls, settings: Settings, *, sign: bool = False) -> RegistryClient:
        """A client for the selected network; `sign` loads the key now, so it fails early."""
        signer = load_signer(settings.network, settings.secrets) if sign else None
        return cls(settings.network, signer=signer)

    # ------------------------------------------------------------------ plumbing

    @staticmethod
    def _web3_address(address: str) -> ChecksumAddress:
        return cast(ChecksumAddress, RegistryReader._checksum(address))

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
        except (Web3Exception, OSError, ValueError) as exc:
            raise ChainError(f"{what}: {type(exc).__name__}: {exc}") from None

    def _reverted(self, exc: ContractLogicError, what: str) -> OkaiError:
        data = exc.data
        if isinstance(data, str) and data.startswith("0x"):
            decoded = decode_revert(bytes(HexBytes(data)))
            if decoded is not None:
                return decoded
        return ChainError(f"{what}: the registry reverted: {exc.message or data}")

    @property
    def contract(self) -> Contract:
        address = self._web3_address(self._registry())
        return self.w3.eth.contract(address=address, abi=self._artifact.abi)

    def _account(self) -> LocalAccount:
        if self.signer is None:
            raise ConfigError("this operation sends a transaction but no signing key was loaded")
        return self.signer

    # ------------------------------------------------------------------ writes

    def _take_nonce(self, sender: str) -> int:
        """The next nonce: the node's pending count, or ours if we are ahead of it."""
        pending = self.w3.eth.get_transaction_count(self._web3_address(sender), "pending")
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
            model.to_bytes32(), self._web3_address(submitter)
        )
        return self._send(call, f"witnessing model {model.short()}", wait)
