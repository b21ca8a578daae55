"""Networks and configuration.

The effective configuration is, from weakest to strongest: the network's
preset, the `[networks.<name>]` table of `okai.toml` (in the working
directory, or `OKAI_CONFIG`), then `OKAI_*` environment variables. The `dev`
network reads its endpoints from the local stack's `stack.json` when it runs.

Secrets (chain key, keystore password, Walrus publisher JWT, Fluence API key)
come only from the environment or an eth-account keystore file; they are held
as `SecretStr` so they never print.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from okai.documents import read_document, read_document_if_exists, validation_problem
from okai.errors import ConfigError, ConfigFileError
from okai.inert import inert
from okai.paths import dev_dir, state_dir

WALRUS_PUBLIC_BODY_LIMIT = 10 * 1024 * 1024
"""Public Walrus publishers accept request bodies up to 10 MiB."""

DEV_ANVIL_PORT = 8545
DEV_WALRUS_PORT = 31415


class Network(BaseModel):
    """Everything okai needs to know to talk to one network."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    chain_id: int
    rpc_url: str
    explorer_url: str | None = None
    registry_address: str | None = None
    walrus_aggregators: tuple[str, ...] = ()
    walrus_publisher: str | None = None
    walrus_max_body: int = WALRUS_PUBLIC_BODY_LIMIT
    is_dev: bool = False

    def explorer_link(self, kind: str, value: str) -> str | None:
        """An explorer URL for an `address` or `tx`, when the network has an explorer."""
        return None if self.explorer_url is None else f"{self.explorer_url}/{kind}/{value}"


_WALRUS_TESTNET = {
    "walrus_aggregators": ("https://aggregator.walrus-testnet.walrus.space",),
    "walrus_publisher": "https://publisher.walrus-testnet.walrus.space",
}
# Mainnet has no public publisher: writes need an authenticated one (OKAI_WALRUS_PUBLISHER).
_WALRUS_MAINNET = {
    "walrus_aggregators": ("https://aggregator.walrus-mainnet.walrus.space",),
    "walrus_publisher": None,
}

PRESETS: dict[str, dict[str, Any]] = {
    "dev": {
        "chain_id": 31337,
        "rpc_url": f"http://127.0.0.1:{DEV_ANVIL_PORT}",
        "walrus_aggregators": (f"http://127.0.0.1:{DEV_WALRUS_PORT}",),
        "walrus_publisher": f"http://127.0.0.1:{DEV_WALRUS_PORT}",
        "is_dev": True,
    },
    "coston2": {
        "chain_id": 114,
        "rpc_url": "https://coston2-api.flare.network/ext/C/rpc",
        "explorer_url": "https://coston2-explorer.flare.network",
        **_WALRUS_TESTNET,
    },
    "flare": {
        "chain_id": 14,
        "rpc_url": "https://flare-api.flare.network/ext/C/rpc",
        "explorer_url": "https://flare-explorer.flare.network",
        **_WALRUS_MAINNET,
    },
    "songbird": {
        "chain_id": 19,
        "rpc_url": "https://songbird-api.flare.network/ext/C/rpc",
        "explorer_url": "https://songbird-explorer.flare.network",
        **_WALRUS_MAINNET,
    },
    "coston": {
        "chain_id": 16,
        "rpc_url": "https://coston-api.flare.network/ext/C/rpc",
        "explorer_url": "https://coston-explorer.flare.network",
        **_WALRUS_TESTNET,
    },
}
NETWORK_NAMES = tuple(PRESETS)

TRUST_FIELDS = ("registry_address", "rpc_url", "chain_id")
"""Fields that decide whom a verifier asks: a file in the current folder must not change
them silently on a public network."""

# Environment variables that override one field of the selected network.
_ENV_OVERRIDES = {
    "OKAI_RPC_URL": "rpc_url",
    "OKAI_REGISTRY": "registry_address",
    "OKAI_WALRUS_AGGREGATORS": "walrus_aggregators",
    "OKAI_WALRUS_PUBLISHER": "walrus_publisher",
    "OKAI_WALRUS_MAX_BODY": "walrus_max_body",
}


class Secrets(BaseModel):
    """Secrets read from the environment; `SecretStr` keeps them out of output."""

    model_config = ConfigDict(frozen=True)

    private_key: SecretStr | None = Field(default=None, description="OKAI_PRIVATE_KEY")
    keystore: Path | None = Field(default=None, description="OKAI_KEYSTORE")
    keystore_password: SecretStr | None = Field(default=None, description="OKAI_KEYSTORE_PASSWORD")
    walrus_jwt: SecretStr | None = Field(default=None, description="OKAI_WALRUS_JWT")
    walrus_jwt_command: str | None = Field(default=None, description="OKAI_WALRUS_JWT_COMMAND")
    fluence_api_key: SecretStr | None = Field(default=None, description="OKAI_FLUENCE_API_KEY")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Secrets:
        env = dict(os.environ if env is None else env)

        def secret(name: str) -> SecretStr | None:
            value = env.get(name)
            return SecretStr(value) if value else None

        keystore = env.get("OKAI_KEYSTORE")
        return cls(
            private_key=secret("OKAI_PRIVATE_KEY"),
            keystore=Path(keystore) if keystore else None,
            keystore_password=secret("OKAI_KEYSTORE_PASSWORD"),
            walrus_jwt=secret("OKAI_WALRUS_JWT"),
            walrus_jwt_command=env.get("OKAI_WALRUS_JWT_COMMAND") or None,
            fluence_api_key=secret("OKAI_FLUENCE_API_KEY"),
        )

    @classmethod
    def env_names(cls) -> tuple[str, ...]:
        """The environment variables secrets are read from."""
        return tuple(str(field.description) for field in cls.model_fields.values())

    def masked(self) -> dict[str, str | None]:
        return {
            name: (None if value is None else "set (hidden)")
            for name, value in self.model_dump().items()
        }


