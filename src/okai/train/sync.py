"""How the ranks of a run keep one model: DDP every step, or DiLoCo every `inner_steps` steps.

`ctx.fit` asks `strategy_for(job)` for a strategy and calls it at four points:
`wrap` (before the first step), `after_step` (after each optimizer step, on
every rank), `state` (a checkpoint: collective, every rank calls it) and
`load` (resume).

- `Ddp`: PyTorch's DistributedDataParallel all-reduces every gradient every
  step; all ranks hold the same parameters at all times.
- `Diloco` (Douillard et al. 2023, "DiLoCo: Distributed Low-Communication
  Training of Language Models"): each rank takes `inner_steps` steps of the
  job's optimizer on its own data with nothing sent; then the ranks average
  their parameter change since the last outer step (the pseudo-gradient:
  reference - local), in one all-reduce of one flat buffer (one round trip,
  which matters on long links), and an outer SGD with Nesterov momentum applies
  it to the reference parameters, which every rank then copies. The last step
  of the run is always an outer step, so the model file is the reference.
  Between outer steps the ranks' parameters and inner optimizer states differ,
  so a checkpoint gathers every rank's and a resumed rank takes its own back:
  a run resumed from a checkpoint taken anywhere in an inner phase continues
  exactly as the uninterrupted one.

Written over torch.distributed rather than torchft's DiLoCo: see
docs/training.md ("Synchronisation").
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn

from okai.errors import UsageError
from okai.manifest import DilocoSync, JobSpec
from okai.train.advice import LinkMeasure, ddp_advice, ddp_network_seconds, ring_bytes

log = logging.getLogger(__name__)

WIRE_TYPES = {"none": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class Strategy(Protocol):
    name: str
    bytes_sent: int
    """What this rank has sent to synchronise so far (estimated: see `ring_bytes`)."""

    def wrap(self, model: nn.Module) -> nn.Module: ...

    def after_step(self, model: nn.Module, step: int, final_step: int) -> dict[str, Any]:
        """Synchronise if due; returns figures for the step's metrics line."""
        ...

    def totals(self) -> dict[str, Any]:
        """Figures so far, for the epoch's metrics line."""
        ...

    def state(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
        """What a checkpoint needs beyond rank 0's model and optimizer (collective)."""
        ...

    def load(
        self,
        state: dict[str, Any] | None,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        rank: int,
    ) -> None: ...


def strategy_for(job: JobSpec, world_size: int) -> Strategy:
    if isinstance(job.sync, DilocoSync):
        return Diloco(job.sync, world_size)
    return Ddp(world_size)


def _trained(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


PROBE_BYTES = 4 << 20
"""Large enough that TCP reaches the link's rate (1 MiB read 28 of 50 Mbit/s); 0.7 s at 50."""
ADVISE_AFTER = 5
"""Steps timed (after the first, which warms up) before judging whether DDP fits the link."""


def measure_link(device: torch.device) -> LinkMeasure:
    """A short probe between the ranks: round trips of a tiny all-reduce, then 4 MiB ones."""

    def timed(tensor: torch.Tensor, times: int) -> float:
        began = time.perf_counter()
        for _ in range(times):
            dist.all_reduce(tensor)
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # NCCL returns before the transfer ends
        return (time.perf_counter() - began) / times

    tiny = torch.zeros(1, device=device)
    timed(tiny, 1)  # connections and kernels warm up
    rtt = timed(tiny, 3)
    transfer = max(timed(torch.zeros(PROBE_BYTES // 4, device=device), 2) - rtt, 1e-6)
    sent = ring_bytes(PROBE_BYTES, dist.get_world_size())
    return LinkMeasure(mbit_per_second=sent * 8 / transfer / 1e6, rtt_ms=rtt * 1000)


class Ddp:
    name = "ddp"

    def __init__(self, world_size: int) -> None:
        self.world_size = world_size
        self.bytes_sent = 0
        self._per_step = 0
        self._parameters = 0
        self._link: LinkMeasure | None = None
        self._timed: list[float] = []

    def wrap(self, model: nn.Module) -> nn.Module:
        trained = _trained(model)
        self._parameters = sum(p.numel() for p in trained)
        self._per_step = ring_bytes(
            sum(p.numel() * p.element_size() for p in trained), self.world_size
        )
        if not dist.is_initialized():
            return model
        device = next(model.parameters()).device
        if int(os.environ.get("LOCAL_WORLD_SIZE", self.world_size)) < self.world_size:
            # Ranks on other nodes: is the link fast enough for DDP? (see after_step)
            self._link = measure_link(device)
        device_ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    def after_step(self, model: nn.Module, step: int, final_step: int) -> dict[str, Any]:
        self.bytes_sent += self._per_step
        if self._link is None:
            return {}
        self._timed.append(time.perf_counter())
        if len(self._timed) <= ADVISE_AFTER:
            return {}
        link, self._link = self._link, None  # judged once per attempt
        step_seconds = (self._timed[-1] - self._timed[0]) / ADVISE_AFTER
        network = ddp_network_seconds(self._parameters, self.world_size, link)
        compute = max(step_seconds - network, 0.0)
        advice = ddp_advice(self._parameters, self.world_size, link, compute)
        if advice is None:
            return {}
        log.warning("%s", advice)
        return {"advice": advice}

    def totals(self) -> dict[str, Any]:
        return {"bytesSent": self.bytes_sent}

    def state(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
        return {"bytesSent": self.bytes_sent}

    def load(
        self,
        state: dict[str, Any] | None,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        rank: int,
    ) -> None:
        self.bytes_sent = 0 if state is None else int(state["bytesSent"])


class Diloco:
    name = "diloco"

    def __init__(self, spec: DilocoSync, world_size: int) -> None:
        self.spec = spec
        self.world_size = world_size
        self.wire = WIRE_TYPES[spec.compression]
        self.bytes_sent = 0
        self.outer_step = 0
        self.sync_seconds = 0.0
        """Time spent in outer steps: the part of training that waits on the network."""
        self.reference: list[torch.Tensor] = []
        self.outer: torch.optim.SGD | None = None

    def wrap(self, model: nn.Module) -> nn.Module:
        """No wrapper: between outer steps a rank trains alone. Sets up the outer optimizer."""
        with torch.no_grad():
            self.reference = [p.detach().clone() for p in _trained(model)]
        self.outer = torch.optim.SGD(
            self.reference,
            lr=self.spec.outer_lr,
            momentum=self.spec.outer_momentum,
            nesterov=self.spec.outer_momentum > 0,
        )
        return model

    def after_step(self, model: nn.Module, step: int, final_step: int) -> dict[str, Any]:
        inner = (step - 1) % self.spec.inner_steps + 1
        if inner == self.spec.inner_steps or step == final_step:
            self._outer_step(model)
        return {"innerStep": inner, "outerStep": self.outer_step}

    def totals(self) -> dict[str, Any]:
        return {
            "bytesSent": self.bytes_sent,
            "outerSteps": self.outer_step,
            "syncSeconds": round(self.sync_seconds, 6),
        }

    def _outer_step(self, model: nn.Module) -> None:
        assert self.outer is not None, "wrap() first"
        began = time.perf_counter()
        params = _trained(model)
        with torch.no_grad():
            flat = torch.cat(
                [(ref - p).reshape(-1) for ref, p in zip(self.reference, params, strict=True)]
            ).to(self.wire)
            if dist.is_initialized():
                dist.all_reduce(flat)
                self.bytes_sent += ring_bytes(flat.numel() * flat.element_size(), self.world_size)
            average = flat.to(torch.float32) / self.world_size
            offset = 0
            for ref in self.reference:
                ref.grad = average[offset : offset + ref.numel()].view_as(ref).to(ref.dtype)
                offset += ref.numel()
            self.outer.step()
            self.outer.zero_grad(set_to_none=True)
            for ref, p in zip(self.reference, params, strict=True):
                p.copy_(ref)
            if dist.is_initialized():
                # Buffers (batch-norm statistics) are not averaged: rank 0's win, as in DDP.
                for buffer in model.buffers():
                    dist.broadcast(buffer, src=0)
        self.outer_step += 1
        self.sync_seconds += time.perf_counter() - began

    def state(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
        assert self.outer is not None, "wrap() first"
        mine = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
        replicas: list[Any] = [mine]
        if dist.is_initialized():
            # Mid-phase the ranks differ: every node keeps every rank's state, since a
            # restarted rank may land on another node.
            replicas = [None] * self.world_size
            dist.all_gather_object(replicas, mine)
        return {
            "bytesSent": self.bytes_sent,
            "outerStep": self.outer_step,
            "syncSeconds": self.sync_seconds,
            "reference": [ref.clone() for ref in self.reference],
            "outerOptimizer": self.outer.state_dict(),
            "replicas": replicas,
        }

    def load(
        self,
        state: dict[str, Any] | None,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        rank: int,
    ) -> None:
        if state is None:
            return
        assert self.outer is not None, "wrap() first"
        replicas = state["replicas"]
        if len(replicas) != self.world_size:
            raise UsageError(
                f"the checkpoint holds {len(replicas)} DiLoCo replicas, this run has "
                f"{self.world_size} ranks",
                hint="resume with the world size the run started with",
            )
        model.load_state_dict(replicas[rank]["model"])
        optimizer.load_state_dict(replicas[rank]["optimizer"])
        with torch.no_grad():
            for ref, saved in zip(self.reference, state["reference"], strict=True):
                ref.copy_(saved)
        self.outer.load_state_dict(state["outerOptimizer"])
        self.outer_step = int(state["outerStep"])
        self.bytes_sent = int(state["bytesSent"])
        self.sync_seconds = float(state["syncSeconds"])
