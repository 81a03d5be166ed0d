"""torchrun support shared by generation and training; everything is a no-op in a single process.

- `env_rank()`: (rank, world_size, local_rank) as torchrun sets them.
- `rank_device(device)`: under torchrun a bare `cuda` means this rank's local GPU.
- Training (`DistInfo`, `init_distributed`, `barrier`, `all_reduce_sum`): NCCL on GPU, gloo on
  CPU, tensors reduced in place.
- Generation (`RankContext`, `rank_context`): a gloo group for small Python objects and the
  generated images (rank 0 writes the one store, in canonical order).
- `shutdown()`: destroys the process group if this module created it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

__all__ = ["env_rank", "rank_device", "shutdown", "DistInfo", "init_distributed", "barrier", "all_reduce_sum",
           "RankContext", "rank_context"]

_CREATED_HERE = False  # whether the process group is ours to destroy


def env_rank() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) as torchrun sets them; (0, 1, 0) outside torchrun."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def rank_device(device: torch.device) -> torch.device:
    """Under torchrun, a bare `cuda` means this rank's local GPU."""
    _, world, local = env_rank()
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", local if world > 1 else torch.cuda.current_device())
    return device


def _join(backend: str, device: torch.device | None = None) -> None:
    """Joins torchrun's process group unless one exists (e.g. the caller's own)."""
    import torch.distributed as dist

    global _CREATED_HERE
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, device_id=device)
        _CREATED_HERE = True


def shutdown() -> None:
    """Destroys the process group if this module created it (the end of a torchrun command)."""
    global _CREATED_HERE
    if _CREATED_HERE:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
        _CREATED_HERE = False


# ---------------------------------------------------------------------------------- training
@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Joins the torchrun process group (env WORLD_SIZE > 1) or returns a single-process info.
    On CUDA each rank takes the GPU of its LOCAL_RANK."""
    rank, world_size, local_rank = env_rank()
    if world_size <= 1:
        return DistInfo(device=device)
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPUs are visible")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    _join("nccl" if device.type == "cuda" else "gloo", device if device.type == "cuda" else None)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        import torch.distributed as dist

        if info.device.type == "cuda":
            dist.barrier(device_ids=[info.device.index])
        else:
            dist.barrier()


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """In-place sum over ranks (the tensor must live on info.device for NCCL)."""
    if info.enabled:
        import torch.distributed as dist

        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


# ---------------------------------------------------------------------------------- generation
@dataclass
class RankContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    group: Any = field(default=None, repr=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank."""
        if self.world_size == 1:
            return obj
        import torch.distributed as dist

        box = [obj if self.rank == 0 else None]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's `obj`, in rank order, on rank 0 (None elsewhere)."""
        if self.world_size == 1:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world_size if self.rank == 0 else None
        dist.gather_object(obj, out, dst=0, group=self.group)
        return out

    def all_gather(self, obj: Any) -> list[Any]:
        if self.world_size == 1:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self.group)
        return out

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier(group=self.group)

    def main_decides(self, fn: Callable[[], Any]) -> Any:
        """Runs `fn` on rank 0 and hands its result to every rank; an error a user can cause
        (ValueError, FileNotFoundError) is raised on every rank, so no rank waits forever."""
        result: tuple[str, Any]
        if self.rank == 0:
            try:
                result = ("ok", fn())
            except (ValueError, FileNotFoundError) as exc:
                if self.world_size == 1:
                    raise
                result = (type(exc).__name__, str(exc))
        else:
            result = ("", None)
        kind, value = self.broadcast(result)
        if kind == "ok":
            return value
        raise (FileNotFoundError if kind == "FileNotFoundError" else ValueError)(value)


def rank_context() -> RankContext:
    rank, world, local = env_rank()
    if world <= 1:
        return RankContext()
    import torch.distributed as dist

    _join("gloo")
    group = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")
    return RankContext(dist.get_rank(), dist.get_world_size(), local, group)
