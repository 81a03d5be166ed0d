"""torchrun support: rank/world from the environment, a gloo group for the small control
messages and the generated images (rank 0 writes the one store, in canonical order)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

import torch


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


_INITIALISED_HERE = False


def shutdown() -> None:
    """Destroys the process group if `rank_context` created it (end of a torchrun command)."""
    global _INITIALISED_HERE
    if _INITIALISED_HERE:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
        _INITIALISED_HERE = False


def env_rank() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) as torchrun sets them; (0, 1, 0) outside torchrun."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def rank_context() -> RankContext:
    rank, world, local = env_rank()
    if world <= 1:
        return RankContext()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
        global _INITIALISED_HERE
        _INITIALISED_HERE = True
    group = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")
    return RankContext(dist.get_rank(), dist.get_world_size(), local, group)


def rank_device(device: torch.device) -> torch.device:
    """Under torchrun, a bare `cuda` means this rank's local GPU."""
    _, world, local = env_rank()
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", local if world > 1 else torch.cuda.current_device())
    return device
