"""bridgedfast: synthetic images for transfer learning, fast.

Subpackages are imported lazily so `import bridgedfast` stays cheap:
`bridgedfast.ops`, `bridgedfast.augment`, `bridgedfast.data`, `bridgedfast.generate`,
`bridgedfast.invert`, `bridgedfast.transfer`, `bridgedfast.experiment`; each step's options are
declared in its configuration (`bridgedfast.options`). CONTRIBUTING.md maps the modules.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = {"ops", "reference", "augment", "data", "generate", "invert", "transfer", "experiment", "testing",
               "optional", "options"}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'bridgedfast' has no attribute {name!r}")
