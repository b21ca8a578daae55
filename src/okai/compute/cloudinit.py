"""The `#cloud-config` user data a node boots with.

It carries only public things: the node's hostname, the operator's SSH public
key(s) and small okai files (cluster and job descriptions). Secrets never go
in: Fluence forwards user data verbatim and its operators' logs and backups
may keep it. Every user data is validated against cloud-init's JSON schema
(vendored in `okai/compute/schemas/`, see the README there) and must fit the
16 KiB (UTF-8 bytes) that Fluence accepts; bigger files go over SSH instead.
"""

from __future__ import annotations

import base64
import functools
import importlib.resources
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import jsonschema
import yaml

from okai.documents import parse_document
from okai.errors import UsageError

USER_DATA_LIMIT = 16 * 1024
"""Fluence's cap on `cloudInit.userData`, counted in UTF-8 bytes."""
HEADER = "#cloud-config\n"
SCHEMA_FILE = "schema-cloud-config-v1.json"
_HOSTNAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_MODE_RE = re.compile(r"^0?[0-7]{3,4}$")
_PRIVATE_KEY_RE = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")


class CloudInitError(UsageError):
    """The user data cannot be built: invalid, too large, or it would carry a secret."""


class UserDataTooLarge(CloudInitError):
    """The user data is above Fluence's 16 KiB limit."""

    def __init__(self, size: int, limit: int = USER_DATA_LIMIT) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"the cloud-init user data is {size} bytes, above Fluence's limit of {limit} bytes",
            hint="leave the larger files out of the user data and deliver them over SSH",
        )


class SecretInUserData(CloudInitError):
    """A secret (API key, private key) was about to be put into the user data."""


@dataclass(frozen=True)
class WriteFile:
    """A file cloud-init writes on first boot (`write_files`)."""

    path: str
    """Absolute path on the node; prefer `/var/lib/...` (NixOS owns `/etc`)."""
    content: str | bytes
    permissions: str = "0644"
    owner: str = "root:root"

    def to_cloud_config(self) -> dict[str, Any]:
        path = PurePosixPath(self.path)
        if not path.is_absolute() or ".." in path.parts or "\x00" in self.path:
            raise CloudInitError(f"write_files path must be absolute and plain: {self.path!r}")
        if not _MODE_RE.match(self.permissions):
            raise CloudInitError(f"write_files permissions must be octal: {self.permissions!r}")
        entry: dict[str, Any] = {"path": self.path, "owner": self.owner}
        entry["permissions"] = self.permissions
        if isinstance(self.content, bytes):
            entry["encoding"] = "b64"
            entry["content"] = base64.b64encode(self.content).decode("ascii")
        else:
            entry["content"] = self.content
        return entry

    @classmethod
    def json(cls, path: str, data: Any, permissions: str = "0644") -> WriteFile:
        """A JSON document as a file (compact, to spare the 16 KiB)."""
        text = json.dumps(data, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
        return cls(path, text + "\n", permissions)


@functools.cache
def cloud_config_schema() -> dict[str, Any]:
    """The vendored cloud-init schema (cloud-init 25.3 or later, draft-04)."""
    raw = importlib.resources.files("okai.compute").joinpath("schemas", SCHEMA_FILE).read_bytes()
    return parse_document(raw, f"okai/compute/schemas/{SCHEMA_FILE}", "json")


def validate_cloud_config(config: dict[str, Any]) -> None:
    """Raise `CloudInitError` naming the first field that cloud-init's schema refuses."""
    validator = jsonschema.Draft4Validator(cloud_config_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "(top level)"
        raise CloudInitError(f"cloud-init user data field '{where}': {error.message[:300]}")


def build_cloud_config(
    *,
    hostname: str,
    ssh_authorized_keys: Sequence[str],
    files: Iterable[WriteFile] = (),
) -> dict[str, Any]:
    """The cloud-config document of one node (before rendering)."""
    if not _HOSTNAME_RE.match(hostname):
        raise CloudInitError(
            f"hostname {hostname!r} is not a lowercase DNS label (a-z, 0-9, '-', at most 63)"
        )
    keys = [key.strip() for key in ssh_authorized_keys]
    if not keys or any(not key or "\n" in key for key in keys):
        raise CloudInitError("at least one SSH public key is needed, each on one line")
    config: dict[str, Any] = {
        "hostname": hostname,
        "preserve_hostname": False,
        # Top-level keys go to the image's default user (root on NixOS).
        "ssh_authorized_keys": keys,
    }
    entries = [f.to_cloud_config() for f in files]
    if entries:
        config["write_files"] = entries
    return config


class _Dumper(yaml.SafeDumper):  # type: ignore[misc]
    """Multi-line strings as literal blocks, so file contents stay readable on the node."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> Any:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def render_user_data(config: dict[str, Any]) -> str:
    """`#cloud-config` plus the document as YAML, checked to read back unchanged."""
    body: str = yaml.dump(
        config, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1 << 16
    )
    text = HEADER + body
    if yaml.safe_load(text) != config:  # would be a PyYAML bug; never ship what we did not mean
        raise CloudInitError("the rendered user data does not read back as built")
    return text


def user_data_size(text: str) -> int:
    """Size as Fluence counts it: UTF-8 bytes."""
    return len(text.encode("utf-8"))


def check_no_secrets(text: str, secrets: Iterable[str] = ()) -> None:
    """Refuse user data that contains a private key or any of `secrets` (never echoed)."""
    if _PRIVATE_KEY_RE.search(text):
        raise SecretInUserData("the cloud-init user data would contain a private key")
    for secret in secrets:
        if secret and secret in text:
            raise SecretInUserData(
                "the cloud-init user data would contain a secret (an API key, token or password)",
                hint="user data is not private on Fluence; deliver secrets over SSH",
            )


def build_user_data(
    *,
    hostname: str,
    ssh_authorized_keys: Sequence[str],
    files: Iterable[WriteFile] = (),
    secrets: Iterable[str] = (),
    limit: int = USER_DATA_LIMIT,
) -> str:
    """The user data of one node: built, schema-checked, secret-free and under `limit` bytes."""
    config = build_cloud_config(
        hostname=hostname, ssh_authorized_keys=ssh_authorized_keys, files=files
    )
    validate_cloud_config(config)
    text = render_user_data(config)
    check_no_secrets(text, secrets)
    size = user_data_size(text)
    if size > limit:
        raise UserDataTooLarge(size, limit)
    return text