class Settings(BaseModel):
    """The effective configuration of one okai invocation."""

    model_config = ConfigDict(frozen=True)

    network: Network
    secrets: Secrets
    config_file: Path | None
    local_overrides: tuple[str, ...] = ()
    """On a public network: the trust-relevant fields (registry, RPC, chain ID) that files
    in the current folder set, as `field (file)`; `okai verify` refuses them unless told."""

    def public_view(self) -> dict[str, Any]:
        """The configuration as shown to users: secrets masked."""
        return {
            "config_file": None if self.config_file is None else str(self.config_file),
            "network": self.network.model_dump(mode="json"),
            "secrets": self.secrets.masked(),
        }


def config_file_path() -> Path | None:
    explicit = os.environ.get("OKAI_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"OKAI_CONFIG names {path}, which does not exist")
        return path
    local = Path.cwd() / "okai.toml"
    return local if local.is_file() else None


def _read_config_file(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    return read_document(path, "toml", error=ConfigFileError)


def _env_overrides(env: dict[str, str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for var, field in _ENV_OVERRIDES.items():
        value = env.get(var)
        if not value:
            continue
        if field == "walrus_aggregators":
            overrides[field] = tuple(url.strip() for url in value.split(",") if url.strip())
        else:
            overrides[field] = value
    return overrides


def stack_file() -> Path:
    """`okai dev up`'s record of the local stack: its processes and endpoints."""
    return dev_dir() / "stack.json"


def read_stack_file() -> dict[str, Any]:
    """What `stack.json` holds; empty while no stack ran."""
    path = stack_file()
    hint = f"stop what runs (`okai dev down`), remove {path} and run `okai dev up` again"
    return read_document_if_exists(path, "json", error=ConfigFileError, hint=hint) or {}


def _dev_stack_overrides() -> dict[str, Any]:
    """Endpoints of the running local stack, if `okai dev up` wrote them."""
    stack = read_stack_file()
    overrides: dict[str, Any] = {}
    if rpc := stack.get("rpc_url"):
        overrides["rpc_url"] = rpc
    if walrus := stack.get("walrus_url"):
        overrides["walrus_aggregators"] = (walrus,)
        overrides["walrus_publisher"] = walrus
    if registry := stack.get("registry_address"):
        overrides["registry_address"] = registry
    return overrides


def deployments_file() -> Path:
    """`okai chain deploy`'s record of the registry on each public network."""
    return state_dir() / "deployments.json"


def read_deployments() -> dict[str, Any]:
    """What `deployments.json` holds, by network name; empty before the first deployment."""
    return (
        read_document_if_exists(
            deployments_file(), "json", error=ConfigFileError, hint="fix or remove it"
        )
        or {}
    )


def _deployed_registry(name: str) -> dict[str, Any]:
    """The registry address `okai chain deploy` saved for this network, if any."""
    entry = read_deployments().get(name)
    if not isinstance(entry, dict):
        return {}
    if not isinstance(address := entry.get("address"), str):
        raise ConfigFileError(
            deployments_file(), f"{name}.address", "missing", hint="fix or remove it"
        )
    return {"registry_address": address}


def _settings_error(
    exc: ValidationError,
    name: str,
    path: Path | None,
    file_table: dict[str, Any],
    env: dict[str, str],
) -> ConfigError:
    """A field that failed validation, named where it was set: variable, file or preset."""
    fields, problem = validation_problem(exc)
    field = ".".join(fields)
    top = fields[0] if fields else None
    variable = next((var for var, key in _ENV_OVERRIDES.items() if key == top), None)
    if variable is not None and env.get(variable):
        return ConfigError(f"{variable}: {problem}")
    if path is not None and top in file_table:
        return ConfigFileError(path, f"networks.{name}.{field}", problem)
    return ConfigError(f"network {name}: field '{inert(field)}': {problem}")


def load_settings(network: str | None = None, env: dict[str, str] | None = None) -> Settings:
    """Resolve the effective configuration for `network` (or OKAI_NETWORK, or the file's)."""
    env = dict(os.environ if env is None else env)
    path = config_file_path()
    file_config = _read_config_file(path)
    name = network or env.get("OKAI_NETWORK") or file_config.get("network") or "dev"
    if name not in PRESETS:
        raise ConfigError(
            f"unknown network {name!r}", hint=f"choose one of: {', '.join(NETWORK_NAMES)}"
        )
    fields: dict[str, Any] = {"name": name, **PRESETS[name]}
    local: dict[str, str] = {}
    if name == "dev":
        fields.update(_dev_stack_overrides())
    else:
        deployed = _deployed_registry(name)
        fields.update(deployed)
        if deployed and "OKAI_HOME" not in env:
            local["registry_address"] = str(deployments_file())
    networks = file_config.get("networks", {})
    file_table = networks.get(name, {}) if isinstance(networks, dict) else None
    if not isinstance(file_table, dict):
        raise ConfigFileError(str(path), f"networks.{name}", "must be a table")
    fields.update(file_table)
    if name != "dev" and path is not None and not env.get("OKAI_CONFIG"):
        local.update({key: str(path) for key in file_table if key in TRUST_FIELDS})
    fields.update(_env_overrides(env))
    try:
        resolved = Network.model_validate(fields)
    except ValidationError as exc:
        raise _settings_error(exc, name, path, file_table, env) from exc
    for key in _env_overrides(env):
        local.pop(key, None)  # an environment variable is an explicit choice
    return Settings(
        network=resolved,
        secrets=Secrets.from_env(env),
        config_file=path,
        local_overrides=tuple(f"{key} ({source})" for key, source in sorted(local.items())),
    )
