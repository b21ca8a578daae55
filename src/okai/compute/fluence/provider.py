"""Fluence as a cluster provider: plan, bring up, list and tear down N VMs.

`up` creates, in order: the SSH key (if not registered yet), one public IPv4
per node (so every member's address is known before any VM boots), a security
group that admits only SSH and the members, then the VMs from the image URL
with their cloud-init user data; it waits until all are `launched` and binds
the group to their interfaces. Each create is recorded in the cluster state
file (intent first, id as soon as it answers), and any failure or Ctrl-C rolls
back everything recorded. There are no idempotency keys: an ambiguous create
(timeout, 5xx) is never re-sent before the same unique name has been looked up.

`down` is safe to repeat and works from the state file alone: it terminates
the VMs, waits until they are `terminated`, then deletes the disks and public
IPs (which terminating does not free) and the security group, and waits until
each is `removed`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from okai.compute import interrupt
from okai.compute.cloudinit import SecretInUserData, WriteFile, build_user_data
from okai.compute.fluence import requests as rq
from okai.compute.fluence.client import FluenceClient, PlannedRequest, redact_url
from okai.compute.fluence.cost import balance_shortfall, estimate_cost, read_balance
from okai.compute.fluence.discovery import Offer, find_offers
from okai.compute.fluence.errors import (
    FluenceAuthError,
    FluenceError,
    FluenceUnavailable,
    MissingScopes,
    ResourceFailed,
    VmFailed,
)
from okai.compute.fluence.models import (
    VM_WAIT_STATUSES,
    NetworkInterface,
    PublicIp,
    ResourceStatus,
    SecurityGroup,
    ServiceStatus,
    SshKey,
    Vm,
    VmStatus,
)
from okai.compute.fluence.spec import FluenceClusterSpec, FluencePlan, Member, NodeContext
from okai.compute.fluence.teardown import Teardown
from okai.compute.fluence.wait import (
    PUBLIC_IP,
    SECURITY_GROUP,
    SSH_KEY,
    STORAGE,
    VM,
    PollConfig,
    Waiter,
)
from okai.compute.rollback import roll_back
from okai.compute.ssh import PublicKey
from okai.compute.state import ClusterState, ClusterStatus, NodeRecord, ResourceRecord
from okai.errors import UsageError

log = logging.getLogger("okai.compute.fluence")

PROVIDER = "fluence"
SPEC_VERSION = "0.10.0"
NEEDED_SCOPES = (
    ("clusters:read",), ("prices:read",), ("vms:read",), ("vms:write",),
    ("storage:read",), ("storage:write",), ("public_ip:read",), ("public_ip:write",),
    ("security_group:read", "security_groups:read"), ("security_group:write", "security_groups:write"),
)  # fmt: skip
"""API-key scopes `up` and `down` use; alternatives are spellings the spec mixes up."""


class FluenceProvider:
    """Creates, lists and removes clusters of Fluence VMs; one instance per client."""

    def __init__(
        self,
        client: FluenceClient,
        *,
        poll: PollConfig | None = None,
        report: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.waiter = Waiter(client, poll or PollConfig(), sleep)
        self._report = report or (lambda message: None)

    # --- plan ----------------------------------------------------------------------------------

    def plan(self, spec: FluenceClusterSpec, offer: Offer | None = None) -> FluencePlan:
        """Discovery, cost estimate and the exact requests `up` will send; creates nothing.

        The Fluence part of the pre-flight: raises `MissingScopes` if the key
        cannot create or remove everything, `CostLimitExceeded` above
        `spec.max_usd`, `NoOfferError` if nothing fits. A balance too low to
        start the cluster is recorded in the plan (`balance_short`), so a dry
        run still shows it; `up` refuses it (`FluencePlan.refuse_short_balance`).
        """
        spec.validate()
        service = ServiceStatus.decode(self.client.get("/v1/service/status"), "service status")
        if service.maintenance_mode:
            raise FluenceUnavailable(
                "Fluence is in maintenance mode; nothing was created", hint="try again later"
            )
        warnings = self._check_scopes()
        if service.version != SPEC_VERSION:
            warnings.append(
                f"the API reports version {service.version}; okai was written against {SPEC_VERSION}"
            )
        if offer is None:
            offer = find_offers(self.client, spec.requirements, spec.nodes)[0]
        estimate = estimate_cost(offer, spec.nodes, spec.hours, self.client)
        estimate.check_limit(spec.max_usd)
        balance = read_balance(self.client)
        key = PublicKey.parse(spec.ssh_public_key)
        existing = self._find_ssh_key(key)
        requests, size = self._planned_requests(spec, offer, key, existing)
        return FluencePlan(
            spec=spec,
            offer=offer,
            estimate=estimate,
            balance=balance,
            requests=requests,
            user_data_bytes=size,
            ssh_key_id=None if existing is None else existing.id,
            service_version=service.version,
            warnings=tuple(warnings),
            balance_short=balance_shortfall(balance, estimate),
        )

    def _check_scopes(self) -> list[str]:
        """Refuse a key that lacks a scope `up` or `down` needs; warnings if unreadable."""
        try:
            me = self.client.get("/v1/users/me")
        except FluenceError as exc:
            if isinstance(exc, FluenceAuthError) and exc.status == 401:
                raise  # a bad key: say so now, not after discovery
            return [f"could not read the key's permissions: {exc.message}"]
        granted = set(me.get("permissions") or []) if isinstance(me, dict) else set()
        missing = [names[0] for names in NEEDED_SCOPES if not granted.intersection(names)]
        if missing:
            raise MissingScopes(
                f"the Fluence API key lacks the scopes {', '.join(missing)}; nothing was created",
                hint="set OKAI_FLUENCE_API_KEY to a full-access key from the Fluence Console "
                "(Settings → API Keys); docs/fluence.md lists the scopes okai needs",
            )
        return []

    def _planned_requests(
        self, spec: FluenceClusterSpec, offer: Offer, key: PublicKey, existing: SshKey | None
    ) -> tuple[tuple[PlannedRequest, ...], int]:
        cluster_id, name = offer.cluster.id, spec.name
        planned: list[PlannedRequest] = []
        key_id = existing.id if existing else rq.placeholder("id of the new SSH key")
        if existing is None:
            planned.append(rq.create_ssh_key(rq.ssh_key_name(key.fingerprint), key.openssh))
        members = tuple(
            Member(
                rank=rank,
                name=rq.vm_name(name, rank),
                address=rq.placeholder(f"address of {rq.public_ip_name(name, rank)}"),
            )
            for rank in range(spec.nodes)
        )
        planned += [
            rq.create_public_ip(cluster_id, rq.public_ip_name(name, m.rank)) for m in members
        ]
        addresses = [m.address for m in members]
        group = rq.security_group_name(name)
        planned.append(rq.create_security_group(cluster_id, group, spec.ssh_cidr, addresses))
        planned.append(
            rq.allow_group_members(rq.placeholder(f"id of {group}"), spec.ssh_cidr, addresses)
        )
        sizes = []
        for member in members:
            user_data = self._user_data(spec, key, member.rank, members)
            sizes.append(len(user_data.encode("utf-8")))
            planned.append(
                rq.create_vm(
                    offer,
                    member.name,
                    boot_disk=rq.boot_disk_name(name, member.rank),
                    image_url=spec.image_url,
                    ssh_key_id=key_id,
                    public_ip_id=rq.placeholder(f"id of {rq.public_ip_name(name, member.rank)}"),
                    user_data=user_data,
                )
            )
        for member in members:
            planned.append(
                rq.bind_security_group(
                    rq.placeholder(f"id of {member.name}"),
                    rq.placeholder(f"each interface of {member.name}"),
                    rq.placeholder(f"id of {group}"),
                )
            )
        return tuple(planned), max(sizes)

    def _user_data(
        self, spec: FluenceClusterSpec, key: PublicKey, rank: int, members: tuple[Member, ...]
    ) -> str:
        hostname = rq.vm_name(spec.name, rank)
        files: Sequence[WriteFile] = ()
        if spec.node_files is not None:
            context = NodeContext(cluster=spec.name, rank=rank, hostname=hostname, members=members)
            files = spec.node_files(context)
        text = build_user_data(hostname=hostname, ssh_authorized_keys=[key.openssh], files=files)
        if self.client.leaks_key(text):
            raise SecretInUserData(
                "the cloud-init user data would contain the Fluence API key",
                hint="user data is not private on Fluence; deliver secrets over SSH",
            )
        return text

    # --- up ------------------------------------------------------------------------------------

    def up(
        self,
        spec: FluenceClusterSpec,
        plan: FluencePlan | None = None,
        details: dict[str, Any] | None = None,
    ) -> ClusterState:
        """Create the cluster and wait until every node runs; roll back on any failure.

        Pass the `plan` the user approved to create exactly that offer; the limit
        and balance are checked again. `details` go into the state file too.
        Returns the state with its nodes' addresses.
        """
        plan = self.plan(spec, plan.offer if plan is not None else None)
        plan.refuse_short_balance()
        self._refuse_taken_names(spec)
        offer = plan.offer
        state = ClusterState.create(
            spec.name,
            PROVIDER,
            details={
                "baseUrl": self.client.config.base_url,
                "clusterId": offer.cluster.id,
                "imageUrl": redact_url(spec.image_url),
                "offer": offer.to_json(),
                "estimate": plan.estimate.to_json(),
                **(details or {}),
            },
        )
        try:
            nodes = self._create(state, spec, offer)
            state.set_nodes(nodes)
            state.set_status(ClusterStatus.UP)
        except BaseException as exc:
            roll_back(state, exc, lambda: self.down(state), self._report)
            raise
        return state

    def _create(
        self, state: ClusterState, spec: FluenceClusterSpec, offer: Offer
    ) -> list[NodeRecord]:
        key = PublicKey.parse(spec.ssh_public_key)
        key_id = self._ensure_ssh_key(state, key)
        cluster_id = offer.cluster.id
        ips = [
            self._create_one(
                state,
                PUBLIC_IP,
                rq.create_public_ip(cluster_id, rq.public_ip_name(spec.name, rank)),
            )
            for rank in range(spec.nodes)
        ]
        ready_ips = self._wait_public_ips([ip["id"] for ip in ips])
        members = tuple(
            Member(
                rank=rank,
                name=rq.vm_name(spec.name, rank),
                address=ready_ips[ip["id"]].address or "",
            )
            for rank, ip in enumerate(ips)
        )
        addresses = [m.address for m in members]
        group = self._create_one(
            state,
            SECURITY_GROUP,
            rq.create_security_group(
                cluster_id, rq.security_group_name(spec.name), spec.ssh_cidr, addresses
            ),
        )
        self._wait_group(group["id"])
        self.client.send(rq.allow_group_members(group["id"], spec.ssh_cidr, addresses))
        self._wait_group(group["id"])
        # Build every user data before the first VM: a too-large one must not cost a VM.
        user_data = [self._user_data(spec, key, m.rank, members) for m in members]
        vm_ids = []
        for member, data in zip(members, user_data, strict=True):
            vm_ids.append(
                self._create_vm(
                    state,
                    rq.create_vm(
                        offer,
                        member.name,
                        boot_disk=rq.boot_disk_name(spec.name, member.rank),
                        image_url=spec.image_url,
                        ssh_key_id=key_id,
                        public_ip_id=ips[member.rank]["id"],
                        user_data=data,
                    ),
                )
            )
        self._wait_launched(vm_ids, spec.image_url)
        self._bind_group(vm_ids, group["id"])
        final = {ip.id: ip for ip in self.waiter.by_ids(PUBLIC_IP, [i["id"] for i in ips])}
        return [
            NodeRecord(
                rank=m.rank,
                name=m.name,
                address=final[ips[m.rank]["id"]].address,
                resource_id=vm_id,
                attrs={"publicIpId": ips[m.rank]["id"]},
            )
            for m, vm_id in zip(members, vm_ids, strict=True)
        ]

    def _refuse_taken_names(self, spec: FluenceClusterSpec) -> None:
        """Refuse to start if live resources already carry this cluster's names."""
        ranks = range(spec.nodes)
        wanted = {
            VM: {rq.vm_name(spec.name, r) for r in ranks},
            PUBLIC_IP: {rq.public_ip_name(spec.name, r) for r in ranks},
            STORAGE: {rq.boot_disk_name(spec.name, r) for r in ranks},
            SECURITY_GROUP: {rq.security_group_name(spec.name)},
        }
        taken = [
            name
            for kind, names in wanted.items()
            for name in self.waiter.names_taken(kind, f"{spec.name}-", names)
        ]
        if taken:
            raise UsageError(
                f"Fluence resources named {', '.join(sorted(taken))} already exist",
                hint=f"another cluster is called {spec.name!r}: choose another name, or remove it "
                f"with `okai cluster down {spec.name}`",
            )

    # --- creates, each recorded before and after -------------------------------------------

    def _create_one(
        self, state: ClusterState, kind: str, request: PlannedRequest
    ) -> dict[str, Any]:
        """Send one create; on an ambiguous failure look the name up before one more try.

        Shielded: a signal waits until the answer's id is recorded.
        """
        name = str(request.body["name"])
        self._report(f"creating {request.purpose}")
        with interrupt.shielded():
            record = state.intend(kind, name)
            answer = self._send_create(record, request, lambda: self.waiter.by_name(kind, name))
            state.created(record, str(answer["id"]))
        return answer

    def _create_vm(self, state: ClusterState, request: PlannedRequest) -> str:
        name = str(request.body["name"])
        boot_name = str(request.body["bootDisk"]["name"])
        self._report(f"creating {request.purpose}")
        with interrupt.shielded():
            vm_record = state.intend(VM, name)
            boot_record = state.intend(STORAGE, boot_name)
            answer = self._send_create(vm_record, request, lambda: self.waiter.by_name(VM, name))
            vm = Vm.decode(answer, "the VM create")
            state.created(vm_record, vm.id)
            if vm.boot_disk is not None:
                state.created(boot_record, vm.boot_disk)
        return vm.id

    def _send_create(
        self,
        record: ResourceRecord,
        request: PlannedRequest,
        find: Callable[[], dict[str, Any] | None],
    ) -> dict[str, Any]:
        for attempt in (1, 2):
            try:
                answer = self.client.send(request)
            except FluenceUnavailable as exc:
                # The create may have happened: the name tells.
                log.debug("create of %s ambiguous (%s); looking it up", record.name, exc.code)
                found = find()
                if found is not None:
                    return found
                if attempt == 2:
                    raise
                continue
            except FluenceError:
                raise  # refused: nothing was created; the intent resolves to nothing on down
            if not isinstance(answer, dict) or not isinstance(answer.get("id"), str):
                raise FluenceUnavailable(
                    f"{request.method} {request.path} answered without an id", path=request.path
                )
            return answer
        raise AssertionError("unreachable")  # pragma: no cover

    def _find_ssh_key(self, key: PublicKey) -> SshKey | None:
        keys = SshKey.decode_all(self.client.paginate("/v1/ssh_keys"), "SSH keys")
        return next(
            (
                k
                for k in keys
                if key.matches(k.public_key) or (k.fingerprint and key.matches(k.fingerprint))
            ),
            None,
        )

    def _ensure_ssh_key(self, state: ClusterState, key: PublicKey) -> str:
        """The id of the operator's key, registering it if needed (it stays registered)."""
        existing = self._find_ssh_key(key)
        if existing is not None:
            state.details["sshKeyId"] = existing.id
            state.save()
            return existing.id
        request = rq.create_ssh_key(rq.ssh_key_name(key.fingerprint), key.openssh)

        def find() -> dict[str, Any] | None:
            found = self._find_ssh_key(key)
            return None if found is None else {"id": found.id}

        with interrupt.shielded():
            record = state.intend(SSH_KEY, str(request.body["name"]))
            record.keep = True
            state.save()
            answer = self._send_create(record, request, find)
            state.created(record, str(answer["id"]))
            state.details["sshKeyId"] = answer["id"]
            state.save()
        return str(answer["id"])

    def _wait_public_ips(self, ids: list[str]) -> dict[str, PublicIp]:
        def check() -> dict[str, PublicIp] | None:
            ips = {ip.id: ip for ip in self.waiter.by_ids(PUBLIC_IP, ids)}
            for ip in ips.values():
                if ip.status in (
                    ResourceStatus.FAILED,
                    ResourceStatus.REMOVING,
                    ResourceStatus.REMOVED,
                ):
                    raise ResourceFailed(f"public IP {ip.name} ended {ip.status.value}")
            ready = all(
                i in ips and ips[i].status == ResourceStatus.READY and ips[i].address for i in ids
            )
            return ips if ready else None

        return self.waiter.until("public IPs becoming ready", self.waiter.poll.resource_s, check)

    def _wait_group(self, group_id: str) -> SecurityGroup:
        def check() -> SecurityGroup | None:
            found = self.waiter.by_ids(SECURITY_GROUP, [group_id])
            if not found:
                return None
            group: SecurityGroup = found[0]
            if group.status in (
                ResourceStatus.FAILED,
                ResourceStatus.REMOVING,
                ResourceStatus.REMOVED,
            ):
                raise ResourceFailed(f"security group {group.name} ended {group.status.value}")
            return group if group.status == ResourceStatus.READY else None

        return self.waiter.until(
            "the security group becoming ready", self.waiter.poll.resource_s, check
        )

    def _wait_launched(self, vm_ids: list[str], image_url: str) -> list[Vm]:
        self._report(f"waiting for {len(vm_ids)} VM(s) to launch")

        def check() -> list[Vm] | None:
            vms: dict[str, Vm] = {v.id: v for v in self.waiter.by_ids(VM, vm_ids)}
            for vm in vms.values():
                if vm.status != VmStatus.LAUNCHED and vm.status not in VM_WAIT_STATUSES:
                    raise VmFailed(
                        f"VM {vm.name} ended {vm.status.value} instead of launched",
                        code=vm.status.value,
                        hint=f"check that {redact_url(image_url)} is publicly downloadable and a cloud image "
                        "with cloud-init, and that the user data is valid",
                    )
            done = all(
                i in vms and vms[i].status == VmStatus.LAUNCHED and not vms[i].restart_required
                for i in vm_ids
            )
            return [vms[i] for i in vm_ids] if done else None

        return self.waiter.until("VMs launching", self.waiter.poll.vm_launch_s, check)

    def _bind_group(self, vm_ids: list[str], group_id: str) -> None:
        """Put every interface of every VM in the group; restart VMs that ask for it."""
        for vm_id in vm_ids:
            interfaces = NetworkInterface.decode_all(
                list(self.client.get(f"/v2/vms/{vm_id}/interfaces") or []), "interfaces"
            )
            for interface in interfaces:
                if interface.security_group != group_id:
                    self.client.send(rq.bind_security_group(vm_id, interface.id, group_id))
        restart = [vm.id for vm in self.waiter.by_ids(VM, vm_ids) if vm.restart_required]
        for vm_id in restart:
            self.client.send(rq.restart_vm(vm_id))
        if restart:
            self.waiter.until(
                "VMs restarting", self.waiter.poll.vm_launch_s, lambda: self._restarted(restart)
            )

    def _restarted(self, vm_ids: list[str]) -> bool | None:
        vms = self.waiter.by_ids(VM, vm_ids)
        for vm in vms:
            if vm.status != VmStatus.LAUNCHED and vm.status not in VM_WAIT_STATUSES:
                raise VmFailed(f"VM {vm.name} ended {vm.status.value} while restarting")
        ok = len(vms) == len(vm_ids) and all(
            v.status == VmStatus.LAUNCHED and not v.restart_required for v in vms
        )
        return True if ok else None

    # --- nodes ---------------------------------------------------------------------------------

    def nodes(self, state: ClusterState, refresh: bool = False) -> list[NodeRecord]:
        """The cluster's nodes; with `refresh`, status and address re-read from Fluence."""
        if not refresh or not state.nodes:
            return list(state.nodes)
        self._check_owner(state)
        vm_ids = [n.resource_id for n in state.nodes if n.resource_id]
        vms = {v.id: v for v in self.waiter.by_ids(VM, vm_ids)}
        ip_ids = [str(n.attrs["publicIpId"]) for n in state.nodes if n.attrs.get("publicIpId")]
        ips = {ip.id: ip for ip in self.waiter.by_ids(PUBLIC_IP, ip_ids)}
        fresh = []
        for node in state.nodes:
            vm = vms.get(node.resource_id or "")
            ip = ips.get(str(node.attrs.get("publicIpId", "")))
            attrs = {**node.attrs, "status": vm.status.value if vm else "gone"}
            fresh.append(
                node.model_copy(update={"address": ip.address if ip else None, "attrs": attrs})
            )
        state.set_nodes(fresh)
        return fresh

    # --- down ----------------------------------------------------------------------------------

    def down(self, state: ClusterState) -> None:
        """Remove everything the state file records; safe to repeat, also after a crash.

        Raises `OperationalError` naming what is left if something could not be
        removed; the state file then still lists it for the next `down`.
        """
        self._check_owner(state)
        if state.live_resources():
            # A rejected key would be refused for every delete: find out with one call.
            self.client.get("/v1/users/me")
        Teardown(self.client, self.waiter, state, self._report).run()

    def _check_owner(self, state: ClusterState) -> None:
        """Refuse a state file of another provider or API: its ids would all look gone."""
        if state.provider != PROVIDER:
            raise UsageError(f"cluster {state.name} runs on {state.provider!r}, not on Fluence")
        made_at = state.details.get("baseUrl")
        if made_at and made_at != self.client.config.base_url:
            raise UsageError(
                f"cluster {state.name} was made through {made_at}, "
                f"not {self.client.config.base_url}",
                hint="set OKAI_FLUENCE_URL to the API the cluster was made with",
            )
