"""The UNet and VAE decoder as loaded: exactly the calls stock diffusers makes."""
from __future__ import annotations

from typing import Any

import torch


class EagerUNet:
    static_shapes = False

    def __init__(self, unet: Any):
        self.unet = unet

    def prepare(self, max_batch: int, latent_height: int, latent_width: int, seq_len: int) -> None:
        pass

    def __call__(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                 timestep_cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states, timestep_cond=timestep_cond,
                         return_dict=False)[0]


class EagerDecoder:
    static_shapes = False

    def __init__(self, vae: Any):
        self.vae = vae

    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (already divided by the VAE scaling factor) -> images in [-1, 1], NCHW."""
        return self.vae.decode(latents, return_dict=False)[0]
