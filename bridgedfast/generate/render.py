"""Rendering one grid batch: initial latents from each image's own seed, the denoising loop with
classifier-free guidance in one UNet call per step, the VAE decode, and uint8 pixels.

Image (c, i) is computed exactly as a stock `StableDiffusionPipeline` computes one image with
`generator=torch.Generator("cpu").manual_seed(seed_for(seed, c, i))`: the same latents draw
(a batch-1 draw per generator), the same scheduler steps, the same guidance and VAE decode.
With init images (img2img), as a stock `StableDiffusionImg2ImgPipeline` does (see img2img.py).
Only the batching differs, and batching never changes which image gets which seed.
"""
from __future__ import annotations

import inspect
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..seeds import seed_for
from .img2img import img2img_latents, img2img_timesteps
from .init import InitImages, init_image
from .plan import Item
from .prompts import PromptPlan

__all__ = ["PreparedRun", "Renderer", "CPU_AUTO_BATCH", "DECODE_CHUNK", "fit_batch"]

CPU_AUTO_BATCH = 8
DECODE_CHUNK = 8  # VAE decode memory grows fastest with batch; 8 images already fill a GPU


@dataclass
class PreparedRun:
    """Everything one `generate` call fixes before the first batch."""

    plan: PromptPlan
    cond: list[list[torch.Tensor]]     # per class, per prompt variant: [1, seq, dim] on the device
    uncond: torch.Tensor | None        # [1, seq, dim], None without CFG
    cfg: bool
    guidance_scale: float
    steps: int
    height: int
    width: int
    seed: int
    store_size: tuple[int, int] | None
    negative_prompt: str | None
    timestep_cond_dim: int | None
    init: InitImages | None = None     # img2img's starting images
    strength: float | None = None

    @property
    def seq_len(self) -> int:
        return self.cond[0][0].shape[1]

    def prompt(self, c: int, i: int) -> str:
        return self.plan.prompt(c, i)

    def embedding(self, c: int, i: int) -> torch.Tensor:
        return self.cond[c][self.plan.variant(c, i)]


