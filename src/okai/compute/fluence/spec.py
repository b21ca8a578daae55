"""What to bring up on Fluence (the spec), and what it will do and cost (the plan)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from okai.compute.cloudinit import WriteFile
from okai.compute.fluence import requests as rq
from okai.compute.fluence.client import PlannedRequest, redact_url
from okai.compute.fluence.cost import CostEstimate
from okai.compute.fluence.discovery import NodeRequirements, Offer
from okai.compute.fluence.errors import BalanceTooLow
from okai.compute.ssh import PublicKey
from okai.errors import UsageError

IMAGE_SUFFIXES = (".qcow2", ".img", ".raw", ".raw.xz", ".raw.gz", ".img.xz", ".img.gz")
"""Image file suffixes the Fluence docs accept for `osImage`."""
MAX_NODES = 64


@dataclass(frozen=True, kw_only=True)
class Member:
    """A node as the others know it before it boots."""

    rank: int
    name: str
    address: str


@dataclass(frozen=True, kw_only=True)
class NodeContext:
    """What the cluster layer may put into a node's cloud-init files."""

    cluster: str
    rank: int
    hostname: str
    members: tuple[Member, ...]

    @property
    def rendezvous_address(self) -> str:
        """Rank 0's address: the torchrun rendezvous host."""
        return self.members[0].address


NodeFiles = Callable[[NodeContext], Sequence[WriteFile]]


@dataclass(frozen=True, kw_only=True)
class FluenceClusterSpec:
    """What to bring up."""

    name: str
    """Cluster name; every resource is named after it (`<name>-r0`, `<name>-r0-boot`, ...)."""
    nodes: int
    image_url: str
    """Public URL of the qcow2/raw image (must end with a suffix Fluence accepts)."""
    ssh_public_key: str
    """The operator's OpenSSH public key line."""
    requirements: NodeRequirements = field(default_factory=NodeRequirements)
    hours: float = 1.0
    """How long the cluster is expected to run: the period of the cost estimate."""
    max_usd: Decimal | None = None
    """Hard limit on the estimate; `up` refuses to create anything above it."""
    ssh_cidr: str = "0.0.0.0/0"
    """Who may reach port 22 (key authentication only); narrow it to your own address."""
    node_files: NodeFiles | None = None
    """Files for each node's cloud-init (cluster and job files); nothing secret."""

    def validate(self) -> None:
        longest = len(rq.boot_disk_name(self.name, max(0, self.nodes - 1)))
        if (
            not self.name[:1].isalpha()
            or longest > rq.NAME_LIMIT
            or not all(ch.islower() or ch.isdigit() or ch == "-" for ch in self.name)
        ):
            raise UsageError(
                f"cluster name {self.name!r} cannot name Fluence resources",
                hint=f"use lowercase letters, digits and '-', starting with a letter, short enough "
                f"that '{rq.boot_disk_name(self.name, self.nodes - 1)}' has at most "
                f"{rq.NAME_LIMIT} characters",
            )
        if not 1 <= self.nodes <= MAX_NODES:
            raise UsageError(f"a Fluence cluster has 1 to {MAX_NODES} nodes, not {self.nodes}")
        if not self.hours > 0:
            raise UsageError(f"the duration must be positive, not {self.hours} h")
        self.requirements.validate()
        validate_image_url(self.image_url)
        PublicKey.parse(self.ssh_public_key)
        try:
            network = ipaddress.ip_network(self.ssh_cidr, strict=False)
        except ValueError as exc:
            raise UsageError(f"not an IPv4 CIDR: {self.ssh_cidr!r}") from exc
        if network.version != 4:
            raise UsageError(f"the SSH CIDR must be IPv4: {self.ssh_cidr!r}")


def validate_image_url(url: str) -> None:
    """A public http(s) URL without credentials whose path ends with an accepted suffix."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UsageError(f"the image URL must be an http(s) URL: {redact_url(url)[:200]!r}")
    if parts.username or parts.password:
        raise UsageError("the image URL must not carry credentials: Fluence needs a public URL")
    if not parts.path.lower().endswith(IMAGE_SUFFIXES):
        raise UsageError(
            f"the image URL must end with one of {', '.join(IMAGE_SUFFIXES)}: "
            f"{redact_url(url)[:200]!r}",
            hint="Fluence picks the image format from the file name; publish the image under a "
            "name such as okai-image.qcow2 (e.g. a Walrus quilt URL .../by-quilt-id/<id>/okai-image.qcow2)",
        )


@dataclass(frozen=True)
class FluencePlan:
    """What `up` will do and cost, computed with read-only calls (the dry run)."""

    spec: FluenceClusterSpec
    offer: Offer
    estimate: CostEstimate
    balance: Decimal
    requests: tuple[PlannedRequest, ...]
    user_data_bytes: int
    """The largest node's user data, with placeholders as long or longer than real addresses."""
    ssh_key_id: str | None
    """The registered key that will be reused, or `None` if `up` registers it."""
    service_version: str
    warnings: tuple[str, ...] = ()
    balance_short: str | None = None
    """Why the balance cannot start the cluster, if it cannot (`up` refuses; a dry run shows it)."""

    def refuse_short_balance(self) -> None:
        if self.balance_short is not None:
            raise BalanceTooLow(
                f"{self.balance_short}; nothing was created",
                hint="top up in the Fluence Console (Billing), or ask for fewer or smaller nodes",
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "cluster": self.spec.name,
            "nodes": self.spec.nodes,
            "imageUrl": redact_url(self.spec.image_url),
            "offer": self.offer.to_json(),
            "estimate": self.estimate.to_json(),
            "maxUsd": None if self.spec.max_usd is None else str(self.spec.max_usd),
            "balanceUsd": str(self.balance),
            "balanceShort": self.balance_short,
            "userDataBytes": self.user_data_bytes,
            "sshKeyId": self.ssh_key_id,
            "serviceVersion": self.service_version,
            "warnings": list(self.warnings),
            "requests": [r.to_json() for r in self.requests],
        }

    def describe(self) -> str:
        cfg = self.offer.configuration
        lines = [
            f"{self.spec.nodes} x {cfg.slug} ({cfg.vcpu} vCPU, {cfg.ram_gb} GB) in {self.offer.where()}",
            self.estimate.describe(),
            f"balance {self.balance} USD; user data {self.user_data_bytes} bytes per node at most",
            *(f"warning: {w}" for w in self.warnings),
            *(
                [f"BALANCE TOO LOW: {self.balance_short}: `up` would refuse to create this"]
                if self.balance_short
                else []
            ),
        ]
        return "\n".join(lines)

    def render_requests(self, base_url: str) -> str:
        return "\n\n".join(r.render(base_url) for r in self.requests)
