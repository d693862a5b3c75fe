"""Single-process or DDP, decided by the launcher: ``torchrun`` sets RANK/WORLD_SIZE, plain
``python`` does not. The same command therefore runs on 1 CPU, 1 GPU, N GPUs or N nodes.

Backends: gloo on CPU, nccl on CUDA. Helpers degrade to no-ops in a single process.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch
import torch.distributed as dist

from simmim_deploy.core.errors import UserError


@dataclasses.dataclass(frozen=True)
class Launch:
    """What the launcher says about this process (``torchrun`` sets these; plain python none).

    Attributes:
        rank: global rank (0 in a single process).
        local_rank: rank on this node (selects the GPU).
        world_size: number of processes.
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """True on the process that logs and saves."""
        return self.rank == 0


def launch() -> Launch:
    """Rank, local rank and world size from the launcher's environment: the one place read."""
    env = os.environ
    return Launch(
        rank=int(env.get("RANK", "0")),
        local_rank=int(env.get("LOCAL_RANK", "0")),
        world_size=int(env.get("WORLD_SIZE", "1")),
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class DistInfo(Launch):
    """Where this process runs: the launcher's :class:`Launch` and the device it trains on.

    Attributes:
        device: the torch device this process trains on.
    """

    device: torch.device


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``"auto"``: CUDA if available, else CPU. ``"cuda"`` without a GPU is a :class:`UserError`."""
    name = device.lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError("--device cuda was asked for but no CUDA GPU is visible; use cpu")
        if name == "cuda":
            return torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
        return torch.device(name)
    if name != "cpu":
        raise UserError(f"unknown device '{device}': use cpu, cuda or auto")
    return torch.device("cpu")


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group when launched by ``torchrun``; otherwise describe the one process.

    Idempotent: calling it again returns the same description.
    """
    where = launch()
    dev = resolve_device(device, where.local_rank)
    if where.world_size > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend=backend, device_id=dev if dev.type == "cuda" else None)
    return DistInfo(**dataclasses.asdict(where), device=dev)


def teardown() -> None:
    """Leave the process group (if any)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_initialized() -> bool:
    """True inside a multi-process group."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """Global rank (0 in a single process)."""
    return dist.get_rank() if is_initialized() else 0


def is_main() -> bool:
    """True on rank 0 (before the process group starts too: then the launcher's rank)."""
    return get_rank() == 0 if is_initialized() else launch().is_main


def barrier() -> None:
    """Wait for every process (no-op in a single process)."""
    if is_initialized():
        dist.barrier()


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Average ``tensor`` over processes, in place; returns it."""
    if is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor /= dist.get_world_size()
    return tensor


def all_gather_objects(obj: Any) -> list[Any]:
    """Gather one picklable object from every process, in rank order."""
    if not is_initialized():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
