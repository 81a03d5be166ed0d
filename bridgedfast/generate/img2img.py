"""img2img's start: the scheduler's shortened timestep list for a strength, and each image's init
latents, computed as diffusers' `StableDiffusionImg2ImgPipeline` computes them.

Stock order, per image with its own generator: the init image is preprocessed by the pipeline's
`VaeImageProcessor`, encoded by the VAE, and its latent is *sampled* from the VAE's posterior
(the first draw from the image's generator), scaled by the VAE's scaling factor and noised to the
first kept timestep with noise of the latents' shape (the second draw); the stochastic
schedulers keep drawing from the same generator during denoising.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

__all__ = ["check_strength", "img2img_timesteps", "img2img_latents"]


def check_strength(strength: float, steps: int) -> None:
    """Stock img2img denoises int(steps * strength) steps: at least one is needed."""
    if int(steps * strength) < 1:
        raise ValueError(f"strength {strength} with {steps} steps leaves no denoising step (img2img runs "
                         f"int(steps * strength) steps): raise strength or steps")


def img2img_timesteps(scheduler: Any, steps: int, strength: float, device: torch.device) -> torch.Tensor:
    """Sets the scheduler's timesteps for `steps` and returns the last int(steps * strength) of
    them (times the scheduler's order), with the scheduler's begin index set where it has one."""
    scheduler.set_timesteps(steps, device=device)
    init_timestep = min(int(steps * strength), steps)
    t_start = max(steps - init_timestep, 0)
    timesteps = scheduler.timesteps[t_start * scheduler.order :]
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(t_start * scheduler.order)
    return timesteps


@torch.inference_mode()
def img2img_latents(pipe: Any, scheduler: Any, images: Sequence[Any], generators: list[torch.Generator],
                    timestep: torch.Tensor, *, device: torch.device, dtype: torch.dtype, encode_chunk: int) -> torch.Tensor:
    """The noised init latents [N, C, h, w] of `images` (PIL, already height x width), image k
    drawing from `generators[k]`: first its VAE posterior sample, then its noise."""
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
    from diffusers.utils.torch_utils import randn_tensor

    pixels = pipe.image_processor.preprocess(list(images)).to(device=device, dtype=dtype)
    params = torch.cat([pipe.vae.encode(pixels[s : s + encode_chunk]).latent_dist.parameters
                        for s in range(0, len(images), encode_chunk)])
    latents = torch.cat([DiagonalGaussianDistribution(params[k : k + 1]).sample(generator=g)
                         for k, g in enumerate(generators)])
    latents = pipe.vae.config.scaling_factor * latents
    noise = randn_tensor(latents.shape, generator=list(generators), device=device, dtype=dtype)
    return scheduler.add_noise(latents, noise, timestep[:1].repeat(latents.shape[0]))
