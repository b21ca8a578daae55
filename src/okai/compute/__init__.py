"""Compute: where training runs.

    cloudinit   the `#cloud-config` user data a node boots with (schema-checked, < 16 KiB)
    state       the cluster state file: every resource a cluster made, for teardown
    ssh         SSH public keys and ssh/scp command lines for the control channel
    fluence     the Fluence provider: API client, discovery, cost, VM lifecycle, cluster backend
    node        the node agent (`okai node`): cluster file, status, identity check, publishing
    channel     the control channel to a node: SSH, or a local folder and process
    cluster     provider-independent `okai cluster` up/status/logs/down over a Backend
    local       the local backend: nodes as process groups on this machine
    marks       finding a local node's processes by the token in their environment

Only this package (with walrus and chain) talks to the network.
"""

__all__: list[str] = []
