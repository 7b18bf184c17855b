"""Distributed training plumbing: torchrun's process group (nccl on CUDA, gloo on the CPU), devices, reductions."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Dist:
    """Where this process stands in a (possibly one-process) distributed run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


@contextlib.contextmanager
def distributed(device: torch.device) -> Iterator[Dist]:
    """Join the torchrun process group when WORLD_SIZE > 1 (nccl on CUDA, gloo otherwise); leave it at the end.

    Nested use (cv's folds each calling train) reuses the group the outer call joined.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        yield Dist()
        return
    joins = not torch.distributed.is_initialized()  # False inside an enclosing run (cv over folds): share its group
    if joins:
        if device.type == "cuda":
            torch.cuda.set_device(device)  # nccl binds the group to the current device: this rank's own
        torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        yield Dist(torch.distributed.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0")))
    finally:
        if joins:
            torch.distributed.destroy_process_group()


def cuda_device_count() -> int:
    """CUDA devices torch sees here (0 without a GPU or a CUDA build); the CLI checks --device against it."""
    return torch.cuda.device_count()


def pick_device(name: str) -> torch.device:
    """auto: this rank's CUDA device when there is one, else the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        return torch.device("cpu")
    return torch.device(name)


def all_reduce_sum(values: list[float], device: torch.device, dist: Dist) -> list[float]:
    """Sum per-rank numbers over all ranks (for logging the global batch)."""
    if dist.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return t.tolist()


def barrier(dist: Dist) -> None:
    if dist.world > 1:
        torch.distributed.barrier()
