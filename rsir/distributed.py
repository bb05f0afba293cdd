"""Data-parallel training on ``torch.distributed``: the process group, batch shards, agreement.

A job of N processes is launched by ``torchrun`` (or ``rsir train --nproc N``), which sets RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in each. :func:`init_from_env` joins that
group (gloo on CPU, nccl on CUDA, one GPU per local rank); afterwards :func:`current` tells
training and evaluation that they are one of N replicas. Without a group, or with one process,
nothing here runs and the one-process path is untouched.

Every rank draws the same random batch order from the same seed and takes its share of every
global batch (:meth:`World.shard`), so N processes see the same global batches as one; DDP
averages gradients over ranks, which is why each rank's loss is scaled to its share of the
global batch (``rsir.training``). All communication is ``torch.distributed``'s.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from rsir.errors import ConfigError
from rsir.resources import resolve_device

LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class World:
    """This process's place in the group: rank, size, and the device it trains on."""

    rank: int
    size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, reports progress and writes checkpoints; the others only compute."""
        return self.rank == 0

    def shard(self, index: np.ndarray) -> np.ndarray:
        """This rank's contiguous share of a global batch (sizes differ by at most one; a batch
        smaller than the group leaves some ranks an empty share)."""
        return np.array_split(index, self.size)[self.rank]

    def sum(self, values: np.ndarray) -> np.ndarray:
        """Element-wise sum of ``values`` over all ranks (every rank gets the result)."""
        tensor = torch.tensor(values, device=self.device)  # a copy: ``values`` stays as it was
        dist.all_reduce(tensor)
        return tensor.cpu().numpy()

    def agree(self, code: int) -> int:
        """The largest of every rank's ``code``: one decision (e.g. stop now) that all ranks take
        together, so that none waits forever in a collective the others have left."""
        tensor = torch.tensor([code], dtype=torch.int64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return int(tensor.item())


def launched() -> bool:
    """Whether this process was started by torchrun as one of two or more."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and all(v in os.environ for v in LAUNCH_VARIABLES)


def check_devices(device: str, nproc: int) -> None:
    """On CUDA every local process needs a GPU of its own: a ``ConfigError`` before any starts."""
    if nproc > 1 and resolve_device(device).type == "cuda" and nproc > torch.cuda.device_count():
        raise ConfigError(f"{nproc} processes need as many GPUs; this machine has {torch.cuda.device_count()}")


def init_from_env(device: str = "auto", timeout_s: float = 1800.0) -> World | None:
    """Join the group torchrun describes in the environment; None when not launched as one of
    several (then the caller trains as one process). ``device`` is the training device setting:
    CUDA means nccl and GPU LOCAL_RANK, anything else gloo on the CPU."""
    if not launched():
        return None
    if not dist.is_initialized():
        cuda = resolve_device(device).type == "cuda"
        if cuda:
            local = int(os.environ["LOCAL_RANK"])
            if local >= torch.cuda.device_count():
                raise ConfigError(f"local rank {local} has no GPU: this machine has {torch.cuda.device_count()}; "
                                  "start at most one process per GPU")
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_s))
    world = current()
    assert world is not None
    return world


def current() -> World | None:
    """The group this process belongs to, if it has two or more ranks; else None."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    cuda = dist.get_backend() == "nccl"
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    return World(dist.get_rank(), dist.get_world_size(), device)


def shutdown() -> None:
    """Leave the group (a no-op outside one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
