"""Teardown: remove everything a cluster's state file records, and stop its billing.

Terminating a VM stops only the VM's charges: its boot disk and public IP are
billed until deleted. So teardown (1) gives recorded intents their ids by
looking their unique names up, (2) terminates the VMs and waits until they are
`terminated`, (3) deletes the public IPs, disks and the security group and
waits until each is `removed`. Not found counts as done, so it is safe to
repeat, and it works from the state file alone after a crash.

Between two calls it stops if a signal asked it to (`interrupt.checkpoint`),
and a rejected API key stops it at the first call: in both cases the state
file is marked `failed` with what is left, and the error names the command
that finishes the job.
"""

from __future__ import annotations

from collections.abc import Callable

from okai.compute import interrupt
from okai.compute.fluence import requests as rq
from okai.compute.fluence.client import FluenceClient
from okai.compute.fluence.errors import (
    FluenceAuthError,
    FluenceConflict,
    FluenceError,
    FluenceNotFound,
)
from okai.compute.fluence.models import ResourceStatus, VmStatus
from okai.compute.fluence.wait import COLLECTIONS, PUBLIC_IP, SECURITY_GROUP, STORAGE, VM, Waiter
from okai.compute.state import ClusterState, ClusterStatus, ResourceRecord
from okai.errors import OperationalError


class Teardown:
    """One teardown run over a state file; `run` raises if anything is left."""

    def __init__(
        self,
        client: FluenceClient,
        waiter: Waiter,
        state: ClusterState,
        report: Callable[[str], None],
    ) -> None:
        self.client = client
        self.waiter = waiter
        self.state = state
        self.report = report
        self.problems: list[str] = []

    def run(self) -> None:
        state = self.state
        why = state.error  # why `up` failed, if it did: kept in the record
        state.set_status(ClusterStatus.STOPPING, error=why)
        try:
            self._resolve_intents()
            self._terminate_vms()
            for kind in (PUBLIC_IP, STORAGE, SECURITY_GROUP):
                self._delete_all(kind)
        except (interrupt.TeardownStopped, FluenceAuthError) as stopped:
            self._record_left(why, stopped.message)
            finish = f"`okai cluster down {state.name}` removes what is left"
            stopped.hint = finish if stopped.hint is None else f"{stopped.hint}; then {finish}"
            raise
        left = state.live_resources()
        if left or self.problems:
            error = self._record_left(why, "; ".join(self.problems[:5]))
            raise OperationalError(error, hint=f"run `okai cluster down {state.name}` again")
        state.set_status(ClusterStatus.STOPPED, error=why)
        self.report(f"cluster {state.name} removed; nothing of it is billed any more")

    def _record_left(self, why: str | None, problem: str) -> str:
        """Mark the cluster `failed`, saying what may still be billed, why, and why it stopped."""
        state = self.state
        names = ", ".join(f"{r.kind} {r.name}" for r in state.live_resources()) or "none"
        error = f"teardown of {state.name} is incomplete; still recorded: {names}"
        if problem:
            error += f" ({problem})"
        if why:
            error += f"; the cluster stopped because: {why}"
        state.set_status(ClusterStatus.FAILED, error=error)
        return error

    def _resolve_intents(self) -> None:
        """Give recorded intents their ids (by unique name), or mark them never created."""
        for record in self.state.live_resources():
            if record.id is not None:
                continue
            interrupt.checkpoint()
            found = self.waiter.by_name(record.kind, record.name)
            if found is None:
                self.state.removed(record)
            else:
                self.state.created(record, str(found["id"]))

    def _terminate_vms(self) -> None:
        state = self.state
        refused: set[str] = set()
        for record in state.live_resources(VM):
            if record.id is None:
                continue
            interrupt.checkpoint()
            self.report(f"terminating VM {record.name}")
            try:
                self.client.send(rq.terminate_vm(record.id), retry=True)
            except FluenceNotFound:
                state.removed(record)
            except FluenceConflict:
                pass  # e.g. already terminating: the wait below tells
            except FluenceAuthError:
                raise  # the same key would be refused for every other call
            except FluenceError as exc:
                refused.add(record.name)
                self.problems.append(f"terminate {record.name}: {exc.message}")

        def awaited() -> list[ResourceRecord]:
            return [r for r in state.live_resources(VM) if r.id and r.name not in refused]

        def check() -> bool | None:
            waiting = awaited()
            vms = {vm.id: vm for vm in self.waiter.by_ids(VM, [r.id or "" for r in waiting])}
            for record in waiting:
                vm = vms.get(record.id)
                if vm is None or vm.status == VmStatus.TERMINATED:
                    state.removed(record)
            return True if not awaited() else None

        if awaited():
            self._wait("VMs terminating", check)

    def _delete_all(self, kind: str) -> None:
        """Delete every recorded resource of `kind` and wait until each is `removed`.

        A resource still attached (409) is retried each round while its VM goes
        away; if a VM could not be terminated, that is reported instead of awaited.
        """
        state = self.state
        path = COLLECTIONS[kind].path
        pending = {r.id: r for r in state.live_resources(kind) if r.id}
        requested: set[str] = set()
        vms_gone = not state.live_resources(VM)
        label = kind.replace("_", " ")

        def check() -> bool | None:
            for resource_id, record in list(pending.items()):
                if resource_id in requested:
                    continue
                interrupt.checkpoint()
                try:
                    self.report(f"deleting {label} {record.name}")
                    self.client.delete(f"{path}/{resource_id}")
                    requested.add(resource_id)
                except FluenceAuthError:
                    raise
                except FluenceNotFound:
                    state.removed(record)
                    del pending[resource_id]
                except FluenceConflict as exc:
                    if not vms_gone:  # attached to a VM that is not going away
                        self.problems.append(f"delete {record.name}: {exc.message}")
                        del pending[resource_id]
            found = {item.id: item for item in self.waiter.by_ids(kind, list(pending))}
            for resource_id, record in list(pending.items()):
                item = found.get(resource_id)
                if item is None or item.status == ResourceStatus.REMOVED:
                    state.removed(record)
                    del pending[resource_id]
            return True if not pending else None

        if pending:
            self._wait(f"{label}s being removed", check)

    def _wait(self, what: str, check: Callable[[], bool | None]) -> None:
        try:
            self.waiter.until(what, self.waiter.poll.teardown_s, check)
        except FluenceAuthError:
            raise
        except FluenceError as exc:
            self.problems.append(exc.message)
