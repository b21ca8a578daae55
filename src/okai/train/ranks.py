"""This process among the ranks of a run, and what the ranks agree on: sums and minimums."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    """This rank, and collectives over the process group; with none (one process), the local
    value."""

    rank: int
    world_size: int
    device: torch.device
    """This rank's device, where a sum travels: NCCL reduces only tensors on the GPU."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """`values` summed over all ranks, back on the CPU."""
        if dist.is_initialized():
            values = values.to(self.device)
            dist.all_reduce(values)
        return values.cpu()

    def min(self, value: int) -> int:
        """The smallest `value` of all ranks."""
        tensor = torch.tensor([value], dtype=torch.int64)
        if dist.is_initialized():
            dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
        return int(tensor.item())
