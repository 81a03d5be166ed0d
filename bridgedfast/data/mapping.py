"""One flat uint8 tensor over many files: every shard of every store mapped side by side into
one reserved address range. The fused augmentation op takes a single `data` buffer per batch,
so with this the CPU loader hands it the store itself (zero copy: pixels go from the page cache
straight into the resampling) instead of first gathering the batch into a new buffer.

Linux/macOS only (mmap with MAP_FIXED through libc); `map_contiguous` returns None elsewhere
or on any failure, and the loader gathers instead.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import sys
import warnings
from pathlib import Path

import torch

_PAGE = mmap.PAGESIZE
_MAP_FIXED = 0x10  # the same value on Linux and macOS
_MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0)  # no swap/commit charge for the reservation

_libc = None


def _lib():
    global _libc
    if _libc is None:
        lib = ctypes.CDLL(None, use_errno=True)
        lib.mmap.restype = ctypes.c_void_p
        lib.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
        lib.munmap.restype = ctypes.c_int
        lib.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        _libc = lib
    return _libc


def _round_up(n: int) -> int:
    return (n + _PAGE - 1) // _PAGE * _PAGE


def map_contiguous(files: list[tuple[Path, int]]) -> tuple[torch.Tensor, list[int]] | None:
    """Maps the first `size` bytes of each (path, size) at page-aligned offsets of one range.

    Returns (uint8 tensor over the whole range, offset of each file in it), or None when this
    platform or the files do not allow it. The mapping is private (copy-on-write): writes
    through the tensor never reach the files. It is unmapped when the tensor is freed.
    """
    if sys.platform not in ("linux", "darwin") or not files:
        return None
    offsets, total = [], 0
    for _, size in files:
        offsets.append(total)
        total += _round_up(size)
    if total == 0:
        return None
    try:
        lib = _lib()
        flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE
        base = lib.mmap(None, total, 0, flags, -1, 0)  # PROT_NONE: reserved, not usable
        if base in (None, ctypes.c_void_p(-1).value):
            return None
        for (path, size), offset in zip(files, offsets):
            if size == 0:
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                got = lib.mmap(base + offset, size, mmap.PROT_READ | mmap.PROT_WRITE,
                               mmap.MAP_PRIVATE | _MAP_FIXED | _MAP_NORESERVE, fd, 0)
            finally:
                os.close(fd)
            if got != base + offset:
                lib.munmap(base, total)
                return None
    except (OSError, AttributeError) as exc:
        warnings.warn(f"bridgedfast: could not map the store contiguously ({exc}); gathering instead", RuntimeWarning)
        return None

    class _Mapping(ctypes.c_uint8 * total):  # type: ignore[misc]
        def __del__(self) -> None:
            lib.munmap(ctypes.addressof(self), total)

    return torch.frombuffer(_Mapping.from_address(base), dtype=torch.uint8), offsets
