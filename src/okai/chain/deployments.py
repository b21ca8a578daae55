"""Where each network's registry was deployed, kept under okai's state directory.

Public networks: `.okai/deployments.json`, `{network: {address, chainId, txHash, block}}`,
which `okai.config` reads to find the registry. The local stack: `.okai/dev/registry.json`
(one entry of the same shape), kept across `okai dev down` because anvil's state is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from okai.atomic import write_atomically
from okai.chain.client import RegistryClient
from okai.chain.records import Deployment
from okai.config import Network
from okai.errors import ConfigError
from okai.paths import dev_dir, state_dir


def deployments_file() -> Path:
    return state_dir() / "deployments.json"


def dev_registry_file() -> Path:
    return dev_dir() / "registry.json"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is unreadable: {exc}", hint="fix or remove it") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} does not hold a JSON object", hint="fix or remove it")
    return data


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomically(path, json.dumps(data, indent=2) + "\n")


def load_deployment(network: Network) -> Deployment | None:
    """The saved deployment for `network`, if any."""
    if network.is_dev:
        entry: Any = _read_json(dev_registry_file()) or None
        path = dev_registry_file()
    else:
        entry = _read_json(deployments_file()).get(network.name)
        path = deployments_file()
    if entry is None:
        return None
    try:
        return Deployment.from_json(entry)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: the {network.name} entry is malformed ({exc})") from exc


def save_deployment(network: Network, deployment: Deployment) -> Path:
    """Remember `deployment` as the registry of `network`; returns the file written."""
    if network.is_dev:
        _write_json(dev_registry_file(), deployment.to_json())
        return dev_registry_file()
    deployments = _read_json(deployments_file())
    deployments[network.name] = deployment.to_json()
    _write_json(deployments_file(), deployments)
    return deployments_file()


def deploy_registry(client: RegistryClient, *, force: bool = False) -> Deployment:
    """Deploy a registry and save it; refuses to replace a live one unless `force`."""
    current = client.address
    if current is not None and not force and client.has_registry_code(current):
        raise ConfigError(
            f"network {client.network.name} already has a registry at {current}",
            hint="records live in that registry; pass --force only to start a new, empty one",
        )
    deployment = client.deploy()
    save_deployment(client.network, deployment)
    return deployment
