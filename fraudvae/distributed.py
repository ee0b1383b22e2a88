"""Training under torchrun: join the process group the launcher describes, and the few collective
operations the training loop needs. Outside torchrun everything here is a no-op for one process.

`fraudvae fit` joins the group itself (`process_group`); library users launched by torchrun call
`torch.distributed.init_process_group()` before `FraudVAE.fit`, which then trains with
DistributedDataParallel (see `fraudvae.train`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist


def launched_by_torchrun() -> bool:
    """True in a process torchrun started as one of several (WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def rank_and_world() -> tuple[int, int]:
    """(this process's rank, number of processes) of the joined group; (0, 1) when there is none."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@contextmanager
def process_group(device: str = "auto") -> Iterator[int]:
    """Under torchrun, join the process group (NCCL when training on CUDA, gloo on CPU; each
    process on the GPU of its LOCAL_RANK) for the block, and yield this process's rank. Elsewhere,
    or when a group is already joined, yield the current rank and do nothing."""
    if not launched_by_torchrun() or dist.is_initialized():
        yield rank_and_world()[0]
        return
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    try:
        yield dist.get_rank()
    finally:
        dist.destroy_process_group()


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sums over all processes (the values themselves with one process)."""
    if rank_and_world()[1] == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_state(module: torch.nn.Module) -> None:
    """Make every process's parameters and buffers rank 0's, exactly (no-op with one process)."""
    if rank_and_world()[1] == 1:
        return
    with torch.no_grad():
        for t in module.state_dict().values():
            dist.broadcast(t, src=0)
