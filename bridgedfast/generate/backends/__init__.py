"""How the UNet (and the VAE decoder) run: `eager` (PyTorch as loaded), `compile`
(torch.compile, static shapes, CUDA graphs on GPU) or `tensorrt` (ONNX export checked with
onnxruntime, then a TensorRT fp16 engine cached on disk)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .eager import EagerDecoder, EagerUNet

BACKEND_NAMES = ("eager", "compile", "tensorrt")
# torch.compile modes `--compile-mode` accepts (the first one that suits the device is the default: compiled.py).
COMPILE_MODES = ("reduce-overhead", "default", "max-autotune", "max-autotune-no-cudagraphs")


def check_backend(name: str, device: torch.device) -> None:
    """Fails early (before any model loading) for an unknown or unusable backend."""
    if name not in BACKEND_NAMES:
        raise ValueError(f"unknown backend {name!r}: use one of {', '.join(BACKEND_NAMES)}")
    if name == "tensorrt":
        from ...optional import require

        require("tensorrt", "the tensorrt generation backend")
        require("onnx", "exporting the UNet for TensorRT")
        require("onnxruntime", "checking the UNet's ONNX export before the TensorRT build")
        if device.type != "cuda":
            raise ValueError(f"the tensorrt backend needs a CUDA device, got {device}")


def make_backend(name: str, pipe: Any, *, device: torch.device, fingerprint: str, cache_dir: Path,
                 compile_mode: str | None = None) -> tuple[Any, Any]:
    """(unet_runner, decoder) for `name`. Runners share one interface:
    `runner.prepare(max_batch, latent_height, latent_width, seq_len)`, then
    `runner(sample, timestep, encoder_hidden_states) -> noise prediction`; `runner.static_shapes`
    says whether every call must use the prepared batch (the engine pads the last batch)."""
    if name == "eager":
        return EagerUNet(pipe.unet), EagerDecoder(pipe.vae)
    if name == "compile":
        from .compiled import CompiledDecoder, CompiledUNet

        return CompiledUNet(pipe.unet, device, mode=compile_mode), CompiledDecoder(pipe.vae, device, mode=compile_mode)
    if name == "tensorrt":
        from .tensorrt import TensorRTUNet

        return TensorRTUNet(pipe.unet, device=device, fingerprint=fingerprint, cache_dir=cache_dir), EagerDecoder(pipe.vae)
    raise ValueError(f"unknown backend {name!r}: use one of {', '.join(BACKEND_NAMES)}")
