"""Devices and precisions: what `device="auto"`, `dtype="auto"` and `amp="auto"` mean, in one place.

- `resolve_device`: 'auto' = CUDA when a GPU is visible, else the CPU.
- `resolve_dtype`: the precision a model runs inference in; 'auto' = fp16 on CUDA, fp32 on CPU.
- `resolve_training_dtype`: the precision frozen models and autocast use while training;
  'auto' = `half_dtype` on CUDA (bf16 where the GPU has it, else fp16), fp32 on CPU.
- `resolve_amp`: the autocast dtype of a training loop, None for no autocast ('none', or 'auto' on CPU).
"""
from __future__ import annotations

import torch

from .options import STR, Kind, spec

__all__ = ["DTYPES", "AMP_MODES", "DEVICE", "INFERENCE_DTYPE", "TRAINING_DTYPE", "half_dtype", "resolve_amp",
           "resolve_device", "resolve_dtype", "resolve_training_dtype"]

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
AMP_MODES = ("auto", "bf16", "fp16", "none")


def _check_device(value: str, name: str) -> None:
    try:
        resolve_device(value)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _device_value(value: object) -> str | torch.device:
    if not isinstance(value, (str, torch.device)):
        raise TypeError(value)
    return value


DEVICE_KIND = Kind("device", "a device name (auto, cpu, cuda[:N]) or a torch.device", _device_value, str, "DEVICE")

# The options every step that runs a model shares (see bridgedfast.options).
DEVICE = spec("auto", DEVICE_KIND, "auto, cpu or cuda[:N]", check=_check_device, keyed=False)
INFERENCE_DTYPE = spec("auto", STR, "model precision: auto = fp16 on CUDA, fp32 on CPU", choices=("auto", *DTYPES))
TRAINING_DTYPE = spec("auto", STR, "precision of the frozen models and autocast: auto = bf16 on GPU (fp16 without "
                      "bf16), fp32 on CPU", choices=("auto", *DTYPES))


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' = cuda when a GPU is visible, else cpu. Asking for cuda without a GPU is an error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {device!r}: use auto, cpu or cuda[:N]") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but no CUDA GPU is visible")
    return dev


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """'auto' = fp16 on CUDA, fp32 on CPU; otherwise one of fp32/fp16/bf16 or a torch dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}: use one of auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def half_dtype() -> torch.dtype:
    """The half precision to train in on this GPU: bf16 where supported, else fp16 (with loss scaling)."""
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def resolve_training_dtype(dtype: str | torch.dtype, device: torch.device,
                           preferred: torch.dtype | None = None) -> torch.dtype:
    """'auto': `preferred` when it is a half dtype (e.g. a given pipeline's own), else
    `half_dtype()` on CUDA and fp32 on CPU. Anything else as `resolve_dtype`; fp16 on the CPU is refused."""
    if dtype == "auto":
        if preferred in (torch.float16, torch.bfloat16):
            return preferred
        return half_dtype() if device.type == "cuda" else torch.float32
    resolved = resolve_dtype(dtype, device)
    if resolved == torch.float16 and device.type == "cpu":
        raise ValueError("dtype 'fp16' is not supported on CPU: use fp32 or bf16")
    return resolved


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `amp` (auto|bf16|fp16|none) on `device`; None = no autocast."""
    if amp not in AMP_MODES:
        raise ValueError(f"unknown amp {amp!r}: use one of {', '.join(AMP_MODES)}")
    if amp == "none" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "auto":
        return half_dtype()
    return DTYPES[amp]
