"""Reading and waiting on Fluence resources: by ids, by exact name, until a deadline.

Resource kinds are the names the cluster state file records. Fluence has no
GET-by-id for most kinds, so reads go through the lists (`ids=`), and a name
filter is a case-insensitive ILIKE, so names are compared exactly here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from okai.compute import interrupt
from okai.compute.fluence.client import FluenceClient, Params, indexed, repeated
from okai.compute.fluence.errors import FluenceTimeout
from okai.compute.fluence.models import Dto, PublicIp, SecurityGroup, Storage, Vm

VM, STORAGE, PUBLIC_IP, SECURITY_GROUP, SSH_KEY = (
    "vm", "storage", "public_ip", "security_group", "ssh_key"
)  # fmt: skip
DEAD = frozenset({"terminated", "removed"})

T = TypeVar("T")


@dataclass(frozen=True)
class Collection:
    """Where a kind of resource is listed, and how to leave out the dead ones."""

    path: str
    model: type[Dto]
    live_only: Params = ()


COLLECTIONS: dict[str, Collection] = {
    VM: Collection("/v2/vms", Vm, indexed("excludeStatus", ["terminated"])),
    STORAGE: Collection("/v1/storages", Storage, indexed("excludeStatus", ["removed"])),
    PUBLIC_IP: Collection("/v1/public_ips", PublicIp, indexed("excludeStatus", ["removed"])),
    # Security groups filter on one status only: dead ones are dropped client-side.
    SECURITY_GROUP: Collection("/v1/security_groups", SecurityGroup),
}


@dataclass(frozen=True, kw_only=True)
class PollConfig:
    """How often and how long to wait for Fluence's asynchronous changes."""

    interval_s: float = 5.0
    vm_launch_s: float = 1800.0
    """VMs usually launch within minutes; the official provider waits up to 30 min."""
    resource_s: float = 300.0
    teardown_s: float = 900.0


class Waiter:
    """Lists resources and polls them until a condition holds or a deadline passes."""

    def __init__(
        self,
        client: FluenceClient,
        poll: PollConfig,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.poll = poll
        self._sleep = sleep

    def until(self, what: str, timeout_s: float, check: Callable[[], T | None]) -> T:
        """Call `check` every poll interval until it returns a value (it raises on failure)."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = check()
            if value is not None:
                return value
            if time.monotonic() >= deadline:
                raise FluenceTimeout(
                    f"{what} did not happen within {timeout_s:g} s",
                    hint="Fluence may be slow or out of capacity",
                )
            interrupt.checkpoint()  # a teardown asked to stop does not wait any longer
            self._sleep(self.poll.interval_s)

    def by_ids(self, kind: str, ids: Sequence[str]) -> list[Any]:
        """The resources of `kind` with these ids that still exist, decoded."""
        if not ids:
            return []
        collection = COLLECTIONS[kind]
        wanted = set(ids)
        items = self.client.paginate(collection.path, repeated("ids", ids))
        return [
            collection.model.decode(item, collection.path)
            for item in items
            if item.get("id") in wanted
        ]

    def by_name(self, kind: str, name: str) -> dict[str, Any] | None:
        """The live resource of `kind` named exactly `name`, if any."""
        collection = COLLECTIONS[kind]
        items = self.client.paginate(collection.path, [("name", name), *collection.live_only])
        return next(
            (i for i in items if i.get("name") == name and i.get("status") not in DEAD), None
        )

    def names_taken(self, kind: str, prefix: str, names: set[str]) -> list[str]:
        """Which of `names` live resources of `kind` already carry (one list call)."""
        collection = COLLECTIONS[kind]
        items = self.client.paginate(
            collection.path, [("name", f"{prefix}%"), *collection.live_only]
        )
        return [i["name"] for i in items if i.get("name") in names and i.get("status") not in DEAD]
