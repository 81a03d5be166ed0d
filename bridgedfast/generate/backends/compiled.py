"""torch.compile of the UNet and the VAE decode with static shapes; on CUDA, mode
"max-autotune" (Triton autotuning plus CUDA graphs, which remove the per-kernel launch cost
of the ~1000 small kernels of one UNet step)."""
from __future__ import annotations

from typing import Any

import torch


def _default_mode(device: torch.device) -> str:
    return "max-autotune" if device.type == "cuda" else "default"


def _tune_inductor(device: torch.device) -> None:
    if device.type != "cuda":
        return
    import torch._inductor.config as inductor_config

    # The settings diffusers recommends for UNets: 1x1 convs as matmuls, finer tile search.
    inductor_config.conv_1x1_as_mm = True
    inductor_config.coordinate_descent_tuning = True
    inductor_config.coordinate_descent_check_all_directions = True
    inductor_config.epilogue_fusion = False


class CompiledUNet:
    static_shapes = True

    def __init__(self, unet: Any, device: torch.device, mode: str | None = None):
        _tune_inductor(device)
        self.unet = unet
        self.cuda_graphs = device.type == "cuda" and (mode or _default_mode(device)) in ("max-autotune", "reduce-overhead")
        self.fn = torch.compile(unet, mode=mode or _default_mode(device), fullgraph=True, dynamic=False)

    def prepare(self, max_batch: int, latent_height: int, latent_width: int, seq_len: int) -> None:
        pass

    def __call__(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                 timestep_cond: torch.Tensor | None = None) -> torch.Tensor:
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        out = self.fn(sample, timestep, encoder_hidden_states=encoder_hidden_states, timestep_cond=timestep_cond,
                      return_dict=False)[0]
        # A CUDA-graph output is overwritten by the next replay: hand out a copy.
        return out.clone() if self.cuda_graphs else out


class CompiledDecoder:
    static_shapes = True

    def __init__(self, vae: Any, device: torch.device, mode: str | None = None):
        self.vae = vae
        # One decode per batch against 25-50 UNet calls: kernel fusion matters, launch overhead
        # and autotuning time do not, so the default mode unless one is asked for.
        mode = mode or "default"
        self.cuda_graphs = device.type == "cuda" and mode in ("max-autotune", "reduce-overhead")
        self.fn = torch.compile(lambda z: vae.decode(z, return_dict=False)[0], mode=mode, dynamic=False)

    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        out = self.fn(latents)
        return out.clone() if self.cuda_graphs else out
