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
from okai.config import Network, deployments_file, read_deployments
from okai.documents import read_document_if_exists
from okai.errors import ConfigError, ConfigFileError
from okai.paths import dev_dir

FIX = "fix or remove it"


def dev_registry_file() -> Path:
    return dev_dir() / "registry.json"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomically(path, json.dumps(data, indent=2) + "\n")


def load_deployment(network: Network) -> Deployment | None:
    """The saved deployment for `network`, if any."""
    if network.is_dev:
        path = dev_registry_file()
        entry = read_document_if_exists(path, "json", error=ConfigFileError, hint=FIX) or None
        field = None
    else:
        path = deployments_file()
        entry = read_deployments().get(network.name)
        field = network.name
    if entry is None:
        return None
    try:
        return Deployment.from_json(entry)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigFileError(path, field, f"not a deployment ({exc})", hint=FIX) from exc


def save_deployment(network: Network, deployment: Deployment) -> Path:
    """Remember `deployment` as the registry of `network`; returns the file written."""
    if network.is_dev:
        _write_json(dev_registry_file(), deployment.to_json())
        return dev_registry_file()
    deployments = read_deployments()
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
