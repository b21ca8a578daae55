"""Gas per registry operation on anvil (cancun), against a plain-storage baseline.

    python benchmarks/chain_gas.py        (with PYTHONPATH=src, or the project venv)

The okai registry keeps each model claim as the code of a small data contract (SSTORE2),
claims keyed by (digest, account) and listed through each claim's previous submitter.
The baseline is the same per-account claims kept in ordinary storage slots and arrays, compiled in this run with
the same pinned solc and settings; the ratio column is okai / baseline. Fees assume 30 gwei
(a Coston2 receipt in flare.md); real prices vary.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eth_account import Account
from web3 import Web3

from okai.chain import RegistryClient
from okai.chain.dev import dev_network
from okai.chain.signer import DEV_PRIVATE_KEY
from okai.dev.anvil import running_anvil
from okai.digest import Digest
from okai.manifest import blob_id_from_bytes32

REPO = Path(__file__).resolve().parent.parent
BUDGET = 150_000
GWEI_PRICE = 30

BASELINE = """// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @notice Baseline for benchmarks/chain_gas.py: the same per-account claims in plain storage.
contract PlainRegistry {
    struct Image { bytes32 systemToplevel; bytes32 manifestBlobId; bytes32 manifestSha256;
        address publisher; uint64 registeredAt; }
    struct Model {
        bytes32 imageDigest; bytes32[] datasetManifestDigests; bytes32 jobDigest;
        bytes32 attestationDigest; bytes32 attestationBlobId; address submitter; uint64 recordedAt;
    }
    error Exists(bytes32 digest);
    error ImageNotRegistered(bytes32 digest);
    event ImageRegistered(bytes32 indexed imageDigest, address indexed publisher,
        bytes32 systemToplevel, bytes32 manifestBlobId, bytes32 manifestSha256);
    event ModelRecorded(bytes32 indexed modelDigest, bytes32 indexed imageDigest,
        address indexed submitter);
    mapping(bytes32 => mapping(address => Image)) private _images;
    mapping(bytes32 => address[]) private _publishers;
    mapping(bytes32 => mapping(address => Model)) private _models;
    mapping(bytes32 => address[]) private _submitters;

    function registerImage(bytes32 imageDigest, bytes32 systemToplevel, bytes32 manifestBlobId,
        bytes32 manifestSha256) external {
        if (_images[imageDigest][msg.sender].publisher != address(0)) revert Exists(imageDigest);
        _images[imageDigest][msg.sender] = Image(systemToplevel, manifestBlobId, manifestSha256,
            msg.sender, uint64(block.timestamp));
        _publishers[imageDigest].push(msg.sender);
        emit ImageRegistered(imageDigest, msg.sender, systemToplevel, manifestBlobId, manifestSha256);
    }

    function recordModel(bytes32 modelDigest, bytes32 imageDigest, bytes32[] calldata datasets,
        bytes32 jobDigest, bytes32 attestationDigest, bytes32 attestationBlobId) external {
        if (_models[modelDigest][msg.sender].submitter != address(0)) revert Exists(modelDigest);
        if (imageDigest != 0 && _publishers[imageDigest].length == 0) revert ImageNotRegistered(imageDigest);
        _models[modelDigest][msg.sender] = Model(imageDigest, datasets, jobDigest,
            attestationDigest, attestationBlobId, msg.sender, uint64(block.timestamp));
        _submitters[modelDigest].push(msg.sender);
        emit ModelRecorded(modelDigest, imageDigest, msg.sender);
    }
}
"""


def _build_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "contracts_build", REPO / "contracts" / "build.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compile_baseline() -> tuple[list[Any], str]:
    build = _build_module()
    document = json.loads((REPO / "contracts" / "solc-input.json").read_text())
    document["sources"] = {"PlainRegistry.sol": {"content": BASELINE}}
    output = build.compile_standard_json(document)["contracts"]["PlainRegistry.sol"][
        "PlainRegistry"
    ]
    return output["abi"], "0x" + output["evm"]["bytecode"]["object"]


def digest(seed: str) -> Digest:
    return Digest.of_bytes(seed.encode())


def blob(seed: str) -> str:
    return blob_id_from_bytes32(digest(seed).to_bytes32())


def measure_okai(url: str) -> dict[str, int]:
    dev = Account.from_key(DEV_PRIVATE_KEY)
    client = RegistryClient(dev_network(url), signer=dev)
    deployment = client.deploy()
    receipt = client.w3.eth.get_transaction_receipt(deployment.tx_hash)
    gas = {"deploy": int(receipt["gasUsed"])}
    image = digest("image")
    gas["register image"] = (
        client.register_image(image, digest("toplevel"), blob("m"), digest("mb")).gas_used or 0
    )
    for count in (1, 4, 16):
        tx = client.record_model(
            model_digest=digest(f"model{count}"),
            image_digest=image,
            dataset_digests=[digest(f"data{count}:{i}") for i in range(count)],
            job_digest=digest(f"job{count}"),
            attestation_digest=digest(f"att{count}"),
            attestation_blob_id=blob(f"att{count}"),
        )
        gas[f"record model, {count} dataset{'s' if count > 1 else ''}"] = tx.gas_used or 0
    Account.enable_unaudited_hdwallet_features()
    mnemonic = "test test test test test test test test test test test junk"
    for index, label in ((1, "first"), (2, "second")):
        witness = Account.from_mnemonic(mnemonic, account_path=f"m/44'/60'/0'/0/{index}")
        other = RegistryClient(dev_network(url), address=client.address, signer=witness)
        tx = other.attest_reproduction(digest("model1"), dev.address)
        gas[f"attest reproduction ({label} witness)"] = tx.gas_used or 0
    second = RegistryClient(
        dev_network(url),
        address=client.address,
        signer=Account.from_mnemonic(mnemonic, account_path="m/44'/60'/0'/0/4"),
    )
    tx = second.record_model(
        model_digest=digest("model1"),
        image_digest=image,
        dataset_digests=[digest("data1:0")],
        job_digest=digest("job1"),
        attestation_digest=digest("att1"),
        attestation_blob_id=blob("att1"),
    )
    gas["record model, 1 dataset, 2nd claim"] = tx.gas_used or 0
    return gas


def measure_baseline(url: str) -> dict[str, int]:
    abi, bytecode = compile_baseline()
    w3 = Web3(Web3.HTTPProvider(url))
    sender = w3.eth.accounts[3]  # an unlocked anvil account, fresh nonce space
    wait: Callable[[Any], Any] = lambda tx_hash: w3.eth.wait_for_transaction_receipt(tx_hash)  # noqa: E731
    receipt = wait(
        w3.eth.contract(abi=abi, bytecode=bytecode).constructor().transact({"from": sender})
    )
    gas = {"deploy": receipt["gasUsed"]}
    contract = w3.eth.contract(address=receipt["contractAddress"], abi=abi)
    image = digest("image").to_bytes32()
    call = contract.functions.registerImage(
        image, digest("toplevel").to_bytes32(), digest("m").to_bytes32(), digest("mb").to_bytes32()
    )
    gas["register image"] = wait(call.transact({"from": sender}))["gasUsed"]
    for count in (1, 4, 16):
        call = contract.functions.recordModel(
            digest(f"model{count}").to_bytes32(),
            image,
            [digest(f"data{count}:{i}").to_bytes32() for i in range(count)],
            digest(f"job{count}").to_bytes32(),
            digest(f"att{count}").to_bytes32(),
            digest(f"att-blob{count}").to_bytes32(),
        )
        label = f"record model, {count} dataset{'s' if count > 1 else ''}"
        gas[label] = wait(call.transact({"from": sender}))["gasUsed"]
    call = contract.functions.recordModel(
        digest("model1").to_bytes32(),
        image,
        [digest("data1:0").to_bytes32()],
        digest("job1").to_bytes32(),
        digest("att1").to_bytes32(),
        digest("att-blob1").to_bytes32(),
    )
    gas["record model, 1 dataset, 2nd claim"] = wait(call.transact({"from": w3.eth.accounts[5]}))[
        "gasUsed"
    ]
    return gas


def main() -> int:
    with running_anvil() as url:
        ours = measure_okai(url)
        baseline = measure_baseline(url)
    print(f"{'operation':<36} {'okai gas':>10} {'plain gas':>10} {'ratio':>6} {'FLR @30 gwei':>13}")
    for operation, used in ours.items():
        base = baseline.get(operation)
        ratio = f"{used / base:.2f}" if base else "-"
        base_text = f"{base:,}" if base else "-"
        fee = used * GWEI_PRICE / 1e9
        print(f"{operation:<36} {used:>10,} {base_text:>10} {ratio:>6} {fee:>13.5f}")
    one = ours["record model, 1 dataset"]
    verdict = "within" if one <= BUDGET else "OVER"
    print(f"\nrecord model with one dataset: {one:,} gas, {verdict} the {BUDGET:,} budget")
    return 0 if one <= BUDGET else 1


if __name__ == "__main__":
    sys.exit(main())
