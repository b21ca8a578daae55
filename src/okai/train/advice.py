"""Whether DDP fits the link between the nodes: the arithmetic, torch-free.

A DDP step all-reduces every float32 gradient: each rank sends its ring share
(2 (n-1)/n) of 4 x parameters bytes and waits about one round trip per
all-reduce. When that takes as long as the step's computation, the run spends
most of its time on the network and DiLoCo (docs/training.md,
"Synchronisation") is the strategy that fits.
"""

from __future__ import annotations

from dataclasses import dataclass

DDP_BUCKET_BYTES = 25 * 1024 * 1024
"""PyTorch DDP's default bucket: one all-reduce (one round trip) per bucket."""
DOMINATES = 0.5
"""Warn when the network takes at least this share of a step."""


@dataclass(frozen=True)
class LinkMeasure:
    mbit_per_second: float
    rtt_ms: float


def ring_bytes(payload: int, world_size: int) -> int:
    """Bytes one rank sends in a ring all-reduce of `payload` bytes: 2 (n - 1) / n of it."""
    return 2 * (world_size - 1) * payload // world_size


def ddp_network_seconds(parameters: int, world_size: int, link: LinkMeasure) -> float:
    """Network time of one DDP step of a model of `parameters` float32 parameters."""
    payload = 4 * parameters
    buckets = max(1, -(-payload // DDP_BUCKET_BYTES))
    transfer = ring_bytes(payload, world_size) * 8 / (link.mbit_per_second * 1e6)
    return transfer + buckets * link.rtt_ms / 1000


def ddp_advice(
    parameters: int, world_size: int, link: LinkMeasure, compute_seconds: float
) -> str | None:
    """A warning when DDP's communication would dominate a step of `compute_seconds`, or None."""
    if world_size < 2:
        return None
    network = ddp_network_seconds(parameters, world_size, link)
    share = network / (network + max(compute_seconds, 0.0))
    if share < DOMINATES:
        return None
    return (
        f"DDP would spend about {share:.0%} of each step on the network ({network * 1000:,.0f} "
        f"ms a step: {4 * parameters / 1e6:.1f} MB of gradients over "
        f"{link.mbit_per_second:,.0f} Mbit/s with {link.rtt_ms:.0f} ms round trips); "
        '[sync] strategy = "diloco" sends about inner_steps times less '
        "(docs/training.md, Synchronisation)"
    )
