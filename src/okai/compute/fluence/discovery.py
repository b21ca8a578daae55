"""Find what can be bought: clusters, datacenters and priced VM configurations.

The buyable catalogue is `GET /v1/clusters/{id}/resources` (configurations,
free public IPs and storage per CPU family), joined with the cluster's prices.
`GET /v1/configurations/virtual_machines` is deliberately not used: the spec
says it lists unpriced SKUs that would 404 on create.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from okai.compute.fluence.client import FluenceClient, indexed, item_list
from okai.compute.fluence.errors import NoOfferError
from okai.compute.fluence.models import (
    Cluster,
    ClusterResources,
    Datacenter,
    PublicIpPrice,
    StoragePrice,
    StorageTypeInfo,
    VmConfiguration,
    VmPrice,
)
from okai.errors import UsageError

BOOT_STORAGE_TYPE = "NVME"
"""The only storage type a create accepts (`NewStorageType`)."""
ADDRESS_TYPE = "V4"
"""The only public address type a create accepts (`NewIpAddressType`)."""
BULK_LIMIT = 100
"""`GET /v1/clusters/resources` takes at most 100 clusters per call."""


@dataclass(frozen=True, kw_only=True)
class NodeRequirements:
    """What every node of a cluster needs; `None` means any."""

    vcpu: int = 2
    """At least this many vCPUs."""
    ram_gb: int = 4
    """At least this much memory."""
    disk_gb: int = 25
    """Boot disk size (raised to the storage type's minimum if below it)."""
    country: str | None = None
    """ISO country code of the datacenter, e.g. `DE`."""
    datacenter: str | None = None
    """Datacenter id, slug or city code."""
    cluster: str | None = None
    """Fluence cluster id or name."""
    configuration: str | None = None
    """An exact configuration slug, e.g. `cpu-regular-4vcpu-8gb`."""

    def validate(self) -> None:
        """Refuse sizes no VM has (0 vCPU, negative RAM), before any request."""
        for label, value in (
            ("vCPU", self.vcpu),
            ("GB of RAM", self.ram_gb),
            ("GB of disk", self.disk_gb),
        ):
            if value < 1:
                raise UsageError(f"a node needs at least 1 {label}, not {value}")

    def describe(self) -> str:
        parts = [f">= {self.vcpu} vCPU", f">= {self.ram_gb} GB RAM", f"{self.disk_gb} GB disk"]
        for label, value in (
            ("country", self.country),
            ("datacenter", self.datacenter),
            ("cluster", self.cluster),
            ("configuration", self.configuration),
        ):
            if value:
                parts.append(f"{label} {value}")
        return ", ".join(parts)


@dataclass(frozen=True, kw_only=True)
class Offer:
    """One way to buy a node: a configuration in a cluster, with its boot disk and IP."""

    cluster: Cluster
    datacenter: Datacenter | None
    configuration: VmConfiguration
    disk_gb: int
    replicated: bool
    vm_hourly: Decimal
    """USD per hour for the VM."""
    disk_gb_hourly: Decimal
    """USD per GB-hour of boot disk."""
    ip_hourly: Decimal
    """USD per hour for one public IPv4."""

    @property
    def node_hourly(self) -> Decimal:
        """USD per hour for one node: VM, boot disk and public IPv4."""
        return self.vm_hourly + self.disk_gb_hourly * self.disk_gb + self.ip_hourly

    def where(self) -> str:
        dc = self.datacenter
        place = f"{dc.city_name}, {dc.country_code}" if dc else "unknown datacenter"
        return f"cluster {self.cluster.name} ({place})"

    def to_json(self) -> dict[str, Any]:
        dc = self.datacenter
        return {
            "clusterId": self.cluster.id,
            "clusterName": self.cluster.name,
            "datacenter": None
            if dc is None
            else {"id": dc.id, "slug": dc.slug, "country": dc.country_code, "city": dc.city_name},
            "configurationId": self.configuration.id,
            "configurationSlug": self.configuration.slug,
            "vcpu": self.configuration.vcpu,
            "ramGb": self.configuration.ram_gb,
            "diskGb": self.disk_gb,
            "replicated": self.replicated,
            "vmHourlyUsd": str(self.vm_hourly),
            "diskGbHourlyUsd": str(self.disk_gb_hourly),
            "ipHourlyUsd": str(self.ip_hourly),
            "nodeHourlyUsd": str(self.node_hourly),
        }


def list_clusters(client: FluenceClient) -> list[Cluster]:
    return Cluster.decode_all(item_list(client.get("/v1/clusters"), "/v1/clusters"), "clusters")


def list_datacenters(client: FluenceClient) -> list[Datacenter]:
    payload = client.get("/v1/datacenters")
    return Datacenter.decode_all(item_list(payload, "/v1/datacenters"), "datacenters")


def cluster_resources(client: FluenceClient, cluster_ids: list[str]) -> dict[str, ClusterResources]:
    """The buyable catalogue of each cluster (clusters the server fails on are left out)."""
    found: dict[str, ClusterResources] = {}
    for start in range(0, len(cluster_ids), BULK_LIMIT):
        chunk = cluster_ids[start : start + BULK_LIMIT]
        payload = client.get("/v1/clusters/resources", indexed("clusterIds", chunk))
        resources = payload.get("resources") if isinstance(payload, dict) else None
        for cluster_id, data in (resources or {}).items():
            found[cluster_id] = ClusterResources.decode(data, "cluster resources")
    return found


def boot_min_volume_gb(client: FluenceClient) -> int:
    payload = client.get("/v1/storages/types")
    infos = StorageTypeInfo.decode_all(item_list(payload, "/v1/storages/types"), "storage types")
    sizes = [i.min_volume_gb for i in infos if i.storage_type.upper() == BOOT_STORAGE_TYPE]
    return max(sizes, default=0)


@dataclass(frozen=True)
class _Prices:
    vm: dict[str, Decimal]
    disk: dict[bool, Decimal]
    ip: Decimal | None


def _cluster_prices(client: FluenceClient, cluster_id: str) -> _Prices:
    query = [("clusterId", cluster_id)]
    vm = VmPrice.decode_all(
        item_list(client.get("/v1/prices/vm", query), "/v1/prices/vm"), "vm prices"
    )
    disk = StoragePrice.decode_all(
        item_list(client.get("/v1/prices/storage", query), "/v1/prices/storage"), "storage prices"
    )
    ip = PublicIpPrice.decode_all(
        item_list(client.get("/v1/prices/public-ip", query), "/v1/prices/public-ip"),
        "public IP prices",
    )
    return _Prices(
        vm={
            p.vm_type_id.vm_configuration_id: p.price_info.price_per_hour_per_qty
            for p in vm
            if p.vm_type_id.cluster_id == cluster_id
        },
        disk={
            p.storage_type_id.replicated: p.price_info.price_per_hour_per_qty
            for p in disk
            if p.storage_type_id.cluster_id == cluster_id
            and p.storage_type_id.storage_type.upper() == BOOT_STORAGE_TYPE
        },
        ip=next(
            (
                p.price_info.price_per_hour_per_qty
                for p in ip
                if p.public_ip_type_id.cluster_id == cluster_id
                and p.public_ip_type_id.address_type == ADDRESS_TYPE
            ),
            None,
        ),
    )


def _matches_place(req: NodeRequirements, cluster: Cluster, dc: Datacenter | None) -> bool:
    if req.cluster and req.cluster not in (cluster.id, cluster.name):
        return False
    if req.country and (dc is None or dc.country_code.upper() != req.country.upper()):
        return False
    if req.datacenter:
        wanted = req.datacenter.lower()
        names = set() if dc is None else {dc.id.lower(), dc.slug.lower(), dc.city_code.lower()}
        if wanted not in names:
            return False
    return True


def find_offers(client: FluenceClient, req: NodeRequirements, nodes: int) -> list[Offer]:
    """Every offer that can host `nodes` such nodes in one cluster, cheapest first.

    Raises `NoOfferError` saying why each candidate cluster was turned down.
    """
    datacenters = {dc.id: dc for dc in list_datacenters(client)}
    clusters = [
        c for c in list_clusters(client) if _matches_place(req, c, datacenters.get(c.dc_id))
    ]
    if not clusters:
        raise NoOfferError(
            f"no Fluence cluster matches {req.describe()}",
            hint="drop or change --country/--datacenter/--cluster; "
            f"countries on offer: {', '.join(sorted({d.country_code for d in datacenters.values()})) or 'none'}",
        )
    disk_gb = max(req.disk_gb, boot_min_volume_gb(client))
    catalogue = cluster_resources(client, [c.id for c in clusters])
    offers: list[Offer] = []
    reasons: list[str] = []
    for cluster in clusters:
        resources = catalogue.get(cluster.id)
        if resources is None:
            reasons.append(f"{cluster.name}: its catalogue is unavailable")
            continue
        free_ips = resources.available_public_ips.get(ADDRESS_TYPE, 0)
        if free_ips < nodes:
            reasons.append(f"{cluster.name}: {free_ips} free public IPv4, {nodes} needed")
            continue
        prices = _cluster_prices(client, cluster.id)
        if prices.ip is None:
            reasons.append(f"{cluster.name}: public IPv4 has no price")
            continue
        fitting = [
            cfg
            for cfg in resources.available_configurations
            if cfg.vcpu >= req.vcpu
            and cfg.ram_gb >= req.ram_gb
            and (req.configuration is None or cfg.slug == req.configuration)
        ]
        if not fitting:
            reasons.append(f"{cluster.name}: no configuration with {req.describe()}")
            continue
        before = len(offers)
        for cfg in fitting:
            vm_price = prices.vm.get(cfg.id)
            storage = _boot_storage(resources, cfg, prices, disk_gb * nodes)
            if vm_price is None or storage is None:
                continue
            replicated, disk_price = storage
            offers.append(
                Offer(
                    cluster=cluster,
                    datacenter=datacenters.get(cluster.dc_id),
                    configuration=cfg,
                    disk_gb=disk_gb,
                    replicated=replicated,
                    vm_hourly=vm_price,
                    disk_gb_hourly=disk_price,
                    ip_hourly=prices.ip,
                )
            )
        if len(offers) == before:
            reasons.append(
                f"{cluster.name}: no priced configuration with {disk_gb * nodes} GB of "
                f"{BOOT_STORAGE_TYPE} free for {nodes} node(s)"
            )
    if not offers:
        raise NoOfferError(
            f"no Fluence cluster can host {nodes} node(s) with {req.describe()}: "
            + "; ".join(reasons[:6]),
            hint="ask for fewer or smaller nodes, or another place",
        )
    return sorted(offers, key=lambda o: (o.node_hourly, o.configuration.vcpu, o.cluster.name))


def _boot_storage(
    resources: ClusterResources, cfg: VmConfiguration, prices: _Prices, needed_gb: int
) -> tuple[bool, Decimal] | None:
    """(replicated, price per GB-hour) of the cheapest boot storage with room, if any."""
    choices: list[tuple[Decimal, bool]] = []
    for family in cfg.cpu_families:
        for entry in resources.available_storage.get(family, ()):
            price = prices.disk.get(entry.replicated)
            if (
                entry.storage_type.upper() == BOOT_STORAGE_TYPE
                and entry.volume_gb >= needed_gb
                and price is not None
            ):
                choices.append((price, entry.replicated))
    if not choices:
        return None
    price, replicated = min(choices)
    return replicated, price
