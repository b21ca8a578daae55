"""The compiled ProvenanceRegistry, as committed next to this module, and its ABI as
selectors and eth_abi types (light imports: no web3).

`contracts/build.py` writes `artifacts/ProvenanceRegistry.json` from the Solidity source
with the pinned compiler; a test recompiles it and requires identical bytes, so what the
client deploys is always what the source says.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.address import to_checksum_address

from okai.chain.errors import REGISTRY_ERRORS, RegistryError
from okai.digest import Digest
from okai.documents import parse_document

CONTRACT_NAME = "ProvenanceRegistry"
ERROR_PREFIX = CONTRACT_NAME


@dataclass(frozen=True)
class Artifact:
    """ABI, bytecode and compiler settings of the registry contract."""

    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    compiler_version: str
    compiler_settings: dict[str, Any]
    source_sha256: Digest


@cache
def load_artifact() -> Artifact:
    """The committed artifact (read once per process)."""
    path = resources.files("okai.chain") / "artifacts" / f"{CONTRACT_NAME}.json"
    data = parse_document(path.read_bytes(), f"okai/chain/artifacts/{path.name}", "json")
    return Artifact(
        abi=data["abi"],
        bytecode=data["bytecode"],
        deployed_bytecode=data["deployedBytecode"],
        compiler_version=data["compiler"]["version"],
        compiler_settings=data["compiler"]["settings"],
        source_sha256=Digest.parse(data["sourceSha256"]),
    )


def abi_type(param: dict[str, Any]) -> str:
    """The eth_abi type string of an ABI parameter: structs become "(t1,t2,...)"."""
    kind: str = param["type"]
    if not kind.startswith("tuple"):
        return kind
    inner = ",".join(abi_type(component) for component in param["components"])
    return f"({inner}){kind.removeprefix('tuple')}"


@dataclass(frozen=True)
class FunctionSpec:
    """One contract function: its selector and its input and output types."""

    name: str
    selector: bytes
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


@cache
def function_specs() -> dict[str, FunctionSpec]:
    """The contract's functions by name (the registry overloads none)."""
    specs: dict[str, FunctionSpec] = {}
    for item in load_artifact().abi:
        if item["type"] != "function":
            continue
        inputs = tuple(abi_type(param) for param in item["inputs"])
        selector = function_signature_to_4byte_selector(f"{item['name']}({','.join(inputs)})")
        outputs = tuple(abi_type(param) for param in item["outputs"])
        specs[item["name"]] = FunctionSpec(item["name"], selector, inputs, outputs)
    return specs


def checksummed(kind: str, value: Any) -> Any:
    """A decoded value with every address in it checksummed, as web3 returns them."""
    if kind.endswith("]"):
        inner = kind[: kind.rindex("[")]
        return [checksummed(inner, item) for item in value]
    if kind.startswith("("):
        return tuple(checksummed(t, v) for t, v in zip(split_tuple(kind), value, strict=True))
    if kind == "address":
        return to_checksum_address(value)
    return value


def split_tuple(kind: str) -> list[str]:
    """The component types of "(t1,t2,...)", nested tuples kept whole."""
    parts: list[str] = []
    depth, start = 0, 1
    for index, char in enumerate(kind[1:-1], start=1):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(kind[start:index])
            start = index + 1
    parts.append(kind[start:-1])
    return [part for part in parts if part]


@dataclass(frozen=True)
class ErrorSpec:
    name: str
    types: tuple[str, ...]
    error_class: type[RegistryError]


@cache
def error_specs() -> dict[bytes, ErrorSpec]:
    """The contract's custom errors by 4-byte selector, each tied to its Python class."""
    classes = {cls.contract_error: cls for cls in REGISTRY_ERRORS}
    specs: dict[bytes, ErrorSpec] = {}
    for item in load_artifact().abi:
        if item["type"] != "error":
            continue
        types = tuple(param["type"] for param in item["inputs"])
        selector = function_signature_to_4byte_selector(f"{item['name']}({','.join(types)})")
        short = item["name"].removeprefix(ERROR_PREFIX)
        specs[selector] = ErrorSpec(item["name"], types, classes[short])
    return specs


def _python_value(abi_type: str, value: Any) -> Any:
    if abi_type == "bytes32":
        return Digest.from_bytes32(value)
    if abi_type == "address":
        return to_checksum_address(value)
    return value


def decode_revert(data: bytes) -> RegistryError | None:
    """The registry error encoded in revert `data`, or None if it is not one of ours."""
    spec = error_specs().get(data[:4])
    if spec is None:
        return None
    try:
        values = abi_decode(list(spec.types), data[4:])
    except Exception:  # malformed revert data is "not ours", never a crash
        return None
    return spec.error_class(*(_python_value(t, v) for t, v in zip(spec.types, values, strict=True)))
