"""Compute: where training runs.

    cloudinit   the `#cloud-config` user data a node boots with (schema-checked, < 16 KiB)
    state       the cluster state file: every resource a cluster made, for teardown
    ssh         SSH public keys and ssh/scp command lines for the control channel
    fluence     the Fluence provider: API client, discovery, cost estimate, VM lifecycle

Only this package (with walrus and chain) talks to the network.
"""

__all__: list[str] = []