def fit_batch(peak1: int, peak2: int, available: float, max_batch: int, try_batch: Callable[[int], Any]) -> int:
    """The auto batch size from measured peaks: with peak(b) = fixed + b * per_image fitted to
    the peak bytes at batch 1 and 2, the largest b <= max_batch whose estimate fits in 85% of
    `available` bytes (at least 1); then `try_batch(b)` runs it, halving b on out-of-memory."""
    per_image = max(peak2 - peak1, 1)
    fixed = max(peak1 - per_image, 0)
    b = int(max(1, min(max_batch, (0.85 * available - fixed) // per_image)))
    while b > 1:
        try:
            try_batch(b)
            break
        except torch.OutOfMemoryError:
            b //= 2
    return b


class Renderer:
    """Turns (class, image) items into uint8 images with the pipeline's VAE and text encoder, the
    chosen scheduler and a UNet runner (eager, compiled or TensorRT)."""

    def __init__(self, pipe: Any, scheduler: Any, unet_runner: Any, decoder: Any, *, device: torch.device,
                 dtype: torch.dtype, max_auto_batch: int) -> None:
        self.pipe, self.scheduler, self.unet_runner, self.decoder = pipe, scheduler, unet_runner, decoder
        self.device, self.dtype, self.max_auto_batch = device, dtype, max_auto_batch
        self.step_kwargs = set(inspect.signature(scheduler.step).parameters)
        self.chunk: int | None = None  # sub-batch size after an out-of-memory back-off

    @property
    def vae_scale(self) -> int:
        return int(getattr(self.pipe, "vae_scale_factor", 8))

    def images(self, items: Sequence[Item], run: PreparedRun, batch: int) -> tuple[np.ndarray, int, float]:
        """uint8 [N, H, W, 3] images of one grid batch (computed in sub-batches after an
        out-of-memory back-off), the number of UNet calls and the seconds spent denoising."""
        while True:
            chunk = min(self.chunk or batch, batch)
            try:
                parts, calls, secs = [], 0, 0.0
                for s in range(0, len(items), chunk):
                    img, c, t = self.denoise_decode(items[s : s + chunk], run, chunk)
                    parts.append(img)
                    calls += c
                    secs += t
                return np.concatenate(parts), calls, secs
            except torch.OutOfMemoryError:
                if chunk == 1:
                    raise
                self.chunk = chunk // 2
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                warnings.warn(f"out of GPU memory at batch {chunk}: continuing with sub-batches of {self.chunk}")

    def initial_latents(self, items: Sequence[Item], seed: int, height: int, width: int
                        ) -> tuple[torch.Tensor, list[torch.Generator]]:
        """The unscaled initial latents of `items` on the CPU (one batch-1 draw per image from its
        own generator, like diffusers' `randn_tensor` with a list of generators) and the
        generators, which stochastic schedulers keep drawing from."""
        gens = [torch.Generator("cpu").manual_seed(seed_for(seed, c, i)) for c, i in items]
        shape = (1, self.pipe.unet.config.in_channels, height // self.vae_scale, width // self.vae_scale)
        latents = torch.cat([torch.randn(shape, generator=g, dtype=self.dtype) for g in gens])
        return latents, gens

    def img2img_start(self, items: Sequence[Item], run: PreparedRun) -> tuple[torch.Tensor, list[torch.Generator], torch.Tensor]:
        """img2img: (noised init latents on the device, the generators, the timesteps to run);
        image (c, i) starts from init image `run.init.index(c, i)` prepared by `init_image`."""
        gens = [torch.Generator("cpu").manual_seed(seed_for(run.seed, c, i)) for c, i in items]
        images = [init_image(run.init.image(run.init.index(c, i)), run.height, run.width) for c, i in items]
        timesteps = img2img_timesteps(self.scheduler, run.steps, run.strength, self.device)
        chunk = DECODE_CHUNK if self.device.type == "cuda" else len(items)
        latents = img2img_latents(self.pipe, self.scheduler, images, gens, timesteps, device=self.device, dtype=self.dtype,
                                  encode_chunk=chunk)
        return latents, gens, timesteps

    @torch.inference_mode()
    def denoise_decode(self, items: Sequence[Item], run: PreparedRun, static_batch: int) -> tuple[np.ndarray, int, float]:
        n = len(items)
        if run.init is not None:
            latents, gens, timesteps = self.img2img_start(items, run)
        else:
            latents, gens = self.initial_latents(items, run.seed, run.height, run.width)
            timesteps = None
        cond = torch.cat([run.embedding(c, i) for c, i in items])
        pad = static_batch - n if self.unet_runner.static_shapes else 0
        if pad:
            # Static shapes (compiled graphs): fill the batch with throw-away copies and their own generators.
            latents = torch.cat([latents, latents[-1:].expand(pad, *latents.shape[1:])])
            cond = torch.cat([cond, cond[-1:].expand(pad, *cond.shape[1:])])
            gens = gens + [torch.Generator("cpu").manual_seed(0) for _ in range(pad)]
        t0 = time.perf_counter()
        latents, calls = self._denoise(latents, cond, gens, run, timesteps)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        secs = time.perf_counter() - t0
        latents = latents / self.pipe.vae.config.scaling_factor
        b = n + pad
        chunk = DECODE_CHUNK if self.device.type == "cuda" else b
        image = torch.cat([self.decoder(latents[s : s + chunk]) for s in range(0, b, chunk)])[:n]
        return self._to_uint8(image, run.store_size), calls, secs

    def _denoise(self, latents: torch.Tensor, cond: torch.Tensor, gens: list[torch.Generator], run: PreparedRun,
                 timesteps: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
        """The denoising loop; `timesteps`: img2img's (already set on the scheduler, latents
        already noised to the first of them), else text-to-image from the scheduler's full list."""
        b = latents.shape[0]
        sched = self.scheduler
        if timesteps is None:
            sched.set_timesteps(run.steps, device=self.device)
            timesteps = sched.timesteps
            latents = latents.to(self.device) * sched.init_noise_sigma
        ehs = torch.cat([run.uncond.expand(b, -1, -1), cond]) if run.cfg else cond
        extra: dict[str, Any] = {}
        if "eta" in self.step_kwargs:
            extra["eta"] = 0.0
        if "generator" in self.step_kwargs:
            extra["generator"] = gens
        tcond = None
        if run.timestep_cond_dim is not None:
            w = torch.tensor(run.guidance_scale - 1).repeat(b)
            tcond = self.pipe.get_guidance_scale_embedding(w, embedding_dim=run.timestep_cond_dim).to(self.device, latents.dtype)
        calls = 0
        for t in timesteps:
            x = torch.cat([latents] * 2) if run.cfg else latents
            x = sched.scale_model_input(x, t)
            noise = self.unet_runner(x, t, ehs, tcond) if tcond is not None else self.unet_runner(x, t, ehs)
            calls += 1
            if run.cfg:
                uncond, text = noise.chunk(2)
                noise = uncond + run.guidance_scale * (text - uncond)
            latents = sched.step(noise, t, latents, **extra, return_dict=False)[0]
        return latents, calls

    def _to_uint8(self, image: torch.Tensor, store_size: tuple[int, int] | None) -> np.ndarray:
        """[-1, 1] NCHW -> uint8 NHWC on the device (as diffusers' postprocess: x/2+0.5, clamp,
        x*255 rounded), optionally resized with antialiasing first; then to host memory."""
        x = (image.float() / 2 + 0.5).clamp(0, 1)
        if store_size is not None and tuple(x.shape[-2:]) != store_size:
            x = torch.nn.functional.interpolate(x, size=store_size, mode="bilinear", antialias=True,
                                                align_corners=False).clamp(0, 1)
        x = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()
        return x.cpu().numpy()

    def auto_batch_size(self, height: int, width: int, *, cfg: bool = True, seq_len: int = 77) -> int:
        """The largest batch (<= max_auto_batch) whose UNet step and VAE decode fit in GPU
        memory; CPU_AUTO_BATCH on CPU, where memory is rarely the limit."""
        if self.device.type != "cuda":
            return min(CPU_AUTO_BATCH, self.max_auto_batch)
        try:
            m1, m2 = self._peak(1, height, width, cfg, seq_len), self._peak(2, height, width, cfg, seq_len)
        except torch.OutOfMemoryError as exc:
            raise RuntimeError(f"not even one {height}x{width} image fits in GPU memory on {self.device}") from exc
        dev = self.device
        free, _ = torch.cuda.mem_get_info(dev)
        available = free + torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev)
        b = fit_batch(m1, m2, available, self.max_auto_batch, lambda n: self._peak(n, height, width, cfg, seq_len))
        torch.cuda.empty_cache()
        return b

    @torch.inference_mode()
    def _peak(self, b: int, height: int, width: int, cfg: bool, seq_len: int) -> int:
        """Peak GPU memory of one UNet step and one VAE decode at batch `b`."""
        dev = self.device
        lh, lw = height // self.vae_scale, width // self.vae_scale
        torch.cuda.synchronize(dev)
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        n = b * (2 if cfg else 1)
        x = torch.randn(n, self.pipe.unet.config.in_channels, lh, lw, device=dev, dtype=self.dtype)
        e = torch.randn(n, seq_len, self.pipe.unet.config.cross_attention_dim, device=dev, dtype=self.dtype)
        self.pipe.unet(x, torch.tensor(500, device=dev), encoder_hidden_states=e, return_dict=False)
        z = torch.randn(min(b, DECODE_CHUNK), self.pipe.vae.config.latent_channels, lh, lw, device=dev, dtype=self.dtype)
        self.pipe.vae.decode(z, return_dict=False)
        torch.cuda.synchronize(dev)
        return torch.cuda.max_memory_allocated(dev) - base
