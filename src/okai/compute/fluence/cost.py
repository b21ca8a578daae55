"""The cost of a cluster, estimated before anything is created.

Fluence bills every VM, disk and public IP per second while it exists, at the
hourly USD prices of `GET /v1/prices/*`. The estimate multiplies those prices
out for N nodes over a duration; the server's own `POST /v1/prices/cost` is
asked too, and the higher of the two is what `max_usd` is checked against.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any

from okai.compute.fluence.client import FluenceClient
from okai.compute.fluence.discovery import ADDRESS_TYPE, BOOT_STORAGE_TYPE, Offer
from okai.compute.fluence.errors import CostLimitExceeded
from okai.compute.fluence.models import Balance, CostResult

BALANCE_HOURS = 6
"""Fluence refuses a create unless the balance runs all resources for this long."""
CENT = Decimal("0.01")


@dataclass(frozen=True)
class CostLine:
    """One kind of resource in the estimate."""

    what: str
    quantity: int
    unit_hourly: Decimal
    """USD per hour for one unit (one VM, one disk of the planned size, one IP)."""

    @property
    def hourly(self) -> Decimal:
        return self.unit_hourly * self.quantity


@dataclass(frozen=True)
class CostEstimate:
    """What N nodes cost over `hours`, in USD."""

    nodes: int
    hours: float
    lines: tuple[CostLine, ...]
    server_total: Decimal | None = None
    """`POST /v1/prices/cost` for the same resources and period, if the server answered."""

    @property
    def hourly(self) -> Decimal:
        return sum((line.hourly for line in self.lines), Decimal(0))

    @property
    def total(self) -> Decimal:
        return self.hourly * Decimal(str(self.hours))

    @property
    def upper_bound(self) -> Decimal:
        """The higher of our and the server's total: what limits are checked against."""
        return max(self.total, self.server_total or Decimal(0))

    @property
    def balance_needed(self) -> Decimal:
        """The balance Fluence wants before creating (6 hours of the new resources)."""
        return self.hourly * BALANCE_HOURS

    def check_limit(self, max_usd: Decimal | None) -> None:
        """Raise `CostLimitExceeded` if the estimate is above `max_usd`."""
        if max_usd is not None and self.upper_bound > max_usd:
            raise CostLimitExceeded(_cents(self.upper_bound), max_usd, self.hours)

    def to_json(self) -> dict[str, Any]:
        return {
            "nodes": self.nodes,
            "hours": self.hours,
            "lines": [
                {
                    "what": line.what,
                    "quantity": line.quantity,
                    "unitHourlyUsd": str(line.unit_hourly),
                    "hourlyUsd": str(line.hourly),
                }
                for line in self.lines
            ],
            "hourlyUsd": str(self.hourly),
            "totalUsd": str(_cents(self.total)),
            "serverTotalUsd": None if self.server_total is None else str(self.server_total),
            "balanceNeededUsd": str(_cents(self.balance_needed)),
        }

    def describe(self) -> str:
        rows = [
            f"  {line.quantity} x {line.what}: {line.unit_hourly} USD/h each" for line in self.lines
        ]
        server = (
            "" if self.server_total is None else f" (Fluence's estimate: {self.server_total} USD)"
        )
        return "\n".join(
            [
                f"{self.nodes} node(s) for {self.hours:g} h: about {_cents(self.total)} USD{server}",
                *rows,
                f"  total {self.hourly} USD/h; Fluence wants a balance of "
                f"{_cents(self.balance_needed)} USD ({BALANCE_HOURS} h) to create them",
            ]
        )


def _cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_CEILING)


def cost_request(offer: Offer, nodes: int, hours: float) -> dict[str, Any]:
    """The `POST /v1/prices/cost` body (snake_case inside, as the spec has it)."""
    cluster = offer.cluster.id
    node = [
        {
            "vm": {
                "resource_id": {"vmConfigurationId": offer.configuration.id, "clusterId": cluster}
            }
        },
        {
            "storage": {
                "resource_id": {
                    "storageType": BOOT_STORAGE_TYPE,
                    "replicated": offer.replicated,
                    "clusterId": cluster,
                },
                "volume_gb": offer.disk_gb,
            }
        },
        {"publicIp": {"resource_id": {"addressType": ADDRESS_TYPE, "clusterId": cluster}}},
    ]
    return {"secs": max(1, round(hours * 3600)), "resources": node * nodes}


def estimate_cost(
    offer: Offer, nodes: int, hours: float, client: FluenceClient | None = None
) -> CostEstimate:
    """The estimate from the offer's prices; with `client`, also the server's."""
    lines = (
        CostLine(f"VM {offer.configuration.slug}", nodes, offer.vm_hourly),
        CostLine(
            f"{offer.disk_gb} GB {BOOT_STORAGE_TYPE} boot disk", nodes,
            offer.disk_gb_hourly * offer.disk_gb,
        ),
        CostLine("public IPv4", nodes, offer.ip_hourly),
    )  # fmt: skip
    server_total = None
    if client is not None:
        answer = client.post("/v1/prices/cost", cost_request(offer, nodes, hours), retry=True)
        server_total = CostResult.decode(answer, "the cost estimate").total_cost
    return CostEstimate(nodes=nodes, hours=hours, lines=lines, server_total=server_total)


def read_balance(client: FluenceClient) -> Decimal:
    """The account balance in USD (`GET /v2/users/balances`)."""
    entries = Balance.decode_all(list(client.get("/v2/users/balances") or []), "balances")
    return sum((entry.balance for entry in entries), Decimal(0))


def balance_shortfall(balance: Decimal, estimate: CostEstimate) -> str | None:
    """Why `balance` cannot start the cluster, or None if it can.

    Fluence also counts the resources already running, so passing this check
    does not guarantee the create; failing it guarantees a refusal.
    """
    if balance >= estimate.balance_needed:
        return None
    return (
        f"the Fluence balance is {balance} USD; creating {estimate.nodes} node(s) needs at "
        f"least {_cents(estimate.balance_needed)} USD ({BALANCE_HOURS} h of their cost)"
    )
