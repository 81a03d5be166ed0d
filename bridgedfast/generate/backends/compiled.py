"""torch.compile of the UNet and the VAE decode with static shapes.

The UNet's mode on CUDA defaults to "reduce-overhead": CUDA graphs, which remove the launch cost
of the ~1000 small kernels of one UNet step, without Triton's autotuning. "max-autotune" adds the
autotuning (and diffusers' recommended coordinate-descent tile search): a few percent faster
steps for many minutes of compiling an SD-1.5 UNet, so it is opt-in (`--compile-mode`). On the
CPU the default is "default" (CUDA graphs do not exist there). The VAE decoder runs once per
batch, so it is compiled in mode "default" (kernel fusion, no CUDA graphs) unless a mode is
asked for."""
from __future__ import annotations

from typing import Any

import torch


AUTOTUNE_SETTINGS = {"conv_1x1_as_mm": True, "coordinate_descent_tuning": True,
                     "coordinate_descent_check_all_directions": True, "epilogue_fusion": False}


def default_mode(device: torch.device) -> str:
    return "reduce-overhead" if device.type == "cuda" else "default"


def _uses_cuda_graphs(device: torch.device, mode: str) -> bool:
    return device.type == "cuda" and mode in ("max-autotune", "reduce-overhead")


def _tune_inductor(device: torch.device, mode: str) -> None:
    """Autotuning settings, only where autotuning was asked for (they multiply compile time)."""
    if device.type != "cuda" or not mode.startswith("max-autotune"):
        return
    import torch._inductor.config as inductor_config

    # The settings diffusers recommends for UNets: 1x1 convs as matmuls, finer tile search. Torch
    # releases rename or retire inductor settings, so each is set only where this torch has it.
    for name, value in AUTOTUNE_SETTINGS.items():
        try:
            getattr(inductor_config, name)
        except AttributeError:
            continue
        setattr(inductor_config, name, value)


class CompiledUNet:
    static_shapes = True

    def __init__(self, unet: Any, device: torch.device, mode: str | None = None):
        self.mode = mode or default_mode(device)
        _tune_inductor(device, self.mode)
        self.unet = unet
        self.cuda_graphs = _uses_cuda_graphs(device, self.mode)
        self.fn = torch.compile(unet, mode=self.mode, fullgraph=True, dynamic=False)

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
        self.mode = mode or "default"
        self.cuda_graphs = _uses_cuda_graphs(device, self.mode)
        self.fn = torch.compile(lambda z: vae.decode(z, return_dict=False)[0], mode=self.mode, dynamic=False)

    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        out = self.fn(latents)
        return out.clone() if self.cuda_graphs else out
