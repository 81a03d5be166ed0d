"""Loads the compiled extension once and answers what it provides."""
from __future__ import annotations

import functools
import warnings

import torch

try:
    from . import _C  # noqa: F401  (importing runs the op registrations)

    EXTENSION_ERROR: Exception | None = None
except ImportError as exc:  # not built: every op falls back to its pure-PyTorch reference
    _C = None
    EXTENSION_ERROR = exc

NAMESPACE = "bridgedfast"


def extension_loaded() -> bool:
    return _C is not None


def cuda_kernels_compiled() -> bool:
    """True when the extension was built with its CUDA kernels (a GPU need not be present)."""
    return _C is not None and bool(getattr(_C, "cuda_compiled", 0))


def registered_ops() -> dict[str, list[str]]:
    """Each `bridgedfast::` op mapped to the dispatch keys (devices) it has kernels for."""
    ops: dict[str, list[str]] = {}
    for name in sorted(torch._C._dispatch_get_all_op_names()):
        if not name.startswith(NAMESPACE + "::"):
            continue
        keys = [k for k in ("CPU", "CUDA", "Meta") if torch._C._dispatch_has_kernel_for_dispatch_key(name, k)]
        ops[name.split("::", 1)[1]] = keys
    return ops


@torch.compiler.assume_constant_result  # fixed once the library is loaded: lets torch.compile trace the wrappers
def has_kernel(op: str, device_type: str) -> bool:
    """Whether `bridgedfast::op` has a compiled kernel for `device_type` ('cpu' or 'cuda')."""
    if _C is None:
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"{NAMESPACE}::{op}", device_type.upper())


@functools.cache
def warn_fallback(op: str, device_type: str) -> None:
    """Warns once per (op, device) that the pure-PyTorch reference runs instead of a kernel."""
    why = f"extension not built ({EXTENSION_ERROR})" if _C is None else f"no {device_type} kernel compiled"
    warnings.warn(f"bridgedfast.{op}: {why}; using the pure-PyTorch reference (slow)", RuntimeWarning, stacklevel=3)


def release_cached_outputs() -> int:
    """Frees the CPU output blocks the compiled ops keep for reuse; returns the bytes freed."""
    return 0 if _C is None else int(_C.release_cached_outputs())


def set_thread_openmp_threads(threads: int) -> int | None:
    """Sets how many OpenMP threads the calling thread's kernels use, for this thread only (the
    OpenMP runtime keeps one team size per thread; torch's and the other threads' are left
    alone); returns the previous value, or None without the extension."""
    if _C is None:
        return None
    torch.get_num_threads()  # torch sets a thread's team size on its first parallel call: let it happen first
    return int(_C.set_thread_openmp_threads(int(threads)))
