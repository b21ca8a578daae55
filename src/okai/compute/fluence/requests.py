"""The write requests a Fluence cluster is made of, built before they are sent.

`plan()` and `up()` build their requests with these same functions, so what a
dry run prints is what `up` sends (ids not yet known appear as `<...>`
placeholders in the plan).

Network isolation uses the spec's security groups: one group per cluster whose
ingress allows SSH from the operator's CIDR and everything from the members'
public addresses and from the group itself; egress stays open (nodes fetch
data from Walrus). The group is bound to every interface of every node.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from okai.compute.fluence.client import PlannedRequest
from okai.compute.fluence.discovery import ADDRESS_TYPE, BOOT_STORAGE_TYPE, Offer

SSH_PORT = 22
NAME_LIMIT = 25
"""Fluence's documented VM name rule: lowercase letters, digits and '-', at most 25."""


def vm_name(cluster: str, rank: int) -> str:
    return f"{cluster}-r{rank}"


def boot_disk_name(cluster: str, rank: int) -> str:
    return f"{vm_name(cluster, rank)}-boot"


def public_ip_name(cluster: str, rank: int) -> str:
    return f"{vm_name(cluster, rank)}-ip"


def security_group_name(cluster: str) -> str:
    return f"{cluster}-sg"


def ssh_key_name(fingerprint: str) -> str:
    """A stable name for the operator's key, from its fingerprint."""
    digits = "".join(ch for ch in fingerprint.removeprefix("SHA256:").lower() if ch.isalnum())
    return f"okai-{digits[:12]}"


def create_ssh_key(name: str, public_key: str) -> PlannedRequest:
    return PlannedRequest(
        "POST", "/v1/ssh_keys", {"name": name, "publicKey": public_key}, purpose="register SSH key"
    )


def create_public_ip(cluster_id: str, name: str) -> PlannedRequest:
    body = {"clusterId": cluster_id, "name": name, "addressType": ADDRESS_TYPE}
    return PlannedRequest("POST", "/v1/public_ips", body, purpose=f"public IPv4 {name}")


def _ssh_rule(ssh_cidr: str) -> dict[str, Any]:
    return {
        "type": "ipv4",
        "protocolKind": {"tcp": {"ports": {"exact": {"value": SSH_PORT}}}},
        "remote": {"address": ssh_cidr},
    }


def _member_rules(addresses: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {"type": "ipv4", "protocolKind": "all", "remote": {"address": f"{address}/32"}}
        for address in addresses
    ]


def create_security_group(
    cluster_id: str, name: str, ssh_cidr: str, member_addresses: Sequence[str]
) -> PlannedRequest:
    """The group, with SSH from `ssh_cidr` and all traffic from the members' addresses.

    `egressRules` is left out: absent means allow all (an empty list would deny all).
    """
    body = {
        "clusterId": cluster_id,
        "name": name,
        "ingressRules": [_ssh_rule(ssh_cidr), *_member_rules(member_addresses)],
    }
    return PlannedRequest("POST", "/v1/security_groups", body, purpose=f"security group {name}")


def allow_group_members(
    group_id: str, ssh_cidr: str, member_addresses: Sequence[str]
) -> PlannedRequest:
    """Add "all traffic from this same group" (its id is known only after the create).

    Updates use the tagged form `{"type": "allow", "rules": [...]}` and replace the list.
    """
    rules = [
        _ssh_rule(ssh_cidr),
        *_member_rules(member_addresses),
        {"type": "ipv4", "protocolKind": "all", "remote": {"securityGroup": group_id}},
    ]
    return PlannedRequest(
        "PATCH",
        f"/v1/security_groups/{group_id}",
        {"ingressRules": {"type": "allow", "rules": rules}},
        purpose="allow traffic between members of the group",
    )


def create_vm(
    offer: Offer,
    name: str,
    *,
    boot_disk: str,
    image_url: str,
    ssh_key_id: str,
    public_ip_id: str,
    user_data: str,
) -> PlannedRequest:
    """`POST /v2/vms`: the boot disk is created inline from the image; the IP exists already."""
    cluster = offer.cluster.id
    body = {
        "clusterId": cluster,
        "name": name,
        "configurationId": offer.configuration.id,
        "bootDisk": {
            "clusterId": cluster,
            "name": boot_disk,
            "storageType": BOOT_STORAGE_TYPE,
            "volumeGb": offer.disk_gb,
            "replicated": offer.replicated,
            "osImage": image_url,
        },
        "sshKeys": [ssh_key_id],
        "publicIp": public_ip_id,
        "cloudInit": {"userData": user_data},
    }
    return PlannedRequest("POST", "/v2/vms", body, purpose=f"VM {name}")


def bind_security_group(vm_id: str, interface_id: str, group_id: str) -> PlannedRequest:
    return PlannedRequest(
        "PATCH",
        f"/v2/vms/{vm_id}/interfaces/{interface_id}",
        {"securityGroupId": group_id},
        purpose="bind the security group to the interface",
    )


def restart_vm(vm_id: str) -> PlannedRequest:
    return PlannedRequest("POST", f"/v2/vms/{vm_id}/restart", purpose="apply the interface change")


def terminate_vm(vm_id: str) -> PlannedRequest:
    return PlannedRequest("POST", f"/v2/vms/{vm_id}/terminate", purpose="terminate VM")


def placeholder(what: str) -> str:
    """How a plan shows a value only known once an earlier request has answered."""
    return f"<{what}>"
