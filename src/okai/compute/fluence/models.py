"""The parts of the Fluence DTOs (spec 0.10.0) that okai reads.

Decoding is tolerant where the official provider found the server differs
from the spec (snake_case `dc_id`), ignores fields it does not use, and keeps
prices as `Decimal` (the API sends decimal USD strings).
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Any, Self

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from okai.compute.fluence.errors import FluenceUnavailable
from okai.documents import validation_problem
from okai.inert import inert


class Dto(BaseModel):
    """Base of the decoded answers: camelCase on the wire, unknown fields ignored."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )

    @classmethod
    def decode(cls, data: Any, what: str) -> Self:
        """Validate one answer; a mismatch is the server's fault, so it is operational."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            fields, problem = validation_problem(exc)
            raise FluenceUnavailable(
                f"Fluence answered {what} with an unexpected {cls.__name__}: "
                f"field '{inert('.'.join(fields))}': {problem}"
            ) from exc

    @classmethod
    def decode_all(cls, items: list[dict[str, Any]], what: str) -> list[Self]:
        return [cls.decode(item, what) for item in items]


class VmStatus(StrEnum):
    """`UserVmStatusDto`. `launched` is running; `failed` and `terminated` are final."""

    NEW = "new"
    LAUNCHING = "launching"
    LAUNCHED = "launched"
    FAILED = "failed"
    UPDATING = "updating"
    TERMINATING = "terminating"
    TERMINATED = "terminated"
    SUSPENDING = "suspending"
    SUSPENDED = "suspended"
    RESTARTING = "restarting"
    SOFT_REBOOTING = "softRebooting"
    UNKNOWN = "unknown"


VM_WAIT_STATUSES = frozenset(
    {VmStatus.NEW, VmStatus.LAUNCHING, VmStatus.UPDATING, VmStatus.RESTARTING,
     VmStatus.SOFT_REBOOTING}
)  # fmt: skip
"""Statuses from which a VM may still become `launched`; any other but `launched` is dead."""


class ResourceStatus(StrEnum):
    """Statuses of storages, public IPs, VPCs, subnets and security groups."""

    NEW = "new"
    CREATED = "created"
    READY = "ready"
    UPDATING = "updating"
    FAILED = "failed"
    REMOVING = "removing"
    REMOVED = "removed"


class Cluster(Dto):
    id: str
    name: str
    dc_id: str = Field(validation_alias=AliasChoices("dcId", "dc_id"))


class Datacenter(Dto):
    id: str
    country_code: str
    city_code: str
    city_name: str
    slug: str
    tier: int = 0


class VmConfiguration(Dto):
    id: str
    slug: str
    name: str
    vcpu: int
    ram_gb: int
    dedicated: bool = False
    cpu_families: tuple[str, ...] = ()


class AvailableStorage(Dto):
    storage_type: str
    replicated: bool
    volume_gb: int


class ClusterResources(Dto):
    available_configurations: tuple[VmConfiguration, ...] = ()
    available_public_ips: dict[str, int] = Field(default_factory=dict)
    available_storage: dict[str, tuple[AvailableStorage, ...]] = Field(default_factory=dict)


class StorageTypeInfo(Dto):
    storage_type: str
    boot_disk: bool
    min_volume_gb: int


class PriceInfo(Dto):
    price_per_hour_per_qty: Decimal


class VmTypeId(Dto):
    vm_configuration_id: str
    cluster_id: str


class VmPrice(Dto):
    vm_type_id: VmTypeId
    price_info: PriceInfo


class StorageTypeId(Dto):
    storage_type: str
    replicated: bool
    cluster_id: str


class StoragePrice(Dto):
    storage_type_id: StorageTypeId
    price_info: PriceInfo


class PublicIpTypeId(Dto):
    address_type: str
    cluster_id: str


class PublicIpPrice(Dto):
    public_ip_type_id: PublicIpTypeId
    price_info: PriceInfo


class SshKey(Dto):
    id: str
    name: str
    public_key: str
    fingerprint: str = ""


class Vm(Dto):
    id: str
    name: str
    cluster_id: str
    status: VmStatus
    restart_required: bool = False
    allowed_actions: tuple[str, ...] = ()
    boot_disk: str | None = None
    data_disks: tuple[str, ...] = ()
    public_ip: str | None = None
    ready_since: str | None = None


class Storage(Dto):
    id: str
    name: str
    status: ResourceStatus
    attached_to: tuple[str, ...] = ()


class VmReference(Dto):
    id: str
    name: str


class PublicIp(Dto):
    id: str
    name: str
    status: ResourceStatus
    address: str | None = None
    attached_to: VmReference | None = None


class SecurityGroup(Dto):
    id: str
    name: str
    status: ResourceStatus


class NetworkInterface(Dto):
    id: str
    default: bool = False
    kind: dict[str, Any] = Field(default_factory=dict)
    security_group: str | None = None


class ServiceStatus(Dto):
    maintenance_mode: bool
    version: str


class Balance(Dto):
    """One entry of `GET /v2/users/balances` (an `EntitlementValueDto`)."""

    balance: Decimal
    feature_key: str = ""
    usage_days_left: int | None = None


class CostResult(Dto):
    """`POST /v1/prices/cost`: the server's estimate for a set of resources and a period."""

    total_cost: Decimal
    total_cost_per_sec: Decimal
    period_secs: int
