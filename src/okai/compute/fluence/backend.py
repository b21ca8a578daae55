"""Fluence as a cluster backend: `FluenceProvider` for the VMs, SSH for everything after.

`create` is `FluenceProvider.up` (cost-checked, recorded, rolled back on any
failure); it puts nothing of the job into cloud-init, whose user data only
carries the hostname and the operator's key. Once the VMs are launched the
cluster layer reaches each over SSH as root with the operator's key, learns
its private address, and delivers `peers` (all members' public and private
addresses), `job.json` and `cluster.json`, which starts the agent. Ranks
meet on rank 0's private address at the NixOS module's rendezvous port.

The channel is pluggable (`channel_factory`): tests replace SSH by
`LocalChannel`, a test transport that runs the same agent on this machine.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from okai.compute.channel import NodeChannel, SshChannel
from okai.compute.cluster.request import ClusterRequest
from okai.compute.fluence.discovery import NodeRequirements
from okai.compute.fluence.provider import FluenceProvider
from okai.compute.fluence.spec import FluenceClusterSpec, FluencePlan
from okai.compute.node.files import DEFAULT_RENDEZVOUS_PORT
from okai.compute.ssh import PublicKey, SshTarget
from okai.compute.state import ClusterState, NodeRecord, clusters_dir
from okai.errors import UsageError

ChannelFactory = Callable[[ClusterState, NodeRecord], NodeChannel]
SSH_USER = "root"
DEFAULT_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")


def default_ssh_key() -> Path:
    """The operator's first usual private key that has a `.pub` beside it."""
    folder = Path.home() / ".ssh"
    for name in DEFAULT_KEYS:
        key = folder / name
        if key.is_file() and key.with_name(f"{name}.pub").is_file():
            return key
    raise UsageError(
        f"no SSH key found in {folder} ({', '.join(DEFAULT_KEYS)} with a .pub beside it)",
        hint="make one with `ssh-keygen -t ed25519`, or pass --ssh-key PATH",
    )


def known_hosts(cluster: str) -> Path:
    """The cluster's own known_hosts file, where its nodes' host keys are pinned."""
    return clusters_dir() / f"{cluster}.known_hosts"


class FluenceBackend:
    """Creates Fluence clusters and reaches their nodes (see the module docstring)."""

    provider = "fluence"
    ready_timeout_s = 600.0
    """How long launched VMs may take to answer over SSH (`--node-wait` overrides it)."""

    def __init__(
        self,
        provider: FluenceProvider,
        *,
        ssh_key: Path | None = None,
        image_url: str | None = None,
        requirements: NodeRequirements | None = None,
        hours: float = 1.0,
        max_usd: Decimal | None = None,
        ssh_cidr: str = "0.0.0.0/0",
        public_key: str | None = None,
        channel_factory: ChannelFactory | None = None,
        rendezvous_port: int = DEFAULT_RENDEZVOUS_PORT,
    ) -> None:
        self.fluence = provider
        # Absolute: `status` and `logs` may run from another folder.
        self.ssh_key = None if ssh_key is None else ssh_key.expanduser().absolute()
        self.image_url = image_url
        self.requirements = requirements or NodeRequirements()
        self.hours = hours
        self.max_usd = max_usd
        self.ssh_cidr = ssh_cidr
        self._public_key = public_key
        self.channel_factory = channel_factory
        self._rendezvous_port = rendezvous_port
        self.approved: FluencePlan | None = None

    def public_key(self) -> str:
        """The operator's public key line (from `<ssh key>.pub` unless given)."""
        if self._public_key is not None:
            return self._public_key
        key = self.ssh_key or default_ssh_key()
        return PublicKey.read(key.with_name(f"{key.name}.pub")).openssh

    def spec(self, request: ClusterRequest) -> FluenceClusterSpec:
        if not self.image_url:
            raise UsageError(
                "a Fluence cluster needs the image URL (--image-url)",
                hint="`okai image publish` prints it: the image's .qcow2 URL on a Walrus "
                "aggregator, or your mirror",
            )
        return FluenceClusterSpec(
            name=request.name,
            nodes=request.nodes,
            image_url=self.image_url,
            ssh_public_key=self.public_key(),
            requirements=self.requirements,
            hours=self.hours,
            max_usd=self.max_usd,
            ssh_cidr=self.ssh_cidr,
        )

    def plan(self, request: ClusterRequest) -> FluencePlan:
        """Offer, cost estimate and the exact requests; read-only. `create` uses this plan."""
        self.approved = self.fluence.plan(self.spec(request))
        return self.approved

    def create(self, request: ClusterRequest) -> ClusterState:
        details = {} if self.ssh_key is None else {"sshKey": str(self.ssh_key)}
        return self.fluence.up(self.spec(request), self.approved, details=details)

    def channels(self, state: ClusterState) -> list[NodeChannel]:
        return [self.channel(state, node) for node in sorted(state.nodes, key=lambda n: n.rank)]

    def channel(self, state: ClusterState, node: NodeRecord) -> NodeChannel:
        if self.channel_factory is not None:
            return self.channel_factory(state, node)
        if not node.address:
            raise UsageError(f"node {node.rank} of {state.name} has no address recorded")
        recorded = state.details.get("sshKey")
        identity = self.ssh_key or (Path(recorded) if recorded else None)
        target = SshTarget(
            host=node.address,
            user=SSH_USER,
            identity=identity,
            known_hosts=known_hosts(state.name),
        )
        return SshChannel(node.rank, target)

    def rendezvous_port(self, state: ClusterState) -> int:
        """The NixOS module's `rendezvousPort`, which its firewall opens to the peers."""
        return self._rendezvous_port

    def destroy(self, state: ClusterState) -> None:
        self.fluence.down(state)
        # Pinned host keys belong to these VMs; addresses get reused by later ones.
        known_hosts(state.name).unlink(missing_ok=True)
