"""`RegistryReader`: read the provenance registry over plain JSON-RPC, without web3.

`okai verify` only reads (the chain ID, the registry's code, a few `view` calls), and
importing web3 costs seconds: this reader encodes the calls with eth_abi from the
committed artifact's ABI and sends them with `JsonRpc`. `RegistryClient` (web3, for
transactions) inherits these reads, so every read is made one way.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_utils.address import to_checksum_address

from okai.chain.artifact import checksummed, decode_revert, function_specs, load_artifact
from okai.chain.errors import ChainError, WrongChainError
from okai.chain.records import ZERO_ADDRESS, ImageRecord, ModelRecord, Provenance
from okai.chain.rpc import JsonRpc, RetryPolicy
from okai.config import Network, Settings
from okai.digest import Digest
from okai.errors import ConfigError
from okai.retry import Sleep

PAGE = 100
"""Entries per paged read: the registry's MAX_PAGE."""


def _hex_bytes(text: object) -> bytes | None:
    if not isinstance(text, str) or not text.startswith("0x"):
        return None
    try:
        return bytes.fromhex(text[2:])
    except ValueError:
        return None


class RegistryReader:
    """The provenance registry on one network, read-only."""

    def __init__(
        self,
        network: Network,
        *,
        address: str | None = None,
        retry: RetryPolicy | None = None,
        sleep: Sleep = time.sleep,
    ) -> None:
        self.network = network
        self.rpc = JsonRpc(network.rpc_url, retry or RetryPolicy(), sleep)
        chosen = address if address is not None else network.registry_address
        self.address: str | None = None if chosen is None else self._checksum(chosen)
        self._artifact = load_artifact()
        self._chain_checked = False

    @classmethod
    def from_settings(cls, settings: Settings) -> RegistryReader:
        return cls(settings.network)

    @property
    def public_url(self) -> str:
        """The RPC URL without credentials, for messages and reports."""
        return self.rpc.public_url

    @staticmethod
    def _checksum(address: str) -> str:
        try:
            return str(to_checksum_address(address))
        except ValueError:
            raise ConfigError(f"not an EVM address: {address[:60]!r}") from None

    def _registry(self) -> str:
        if self.address is None:
            raise ConfigError(
                f"no registry address for network {self.network.name}",
                hint="run `okai chain deploy` (or `okai dev up` for the local stack), "
                "or set OKAI_REGISTRY",
            )
        return self.address

    def _result(self, method: str, params: list[Any], what: str) -> Any:
        """The `result` of one request; a JSON-RPC error becomes a `ChainError`."""
        response = self.rpc.request(method, params)
        error = response.get("error")
        if error is None:
            return response.get("result")
        if not isinstance(error, dict):
            raise ChainError(f"{what}: the node answered with a malformed error")
        data = _hex_bytes(error.get("data"))
        message = str(error.get("message", ""))[:500]
        if data is not None or "revert" in message.lower():
            decoded = None if data is None else decode_revert(data)
            if decoded is not None:
                raise decoded
            detail = message or str(error.get("data"))[:500]
            raise ChainError(f"{what}: the registry reverted: {detail}")
        raise ChainError(f"{what}: the node said: {message}")

    def check_chain(self) -> None:
        """Refuse to go on if the endpoint serves another chain than the network's."""
        if self._chain_checked:
            return
        answer = self._result("eth_chainId", [], "reading the chain ID")
        try:
            actual = int(answer, 16)
        except (TypeError, ValueError):
            raise ChainError(
                f"reading the chain ID: {self.public_url} answered {answer!r:.60}"
            ) from None
        if actual != self.network.chain_id:
            raise WrongChainError(self.network.name, self.network.chain_id, actual, self.public_url)
        self._chain_checked = True

    def _call(self, function: str, args: Sequence[Any], what: str) -> Any:
        """An `eth_call` of a view function: its one output, or the tuple of them."""
        spec = function_specs()[function]
        registry = self._registry()
        data = spec.selector + abi_encode(list(spec.inputs), list(args))
        self.check_chain()
        answer = self._result(
            "eth_call", [{"to": registry, "data": "0x" + data.hex()}, "latest"], what
        )
        raw = _hex_bytes(answer)
        try:
            if not raw:  # no code at the address answers "0x"
                raise ValueError("empty answer")
            values = abi_decode(list(spec.outputs), raw)
        except Exception:  # any undecodable answer: not the registry speaking
            raise ChainError(
                f"{what}: no registry contract answers at {registry} on {self.network.name}",
                hint="check the registry address (okai config show), or deploy one",
            ) from None
        decoded = tuple(checksummed(t, v) for t, v in zip(spec.outputs, values, strict=True))
        return decoded[0] if len(decoded) == 1 else decoded

    def get_image(self, image_digest: Digest, publisher: str) -> ImageRecord:
        """`publisher`'s image claim; `ImageNotRegistered` if there is none."""
        image = Digest.parse(image_digest)
        args = (image.to_bytes32(), self._checksum(publisher))
        return ImageRecord.from_chain(image, self._call("getImage", args, "reading an image"))

    def get_model(self, model_digest: Digest, submitter: str) -> ModelRecord:
        """`submitter`'s model claim; `ModelNotRecorded` if there is none."""
        model = Digest.parse(model_digest)
        args = (model.to_bytes32(), self._checksum(submitter))
        return ModelRecord.from_chain(model, self._call("getModel", args, "reading a model"))

    def image_publishers(
        self, image_digest: Digest, start: int = 0, limit: int = PAGE
    ) -> tuple[tuple[str, ...], int]:
        """A page of the accounts that registered `image_digest`, and how many did in all."""
        args = (Digest.parse(image_digest).to_bytes32(), start, limit)
        page, total = self._call("imagePublishers", args, "reading image publishers")
        return tuple(page), int(total)

    def model_submitters(
        self, model_digest: Digest, before: str | None = None, limit: int = PAGE
    ) -> tuple[tuple[str, ...], int]:
        """A page of the accounts that recorded `model_digest`, newest first, and how many
        did in all; `before` is the last account of the previous page."""
        args = (
            Digest.parse(model_digest).to_bytes32(),
            self._checksum(before or ZERO_ADDRESS),
            limit,
        )
        page, total = self._call("modelSubmitters", args, "reading model submitters")
        return tuple(page), int(total)

    def get_witnesses(
        self, model_digest: Digest, submitter: str, start: int = 0, limit: int = PAGE
    ) -> tuple[tuple[str, ...], int]:
        """A page of the witnesses of `submitter`'s claim, and how many there are in all."""
        args = (Digest.parse(model_digest).to_bytes32(), self._checksum(submitter), start, limit)
        page, total = self._call("witnesses", args, "reading witnesses")
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
        args = (model.to_bytes32(), self._checksum(submitter), asked_publishers, asked_witnesses)
        record, images, witnessed, count = self._call("getProvenance", args, "reading a model")
        model_record = ModelRecord.from_chain(model, record)
        found = tuple(
            ImageRecord.from_chain(model_record.image_digest, image)
            for image in images
            if image[3] != ZERO_ADDRESS
        )
        seen = tuple(w for w, yes in zip(asked_witnesses, witnessed, strict=True) if yes)
        return Provenance(model_record, found, seen, int(count))

    def is_recorded(self, model_digest: Digest, submitter: str) -> bool:
        args = (Digest.parse(model_digest).to_bytes32(), self._checksum(submitter))
        return bool(self._call("isRecorded", args, "reading a model"))

    def is_registered(self, image_digest: Digest, publisher: str | None = None) -> bool:
        """Whether `publisher` (default: any account) registered `image_digest`."""
        digest = Digest.parse(image_digest)
        if publisher is None:
            return self.image_publishers(digest, 0, 1)[1] > 0
        args = (digest.to_bytes32(), self._checksum(publisher))
        return bool(self._call("isRegistered", args, "reading an image"))

    def has_witnessed(self, model_digest: Digest, submitter: str, account: str) -> bool:
        args = (
            Digest.parse(model_digest).to_bytes32(),
            self._checksum(submitter),
            self._checksum(account),
        )
        return bool(self._call("hasWitnessed", args, "reading witnesses"))

    def has_registry_code(self, address: str | None = None) -> bool:
        """Whether `address` (default: the client's) holds exactly this okai's registry code."""
        target = address or self.address
        if target is None:
            return False
        self.check_chain()
        code = self._result(
            "eth_getCode", [self._checksum(target), "latest"], "reading contract code"
        )
        expected = bytes.fromhex(self._artifact.deployed_bytecode.removeprefix("0x"))
        return _hex_bytes(code) == expected
