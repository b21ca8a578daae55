"""The cluster state file: a record of every resource a cluster made.

One JSON file per cluster, `.okai/clusters/<name>.json`, rewritten atomically
(temporary file, fsync, rename) after every change. Before a create the
provider records an intent (kind and name, no id yet); once the create
answers it records the id, before making its next call. So after a crash at
any point, `down` knows everything that may exist and finds what has no id
yet by its unique name.

The status is what okai last recorded, not necessarily reality:

    starting   `up` is creating resources
    up         every node is running
    stopping   `down` is removing resources
    stopped    everything recorded is removed (the file stays as the record)
    failed     `up` or `down` stopped half-way; run `down` (again)
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError
from pydantic.alias_generators import to_camel

from okai.atomic import write_atomically
from okai.documents import document_error, read_document
from okai.errors import DocumentError, UsageError
from okai.paths import state_dir

SCHEMA = "okai.cluster-state/v1"
CLUSTER_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")


class ClusterStatus(StrEnum):
    """What okai last recorded about a cluster (see the module docstring)."""

    STARTING = "starting"
    UP = "up"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


def now() -> datetime:
    return datetime.now(UTC)


class _Record(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", validate_assignment=True
    )


class ResourceRecord(_Record):
    """One resource a cluster made (or was about to make) at a provider."""

    kind: str
    """Provider-specific kind, e.g. `vm`, `storage`, `public_ip`, `security_group`."""
    name: str
    """Unique name given at creation: how an intent without id is found again."""
    provider: str
    id: str | None = None
    """Provider id; `None` while the create has not answered (an intent)."""
    requested_at: datetime = Field(default_factory=now)
    created_at: datetime | None = None
    removed_at: datetime | None = None
    keep: bool = False
    """Left in place by teardown on purpose (e.g. an account-wide SSH key)."""
    attrs: dict[str, Any] = Field(default_factory=dict)

    @property
    def live(self) -> bool:
        """Not yet known to be removed (it may exist)."""
        return self.removed_at is None


class NodeRecord(_Record):
    """A node of the cluster as the provider reported it."""

    rank: int
    name: str
    address: str | None = None
    """Address to reach it over SSH (public IPv4 on Fluence)."""
    resource_id: str | None = None
    attrs: dict[str, Any] = Field(default_factory=dict)


class ClusterState(_Record):
    """The state file of one cluster; every mutating method saves it before returning."""

    schema_: str = Field(default=SCHEMA, alias="schema")
    name: str
    provider: str
    status: ClusterStatus = ClusterStatus.STARTING
    created_at: datetime = Field(default_factory=now)
    updated_at: datetime = Field(default_factory=now)
    error: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    """Provider-specific facts (cluster id, image URL, offer) needed to act on it later."""
    resources: list[ResourceRecord] = Field(default_factory=list)
    nodes: list[NodeRecord] = Field(default_factory=list)

    _path: Path | None = PrivateAttr(default=None)

    # --- files -------------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._path if self._path is not None else state_path(self.name)

    @classmethod
    def create(
        cls,
        name: str,
        provider: str,
        details: dict[str, Any] | None = None,
        root: Path | None = None,
    ) -> Self:
        """A new state file; refuses to overwrite a cluster that may still hold resources."""
        validate_cluster_name(name)
        path = state_path(name, root)
        if path.exists():
            old = cls.load_path(path)
            if old.status != ClusterStatus.STOPPED or old.live_resources():
                raise UsageError(
                    f"cluster {name!r} already exists (status {old.status.value}, "
                    f"{len(old.live_resources())} resource(s) recorded)",
                    hint=f"run `okai cluster down {name}` first, or choose another name",
                )
        state = cls(name=name, provider=provider, details=details or {})
        state._path = path
        state.save()
        _MADE_HERE[path] = state
        return state

    @classmethod
    def made_here(cls, name: str) -> ClusterState | None:
        """The state this process created for `name`, if it did (never another's cluster).

        How `up` finds a cluster whose create finished but was interrupted before
        it could hand the state back.
        """
        return _MADE_HERE.get(state_path(name))

    @classmethod
    def load(cls, name: str, root: Path | None = None) -> Self:
        path = state_path(name, root)
        if not path.exists():
            raise UsageError(
                f"no cluster named {name!r} ({path} does not exist)",
                hint="`okai cluster status` lists the clusters",
            )
        return cls.load_path(path)

    @classmethod
    def load_path(cls, path: Path) -> Self:
        data = read_document(path, "json")
        try:
            state = cls.model_validate(data)
        except ValidationError as exc:
            raise document_error(exc, path) from exc
        if state.schema_ != SCHEMA:
            raise DocumentError(path, "schema", f"expected {SCHEMA}, got {state.schema_!r}")
        state._path = path
        return state

    def save(self) -> None:
        """Write the file atomically: a crash leaves the old or the new file, never half."""
        self.updated_at = now()
        path = self.path
        data = self.model_dump_json(by_alias=True, indent=2).encode("utf-8") + b"\n"
        write_atomically(path, data, mode=0o600)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    # --- resources ---------------------------------------------------------------------------

    def intend(self, kind: str, name: str, **attrs: Any) -> ResourceRecord:
        """Record that `kind` named `name` is about to be created; saved before returning."""
        record = ResourceRecord(kind=kind, name=name, provider=self.provider, attrs=attrs)
        self.resources.append(record)
        self.save()
        return record

    def created(self, record: ResourceRecord, resource_id: str, **attrs: Any) -> ResourceRecord:
        """Record the id a create answered with; saved before returning."""
        record.id = resource_id
        record.created_at = now()
        record.attrs.update(attrs)
        self.save()
        return record

    def add(self, kind: str, name: str, resource_id: str, **attrs: Any) -> ResourceRecord:
        """Record a resource that already exists (made as a side effect of another create)."""
        record = ResourceRecord(
            kind=kind,
            name=name,
            provider=self.provider,
            id=resource_id,
            created_at=now(),
            attrs=attrs,
        )
        self.resources.append(record)
        self.save()
        return record

    def removed(self, record: ResourceRecord) -> None:
        """Record that a resource is gone (or never came to be); saved before returning."""
        record.removed_at = now()
        self.save()

    def find(self, kind: str, name: str) -> ResourceRecord | None:
        return next((r for r in self.resources if r.kind == kind and r.name == name), None)

    def live_resources(self, kind: str | None = None) -> list[ResourceRecord]:
        """Resources that may still exist (and cost), `keep` ones excluded."""
        return [
            r for r in self.resources if r.live and not r.keep and (kind is None or r.kind == kind)
        ]

    def set_status(self, status: ClusterStatus, error: str | None = None) -> None:
        self.status = status
        self.error = error
        self.save()

    def set_nodes(self, nodes: list[NodeRecord]) -> None:
        self.nodes = nodes
        self.save()


_MADE_HERE: dict[Path, ClusterState] = {}


def clusters_dir(root: Path | None = None) -> Path:
    return (root or state_dir()) / "clusters"


def state_path(name: str, root: Path | None = None) -> Path:
    validate_cluster_name(name)
    return clusters_dir(root) / f"{name}.json"


def list_states(root: Path | None = None) -> list[ClusterState]:
    """Every recorded cluster, by name."""
    folder = clusters_dir(root)
    if not folder.is_dir():
        return []
    return [ClusterState.load_path(p) for p in sorted(folder.glob("*.json"))]


def validate_cluster_name(name: str) -> str:
    """Cluster names: lowercase letters, digits and '-', 2 to 32, starting with a letter."""
    if not CLUSTER_NAME_RE.match(name):
        raise UsageError(
            f"invalid cluster name {name!r}",
            hint="use 2 to 32 lowercase letters, digits and '-', starting with a letter",
        )
    return name
