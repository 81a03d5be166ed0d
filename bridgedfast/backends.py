"""Optional heavy backends, each probed once. A missing one raises a message saying how to
install it; everything else keeps working."""
from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Backend:
    name: str
    module: str
    install: str


BACKENDS = {
    "xformers": Backend("xformers", "xformers", "pip install xformers  (a build matching your torch and CUDA)"),
    "tensorrt": Backend("tensorrt", "tensorrt", "pip install 'bridgedfast[tensorrt]'  (NVIDIA TensorRT >= 10 on a CUDA machine)"),
    "onnxruntime": Backend("onnxruntime", "onnxruntime", "pip install 'bridgedfast[onnx]'"),
    "onnx": Backend("onnx", "onnx", "pip install 'bridgedfast[onnx]'"),
}


class BackendUnavailable(ImportError):
    """An optional backend was asked for but is not installed (or does not import)."""


@functools.cache
def probe(name: str) -> str | None:
    """The backend's version string, or None when it is not importable. Probed once."""
    backend = BACKENDS[name]
    try:
        mod = importlib.import_module(backend.module)
    except Exception:  # an installed-but-broken backend counts as missing
        return None
    return str(getattr(mod, "__version__", "unknown"))


def is_available(name: str) -> bool:
    return probe(name) is not None


def require(name: str, purpose: str = ""):
    """Imports and returns the backend module, or raises BackendUnavailable with install advice."""
    backend = BACKENDS[name]
    if probe(name) is None:
        what = f" for {purpose}" if purpose else ""
        raise BackendUnavailable(f"{name} is needed{what} but is not installed; install it with: {backend.install}")
    return importlib.import_module(backend.module)
