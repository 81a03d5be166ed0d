"""Optional dependencies (xformers, TensorRT, ONNX, onnxruntime), each probed once. Asking for a
missing one raises `MissingDependency` with the command that installs it; everything that does
not need it keeps working."""
from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from types import ModuleType

__all__ = ["OptionalDependency", "DEPENDENCIES", "MissingDependency", "probe", "is_available", "require"]


@dataclass(frozen=True)
class OptionalDependency:
    name: str
    module: str
    install: str


DEPENDENCIES = {
    "xformers": OptionalDependency("xformers", "xformers", "pip install xformers  (a build matching your torch and CUDA)"),
    "tensorrt": OptionalDependency("tensorrt", "tensorrt",
                                   "pip install 'bridgedfast[tensorrt]'  (NVIDIA TensorRT >= 10 on a CUDA machine)"),
    "onnxruntime": OptionalDependency("onnxruntime", "onnxruntime", "pip install 'bridgedfast[onnx]'"),
    "onnx": OptionalDependency("onnx", "onnx", "pip install 'bridgedfast[onnx]'"),
}


class MissingDependency(ImportError):
    """An optional dependency was asked for but is not installed (or does not import)."""


@functools.cache
def probe(name: str) -> str | None:
    """The dependency's version string, or None when it is not importable. Probed once."""
    dependency = DEPENDENCIES[name]
    try:
        mod = importlib.import_module(dependency.module)
    except Exception:  # an installed-but-broken package counts as missing
        return None
    return str(getattr(mod, "__version__", "unknown"))


def is_available(name: str) -> bool:
    return probe(name) is not None


def require(name: str, purpose: str = "") -> ModuleType:
    """Imports and returns the dependency's module, or raises MissingDependency with install advice."""
    dependency = DEPENDENCIES[name]
    if probe(name) is None:
        what = f" for {purpose}" if purpose else ""
        raise MissingDependency(f"{name} is needed{what} but is not installed; install it with: {dependency.install}")
    return importlib.import_module(dependency.module)
