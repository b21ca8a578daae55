"""The files a node works from: where they live, and the cluster file `okai.cluster/v1`.

A job reaches a node as three files in `<state dir>/job/`, written in this
order, each whole and renamed into place: `peers` (the members' addresses, one
per line; the NixOS module opens the cluster ports to them), `job.json` (the
`okai.job/v1` document), then `cluster.json`, whose arrival starts the agent.

The cluster file says where this node stands in the cluster::

    {"schema": "okai.cluster/v1", "clusterId": "demo", "nodes": 2, "nodeRank": 1,
     "rendezvous": {"host": "10.0.0.5", "port": 29400, "id": "digits-20250101-120000-ab12"},
     "localAddr": "10.0.0.6",                      # optional: this node's cluster address
     "image": {"systemToplevel": ..., ...},        # optional: the registered image expected
     "allowUnregisteredHost": false,               # optional: run on a non-okai host
     "walrus": {"network": "coston2", "aggregators": [...], "publisher": ...},  # optional
     "publish": true,                              # optional: rank 0 stores model+receipt
     "provider": "fluence",                        # optional: recorded in the receipt
     "maxRestarts": 3, "joinTimeout": 600}         # optional: torchrun's elasticity

Secrets (the Walrus publisher's JWT) never travel in these files or in user
data: `okai cluster up` writes them to `SECRETS_FILE` over SSH before
`cluster.json`, systemd hands them to the agent as a credential, and the agent
puts them in its environment (`load_secrets`), which its workers inherit.

`rendezvous.host` is the address of the node with `nodeRank` 0, which hosts
torchrun's rendezvous store. `rendezvous.id` is also the run ID: every
node's run directory is `<state dir>/runs/<id>/`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Annotated, ClassVar

from pydantic import AfterValidator, Field

from okai.errors import UsageError
from okai.manifest import DigestField, Document, Model

DEFAULT_STATE_DIR = Path("/var/lib/okai")
"""Where the NixOS module keeps the agent's state (the service's StateDirectory)."""
STATE_DIR_ENV = "OKAI_NODE_STATE_DIR"
JOB_DIR = "job"
PEERS_FILE = "peers"
JOB_FILE = "job.json"
CLUSTER_FILE = "cluster.json"
DELIVERY_ORDER = (PEERS_FILE, JOB_FILE, CLUSTER_FILE)
"""The order files are written in: cluster.json last, because it starts the agent."""
SECRETS_CREDENTIAL = "okai-node.secrets"
"""The systemd credential holding the agent's secrets as `NAME=value` lines."""
SECRETS_FILE = Path("/run/credstore") / SECRETS_CREDENTIAL
"""Where `okai cluster up` writes the secrets over SSH: systemd's system credential store
(root-only, tmpfs). The agent's unit imports it (ImportCredential=), so only that service
reads it, under $CREDENTIALS_DIRECTORY; never the disk, the Nix store or a folder
another unit owns."""
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
RUNS_DIR = "runs"
STATUS_FILE = "status.json"
AGENT_LOG = "agent.log"
DEFAULT_RENDEZVOUS_PORT = 29400
"""The NixOS module's `rendezvousPort`: the port its firewall opens to the peers."""

_RUN_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_HOST = re.compile(r"^[A-Za-z0-9.:_-]{1,253}$")


def environment_file(values: Mapping[str, str]) -> bytes:
    """`NAME=value` lines as systemd's EnvironmentFile reads them; refuses what it would misread.

    The message never quotes a value: these are secrets.
    """
    lines = []
    for name, value in values.items():
        if not _ENV_NAME.match(name):
            raise UsageError(f"not an environment variable name: {name[:40]!r}")
        if not value or any(c in value for c in "\n\r\0\\'\"$`") or value != value.strip():
            raise UsageError(
                f"{name} cannot be passed to a node: it is empty, or holds a line break, "
                "quote, backslash, dollar or surrounding space",
                hint="tokens are single-line; check how the variable was set",
            )
        lines.append(f"{name}={value}\n")
    return "".join(lines).encode()


def load_secrets(env: MutableMapping[str, str]) -> list[str]:
    """Add the secrets credential's variables to `env`; their names (none without one)."""
    directory = env.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return []
    path = Path(directory) / SECRETS_CREDENTIAL
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise UsageError(f"cannot read the secrets credential {path}: {exc.strerror}") from exc
    values = {}
    for number, raw in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, equals, value = line.partition("=")
        # The message never quotes a value: these are secrets.
        if not equals or not _ENV_NAME.match(name) or not value:
            raise UsageError(f"{path}, line {number}: not a NAME=value line")
        values[name] = value
    env.update(values)
    return sorted(values)


def _host(value: str) -> str:
    if not _HOST.match(value) or value.startswith("-"):
        raise ValueError(f"not a host name or address: {value[:80]!r}")
    return value


Host = Annotated[str, AfterValidator(_host)]


class RendezvousSpec(Model):
    """Where torchrun's c10d rendezvous meets: a host of the cluster, a port, an ID."""

    host: Host
    port: int = Field(ge=1, le=65535)
    id: str = Field(pattern=_RUN_ID)

    @property
    def endpoint(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class ImageExpectation(Model):
    """The registered okai image every node must be running (from its `okai.image/v1`)."""

    system_toplevel: str = Field(pattern=r"^/nix/store/[0-9a-z]{32}-[^/]+$")
    nixpkgs_revision: str | None = Field(default=None, pattern=r"^[0-9a-f]{40}$")
    flake_revision: str | None = Field(default=None, min_length=1)
    sha256: DigestField | None = None
    """The image file's digest, for the record (a node cannot measure the disk it booted)."""


class WalrusEndpoints(Model):
    """Where nodes read data and store outputs; overrides the node's own configuration."""

    network: str | None = None
    aggregators: tuple[str, ...] = ()
    publisher: str | None = None


class ClusterFile(Document):
    """`okai.cluster/v1`: one node's place in a cluster (see the module docstring)."""

    KIND: ClassVar[str] = "cluster"

    cluster_id: str = Field(min_length=1, max_length=128)
    nodes: int = Field(ge=1, le=1024)
    node_rank: int = Field(ge=0)
    rendezvous: RendezvousSpec
    local_addr: Host | None = None
    image: ImageExpectation | None = None
    allow_unregistered_host: bool = False
    walrus: WalrusEndpoints | None = None
    publish: bool = True
    provider: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9-]{0,31}$")
    """Which provider made the node (`local`, `fluence`): the receipt records it."""
    max_restarts: int = Field(default=3, ge=0, le=100)
    join_timeout: int = Field(default=600, ge=10, le=86_400)

    @property
    def run_id(self) -> str:
        return self.rendezvous.id


def default_state_dir() -> Path:
    """`$OKAI_NODE_STATE_DIR`, else /var/lib/okai (the NixOS service's state directory)."""
    raw = os.environ.get(STATE_DIR_ENV)
    return Path(raw) if raw else DEFAULT_STATE_DIR


def peers_text(addresses: list[str]) -> str:
    """The `peers` file: one address per line, each once."""
    unique = list(dict.fromkeys(a for a in addresses if a))
    return "".join(f"{address}\n" for address in unique)
