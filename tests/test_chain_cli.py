"""`okai chain` and the registry of `okai dev up`, through the CLI and a real anvil.

Most commands run in-process through `okai.cli.app.main` (conftest.call_okai: the same
code path as the installed command, minus a new interpreter importing web3 each time); a
few run as real subprocesses to cover the entry point.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from chain_support import blob_id, digest, rpc
from conftest import call_okai, run_okai
from okai.chain import DEV_PRIVATE_KEY, RegistryClient
from okai.config import load_settings
from okai.dev import stack
from okai.dev.anvil import running_anvil


class Okai:
    """Run `okai ARGS` in-process; returns (exit code, stdout, stderr)."""

    def __call__(self, *args: str) -> tuple[int, str, str]:
        done = call_okai(*args)
        return done.returncode, done.stdout, done.stderr

    def json(self, *args: str) -> Any:
        code, out, err = self("--json", *args)
        assert code == 0, err
        return json.loads(out)


@pytest.fixture
def okai(okai_home: Path) -> Okai:
    return Okai()


def test_dev_registry_records_and_survives_a_restart(okai_home: Path, okai: Okai) -> None:
    up = run_okai("--json", "dev", "up")  # the real command, in its own process
    assert up.returncode == 0, up.stderr
    try:
        address = json.loads(up.stdout)["registry_address"]
        saved = json.loads((okai_home / ".okai" / "dev" / "registry.json").read_text())
        assert saved["address"] == address and saved["chainId"] == 31337

        client = RegistryClient.from_settings(load_settings(), sign=True)
        assert client.address == address and client.has_registry_code()
        client.register_image(
            digest("image"), digest("toplevel"), blob_id("manifest"), digest("manifest")
        )
        client.record_model(
            model_digest=digest("model"),
            image_digest=digest("image"),
            dataset_digests=[digest("data")],
            job_digest=digest("job"),
            attestation_digest=digest("attestation"),
            attestation_blob_id=blob_id("attestation"),
        )

        shown = run_okai("--json", "chain", "show", str(digest("model")))
        assert shown.returncode == 0, shown.stderr
        listed = json.loads(shown.stdout)
        assert listed["claimants"] == 1
        (record,) = listed["claims"]
        assert record["model"]["submitter"] == client.signer.address
        assert record["model"]["imageDigest"] == digest("image")
        assert record["model"]["datasetDigests"] == [digest("data")]
        assert record["images"][0]["systemToplevel"] == digest("toplevel")
        assert record["witnesses"] == [] and record["witnessCount"] == 0
        code, out, _ = okai("chain", "show", str(digest("model")))
        assert code == 0 and digest("job") in out and blob_id("attestation") in out
        images = okai.json("chain", "image", str(digest("image")))
        assert images["publishers"] == 1
        assert images["claims"][0]["manifestBlobId"] == blob_id("manifest")
        assert images["claims"][0]["manifestSha256"] == digest("manifest")

        code, _, err = okai("chain", "show", str(digest("other")))
        assert code == 2 and "is not recorded by any account" in err
        code, _, err = okai("chain", "show", "sha256:nothex")
        assert code == 2 and "not a SHA-256 digest" in err
        code, _, err = okai("chain", "deploy")
        assert code == 2 and "already has a registry" in err

        # Restart: anvil's state persists, so the same registry (and record) is kept.
        assert okai("dev", "down")[0] == 0
        code, _, err = okai("dev", "up")
        assert code == 0 and f"registry already deployed at {address}" in err
        again = okai.json("chain", "show", str(digest("model")))
        assert again["claims"][0]["model"]["jobDigest"] == digest("job")

        fresh = okai.json("chain", "deploy", "--force")
        assert fresh["address"] != address and fresh["network"] == "dev"
        assert stack.read_stack()["registry_address"] == fresh["address"]
        assert not RegistryClient.from_settings(load_settings()).is_recorded(
            digest("model"), client.signer.address
        )
    finally:
        stack.down()


def test_dev_registry_is_redeployed_when_its_code_is_gone(okai_home: Path, okai: Okai) -> None:
    registry_file = okai_home / ".okai" / "dev" / "registry.json"
    registry_file.parent.mkdir(parents=True)
    ghost = {"address": "0x" + "11" * 20, "chainId": 31337, "txHash": "0x" + "22" * 32, "block": 1}
    registry_file.write_text(json.dumps(ghost))
    try:
        code, _, err = okai("dev", "up")
        assert code == 0 and "no current registry code" in err
        address = stack.read_stack()["registry_address"]
        assert address != ghost["address"]
        assert json.loads(registry_file.read_text())["address"] == address
    finally:
        stack.down()


def test_deploy_with_the_dev_key_on_coston2_is_refused(
    okai_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OKAI_PRIVATE_KEY", DEV_PRIVATE_KEY)
    monkeypatch.setenv("OKAI_RPC_URL", "http://127.0.0.1:9")  # never reached
    result = call_okai("--network", "coston2", "chain", "deploy")
    assert result.returncode == 2
    assert "refusing anvil's public dev key" in result.stderr
    assert DEV_PRIVATE_KEY[2:] not in result.stdout + result.stderr
    assert not (okai_home / ".okai" / "deployments.json").exists()


def test_deploy_saves_per_network_after_checking_the_chain(
    okai_home: Path, okai: Okai, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "0x" + "5" * 64
    monkeypatch.setenv("OKAI_PRIVATE_KEY", key)
    with running_anvil() as url:
        monkeypatch.setenv("OKAI_RPC_URL", url)
        # "coston2" served by anvil: the chain ID check refuses before anything is sent.
        code, _, err = okai("--network", "coston2", "chain", "deploy")
        assert code == 2 and "expects chain ID 114" in err and "31337" in err
        assert not (okai_home / ".okai" / "deployments.json").exists()
        # The same endpoint under its real chain ID: deployed and saved for that network.
        rpc(url, "anvil_setBalance", Account.from_key(key).address, hex(10**20))
        (okai_home / "okai.toml").write_text("[networks.coston2]\nchain_id = 31337\n")
        deployed = okai.json("--network", "coston2", "chain", "deploy")
        saved = json.loads((okai_home / ".okai" / "deployments.json").read_text())
        fields = ("address", "chainId", "txHash", "block")
        assert saved == {"coston2": {field: deployed[field] for field in fields}}
        explorer = "https://coston2-explorer.flare.network/address/"
        assert deployed["explorer"] == explorer + deployed["address"]
        assert load_settings("coston2").network.registry_address == deployed["address"]
