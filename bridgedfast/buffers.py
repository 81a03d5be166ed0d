"""Recycled output buffers for the CPU batch producers (the loader's augmented batches, Mixup).

A fresh batch of 224x224 float images is tens to hundreds of megabytes: glibc serves it with
mmap, so every batch page-faults and zero-fills all of it again, which can cost as much as the
augmentation itself. `BufferPool` hands out views of a few long-lived buffers instead, and
reuses a buffer only once nothing outside the pool references its storage any more: a batch the
caller still holds (in a list, in an autograd graph, as a numpy array or a view of it) is never
written again.
"""
from __future__ import annotations

import sys
import threading
from typing import Sequence

import torch

__all__ = ["BufferPool", "storage_use_count"]

_USE_COUNT = getattr(torch._C, "_storage_Use_Count", None)


def storage_use_count(t: torch.Tensor) -> tuple[int, int] | None:
    """The references to the storage behind `t`: (C++ use count: tensors and views over it;
    Python references to its one storage object, which torch keeps alive and shares between
    all `untyped_storage()` calls), or None where this torch cannot tell (private API)."""
    if _USE_COUNT is None:
        return None
    try:
        storage = t.untyped_storage()
        return int(_USE_COUNT(storage._cdata)), sys.getrefcount(storage)
    except (AttributeError, RuntimeError, TypeError):
        return None


class _Entry:
    __slots__ = ("base", "idle_count")

    def __init__(self, base: torch.Tensor, idle_count: tuple[int, int]) -> None:
        self.base = base              # the pool's own flat uint8 tensor over the storage
        self.idle_count = idle_count  # the use count while only the pool holds the storage


class BufferPool:
    """Up to `capacity` CPU buffers, handed out as fresh tensors over recycled storage.

    `pool.empty(shape, dtype, memory_format=...)` -> an uninitialised tensor like torch.empty,
    over a buffer nobody else references, or a newly allocated one. When every pooled buffer
    is still referenced elsewhere and the pool is full, the oldest is forgotten (its holder
    keeps it) and the new one takes its place. Without the storage use count (a private torch
    API) every call is a plain allocation. Thread-safe.
    """

    def __init__(self, capacity: int, device: torch.device | str = "cpu") -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self.device = torch.device(device)
        self.enabled = capacity > 0 and self.device.type == "cpu" and _USE_COUNT is not None
        self._entries: list[_Entry] = []
        self._lock = threading.Lock()
        self.reused = 0     # calls answered from the pool
        self.allocated = 0  # calls that allocated

    def empty(self, shape: Sequence[int], dtype: torch.dtype,
              memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
        if not self.enabled:
            self.allocated += 1
            return torch.empty(tuple(shape), dtype=dtype, device=self.device, memory_format=memory_format)
        stride = torch.empty(tuple(shape), dtype=dtype, device="meta", memory_format=memory_format).stride()
        numel = 1
        for s in shape:
            numel *= int(s)
        nbytes = numel * dtype.itemsize
        with self._lock:
            entry = self._take_idle(nbytes)
            if entry is None:
                entry = self._add(nbytes)
                self.allocated += 1
            else:
                self.reused += 1
            # A new tensor over the storage: while the caller (or anything made from it) lives,
            # the storage's use count stays above the pool's own. Made under the lock: until it
            # exists the buffer still looks idle, and another caller could take it too.
            view = torch.empty(0, dtype=dtype, device=self.device)
            return view.set_(entry.base.untyped_storage(), 0, tuple(shape), stride)

    def _take_idle(self, nbytes: int) -> _Entry | None:
        best = None
        for entry in self._entries:
            size = entry.base.numel()
            if size >= nbytes and (best is None or size < best.base.numel()) and self._idle(entry):
                best = entry
        return best

    def _idle(self, entry: _Entry) -> bool:
        count = storage_use_count(entry.base)
        return count is not None and count[0] <= entry.idle_count[0] and count[1] <= entry.idle_count[1]

    def _add(self, nbytes: int) -> _Entry:
        base = torch.empty(nbytes, dtype=torch.uint8, device=self.device)
        entry = _Entry(base, storage_use_count(base) or (0, 0))
        if len(self._entries) >= self.capacity:
            # Forget an idle buffer that was too small, else the oldest one still in use.
            idle = [e for e in self._entries if self._idle(e)]
            self._entries.remove(idle[0] if idle else self._entries[0])
        self._entries.append(entry)
        return entry

    def clear(self) -> None:
        """Forgets every buffer (their holders keep theirs)."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
