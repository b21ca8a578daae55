"""Network presets, okai.toml and OKAI_* overrides, secrets that never print."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from okai.config import NETWORK_NAMES, load_settings
from okai.errors import ConfigError

SECRET = "0x" + "5e" * 32


def test_presets_match_the_reference(okai_home: Path) -> None:
    assert set(NETWORK_NAMES) == {"dev", "coston2", "flare", "songbird", "coston"}
    chain_ids = {name: load_settings(name).network.chain_id for name in NETWORK_NAMES}
    assert chain_ids == {"dev": 31337, "coston2": 114, "flare": 14, "songbird": 19, "coston": 16}
    coston2 = load_settings("coston2").network
    assert coston2.rpc_url == "https://coston2-api.flare.network/ext/C/rpc"
    assert coston2.explorer_link("tx", "0xab") == "https://coston2-explorer.flare.network/tx/0xab"
    assert load_settings("flare").network.walrus_publisher is None  # no public mainnet publisher


def test_precedence_preset_then_file_then_environment(
    okai_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (okai_home / "okai.toml").write_text(
        'network = "coston2"\n'
        "[networks.coston2]\n"
        'rpc_url = "https://file.example/rpc"\n'
        'walrus_aggregators = ["https://a.example", "https://b.example"]\n'
    )
    settings = load_settings()
    assert settings.network.name == "coston2"
    assert settings.network.rpc_url == "https://file.example/rpc"
    assert settings.network.walrus_aggregators == ("https://a.example", "https://b.example")
    monkeypatch.setenv("OKAI_RPC_URL", "https://env.example/rpc")
    monkeypatch.setenv("OKAI_WALRUS_AGGREGATORS", "https://c.example, https://d.example")
    settings = load_settings()
    assert settings.network.rpc_url == "https://env.example/rpc"
    assert settings.network.walrus_aggregators == ("https://c.example", "https://d.example")
    assert load_settings("flare").network.name == "flare"  # the command line wins


def test_dev_network_follows_the_running_stack(okai_home: Path) -> None:
    dev = okai_home / ".okai" / "dev"
    dev.mkdir(parents=True)
    (dev / "stack.json").write_text(
        json.dumps({"rpc_url": "http://127.0.0.1:1234", "walrus_url": "http://127.0.0.1:5678"})
    )
    network = load_settings("dev").network
    assert network.rpc_url == "http://127.0.0.1:1234"
    assert network.walrus_aggregators == ("http://127.0.0.1:5678",)
    assert network.walrus_publisher == "http://127.0.0.1:5678"


def test_saved_deployment_gives_the_registry(okai_home: Path) -> None:
    state = okai_home / ".okai"
    state.mkdir()
    (state / "deployments.json").write_text(json.dumps({"coston2": {"address": "0x" + "1" * 40}}))
    assert load_settings("coston2").network.registry_address == "0x" + "1" * 40


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda home: None, "unknown network 'mainnet'"),
        (
            lambda home: (home / "okai.toml").write_text("network = [broken"),
            r"okai\.toml: not valid TOML \(line 1, column 12\): Invalid value",
        ),
        (
            lambda home: (home / "okai.toml").write_text("[networks.dev]\nchain_id = 'x'\n"),
            r"okai\.toml: field 'networks\.dev\.chain_id': Input should be a valid integer",
        ),
        (
            lambda home: (home / "okai.toml").write_text("[networks.dev]\nsurprise = 1\n"),
            r"okai\.toml: field 'networks\.dev\.surprise': unknown field",
        ),
    ],
)
def test_bad_configuration_is_explained(okai_home: Path, setup: object, message: str) -> None:
    setup(okai_home)  # type: ignore[operator]
    network = "mainnet" if "unknown network" in message else None
    with pytest.raises(ConfigError, match=message):
        load_settings(network)


def test_secrets_are_masked_everywhere(okai_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OKAI_PRIVATE_KEY", SECRET)
    monkeypatch.setenv("OKAI_WALRUS_JWT", "jwt-secret-value")
    settings = load_settings()
    assert settings.secrets.private_key is not None
    assert settings.secrets.private_key.get_secret_value() == SECRET
    rendered = json.dumps(settings.public_view()) + repr(settings) + str(settings)
    assert SECRET not in rendered and "jwt-secret-value" not in rendered
    assert settings.public_view()["secrets"]["private_key"] == "set (hidden)"
