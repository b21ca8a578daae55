"""What a node is: its image identity (checked against the cluster's) and its addresses."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from okai.compute.node.files import ClusterFile
from okai.errors import IntegrityError, UsageError
from okai.train.receipt import IMAGE_FILE, UNREGISTERED_HOST, host_identity

OKAI_IMAGE = "okai image"
"""How status and info name a host that runs an okai image (the other kind is unregistered)."""
ADDRESS_ENV = "OKAI_NODE_ADDRESS"
"""Overrides the address a node reports for cluster traffic (hosts with several networks)."""
_SIOCGIFADDR = 0x8915


class ImageMismatch(IntegrityError):
    """The node runs another system than the image the cluster expects."""


class UnregisteredHost(UsageError):
    """The node is not an okai image and the cluster file does not allow that."""


@dataclass(frozen=True)
class HostIdentity:
    """`okai image` with the identity read on the node, or `unregistered host`."""

    host: str
    image: dict[str, Any] | None


def read_identity(image_file: Path = IMAGE_FILE) -> HostIdentity:
    """The identity `/etc/okai/image.json` declares (system toplevel as running)."""
    image = host_identity(image_file)
    if image is None:
        return HostIdentity(UNREGISTERED_HOST, None)
    return HostIdentity(OKAI_IMAGE, image.to_json())


def check_identity(cluster: ClusterFile, identity: HostIdentity) -> None:
    """Refuse to train on a host the cluster file does not accept.

    An okai image must match every field the cluster's expectation names; any
    other host is accepted only when the cluster file allows unregistered hosts.
    """
    if identity.host == UNREGISTERED_HOST or identity.image is None:
        if cluster.allow_unregistered_host:
            return
        raise UnregisteredHost(
            f"this host is not an okai image (no {IMAGE_FILE}) and the cluster file does not "
            "allow unregistered hosts",
            hint="boot the node from the okai image, or set allowUnregisteredHost in the "
            "cluster file (the receipt then says 'unregistered host')",
        )
    expected = cluster.image
    if expected is None:
        return
    found = identity.image
    checks = [
        ("system toplevel", expected.system_toplevel, found.get("systemToplevel")),
        ("nixpkgs revision", expected.nixpkgs_revision, found.get("nixpkgsRevision")),
    ]
    # Images carry no flake revision (a commit, not content: nix/identity.nix); the
    # toplevel pins the content. Older images that state one must still agree.
    if "flakeRevision" in found:
        checks.append(("flake revision", expected.flake_revision, found.get("flakeRevision")))
    for what, want, got in checks:
        if want is not None and want != got:
            raise ImageMismatch(f"the node's image ({what})", want, str(got))


def node_address(toward: str | None = None) -> str:
    """The IPv4 address other members reach this node at.

    `$OKAI_NODE_ADDRESS` if set; else the source address the kernel picks for
    `toward` (or for the default route); else the first non-loopback address.
    """
    if override := os.environ.get(ADDRESS_ENV):
        return override
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        # connect() on UDP sends nothing: it only asks the kernel for a route.
        probe.connect((toward or "192.0.2.1", 9))
        address = str(probe.getsockname()[0])
        if address != "0.0.0.0":
            return address
    addresses = interface_addresses()
    return next((a for name, a in addresses if not a.startswith("127.")), "127.0.0.1")


def interface_addresses() -> list[tuple[str, str]]:
    """(interface, IPv4 address) of every interface that has one."""
    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            try:
                answer = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, request)
            except OSError:
                continue
            found.append((name, socket.inet_ntoa(answer[20:24])))
    return found


def node_info(image_file: Path = IMAGE_FILE, address: str | None = None) -> dict[str, Any]:
    """What `okai node info` reports: identity, cluster address (`address` if given), versions."""
    import okai

    identity = read_identity(image_file)
    return {
        "okaiVersion": okai.__version__,
        "hostname": socket.gethostname(),
        "address": address or node_address(),
        "interfaces": [{"name": n, "address": a} for n, a in interface_addresses()],
        "host": identity.host,
        "image": identity.image,
        "registered": identity.host == OKAI_IMAGE,
    }
