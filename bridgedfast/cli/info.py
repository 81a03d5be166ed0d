"""`bridgedfast info`: versions, compiled kernels, visible GPUs and registered ops."""
from __future__ import annotations

import argparse
import json
import platform

HELP = "show versions, whether CUDA kernels are compiled, visible GPUs and the registered ops"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the same facts as one JSON object")


def collect() -> dict:
    import torch
    import torchvision

    from .. import __version__, _ext, optional

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return {
        "bridgedfast": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "torch_cuda": torch.version.cuda,
        "extension_loaded": _ext.extension_loaded(),
        "extension_error": None if _ext.EXTENSION_ERROR is None else str(_ext.EXTENSION_ERROR),
        "cuda_kernels_compiled": _ext.cuda_kernels_compiled(),
        "jpeg_decode_op": _ext.has_kernel("decode_jpegs", "cpu"),
        "gpus": gpus,
        "backends": {name: optional.probe(name) for name in ("xformers", "tensorrt", "onnxruntime")},
        "ops": _ext.registered_ops(),
    }


def run(args: argparse.Namespace) -> int:
    from ..optional import DEPENDENCIES

    facts = collect()
    if args.json:
        print(json.dumps(facts, indent=2))
        return 0
    print(f"bridgedfast      {facts['bridgedfast']}")
    print(f"python           {facts['python']}")
    print(f"torch            {facts['torch']} (CUDA {facts['torch_cuda'] or 'none: CPU-only build'})")
    print(f"torchvision      {facts['torchvision']}")
    if facts["extension_loaded"]:
        print(f"extension        loaded; CUDA kernels compiled: {'yes' if facts['cuda_kernels_compiled'] else 'no'}; "
              f"libjpeg-turbo decode op: {'yes' if facts['jpeg_decode_op'] else 'no (install libjpeg-turbo headers and rebuild)'}")
    else:
        print(f"extension        NOT loaded ({facts['extension_error']}); pure-PyTorch fallbacks in use")
    print(f"GPU              {', '.join(facts['gpus']) if facts['gpus'] else 'none visible'}")
    print("optional backends:")
    for name, version in facts["backends"].items():
        state = version if version else f"not installed ({DEPENDENCIES[name].install})"
        print(f"  {name:<14} {state}")
    print("ops (torch.ops.bridgedfast):")
    for op, keys in facts["ops"].items():
        print(f"  {op:<20} {', '.join(keys) or 'no kernels'}")
    return 0
