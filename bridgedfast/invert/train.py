"""The style-inversion trainer: textual inversion of ONE new token from all real training images.

The loss is the stock latent-diffusion noise-prediction loss of diffusers' textual-inversion
example; what makes it fast is what it does not do:
- the VAE never runs during training: the images' latent posteriors are encoded once and
  cached on disk (`latents.py`);
- only one [D] vector is trained: the frozen embedding matrix is never written (the token's
  row is substituted in the embedding lookup), so there is no dense [V, D] gradient, no
  optimizer state for V rows and no restore copy after each step;
- frozen UNet / text encoder run in bf16 (fp16 + grad scaling where bf16 is missing) on GPU,
  SDPA attention, optional gradient checkpointing and torch.compile.

Every random choice of step k (images, flips, templates, timesteps, posterior sample, noise)
is drawn from generators seeded with (seed, k), so a resumed run replays exactly the draws an
uninterrupted one makes; `state_tensors`/`state_scalars` are what a checkpoint (`checkpoint.py`)
keeps: the embedding, AdamW's moments and the grad scaler.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ..devices import resolve_training_dtype
from ..seeds import seeded_generator
from .images import ImageSource
from .latents import cache_folder, encode_latents
from .text import DEFAULT_TEMPLATES, StyleTextEncoder, format_prompts, init_embedding

__all__ = ["StepDraws", "StyleTrainer", "step_draws", "DEFAULT_TEMPLATES", "format_prompts", "auto_dtype"]

auto_dtype = resolve_training_dtype  # the name benchmarks/bench_invert.py imports


# ----------------------------------------------------------------------------- random draws
@functools.lru_cache(maxsize=4)
def _epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    return torch.randperm(n, generator=seeded_generator(seed, "epoch", epoch))


@dataclass
class StepDraws:
    images: torch.Tensor      # int64 [B]: image indices (each epoch a fresh permutation)
    flips: torch.Tensor       # bool [B]
    templates: torch.Tensor   # int64 [B]
    timesteps: torch.Tensor   # int64 [B]
    latent_eps: torch.Tensor  # float32 [B, C, h, w]: posterior sample = mean + std * eps
    noise: torch.Tensor       # float32 [B, C, h, w]


def step_draws(
    seed: int,
    step: int,
    *,
    num_images: int,
    batch_size: int,
    flip_p: float,
    num_templates: int,
    num_timesteps: int,
    latent_shape: Sequence[int],
) -> StepDraws:
    """The random choices of training step `step`, a pure function of (seed, step). Drawn on the
    CPU so that CPU and GPU runs (and the benchmark's plain loop) see the same ones."""
    positions = range(step * batch_size, (step + 1) * batch_size)
    images = torch.tensor([int(_epoch_order(seed, p // num_images, num_images)[p % num_images]) for p in positions])
    g = seeded_generator(seed, "step", step)
    flips = torch.rand(batch_size, generator=g) < flip_p
    templates = torch.randint(num_templates, (batch_size,), generator=g)
    timesteps = torch.randint(num_timesteps, (batch_size,), generator=g)
    latent_eps = torch.randn((batch_size, *latent_shape), generator=g)
    noise = torch.randn((batch_size, *latent_shape), generator=g)
    return StepDraws(images, flips, templates, timesteps, latent_eps, noise)


# ----------------------------------------------------------------------------- trainer
class StyleTrainer:
    """Owns the training state of one style token on a pipeline; a context manager that leaves
    the pipeline's weights, flags and modes as it found them (it may move them to `device`).

    `train_step(k)` runs step k and returns its (detached) loss; `vector` is the embedding."""

    def __init__(
        self,
        pipe: Any,
        source: ImageSource,
        *,
        token: str,
        init_word: str,
        lr: float,
        batch_size: int,
        resolution: int,
        seed: int,
        templates: Sequence[str],
        flip_p: float,
        weight_decay: float,
        device: torch.device,
        dtype: torch.dtype,
        cache_root: Path,
        fingerprint: str,
        content_keys: list[str],
        encode_batch_size: int = 16,
        gradient_checkpointing: bool = False,
        compile: bool = False,
        progress: bool = True,
    ) -> None:
        from diffusers import DDPMScheduler

        self.pipe, self.source, self.device, self.dtype = pipe, source, device, dtype
        self.seed, self.batch_size, self.flip_p, self.resolution = seed, batch_size, flip_p, resolution
        self.templates = list(templates)
        self._saved_flags = [(p, p.requires_grad) for m in (pipe.unet, pipe.vae, pipe.text_encoder) for p in m.parameters()]
        for m in (pipe.unet, pipe.vae, pipe.text_encoder):
            m.requires_grad_(False)
        self._had_checkpointing = bool(getattr(pipe.unet, "is_gradient_checkpointing", False))
        try:
            self.vector = torch.nn.Parameter(init_embedding(pipe, init_word).to(device))
            self.text = StyleTextEncoder(pipe, token, self.vector)
            self.prompt_ids = self.text.tokenize(format_prompts(self.templates, source.classes, token)).to(device)
            self.labels = torch.tensor([source.label(i) for i in range(len(source))], device=device)

            vae_device = next(pipe.vae.parameters()).device
            pipe.vae.to(device)
            try:
                self.latent_mean, self.latent_std, self.latent_stats = encode_latents(
                    pipe.vae,
                    source,
                    content_keys,
                    resolution=resolution,
                    flips=flip_p > 0,
                    folder=cache_folder(cache_root, fingerprint, resolution, next(pipe.vae.parameters()).dtype),
                    batch_size=encode_batch_size,
                    progress=progress,
                )
            finally:
                pipe.vae.to(vae_device)  # training never needs it on the device
            self.orientations = 2 if flip_p > 0 else 1
            self.scaling_factor = float(pipe.vae.config.scaling_factor)
            self.shift_factor = float(getattr(pipe.vae.config, "shift_factor", None) or 0.0)

            pipe.unet.to(device)
            pipe.text_encoder.to(device)
            if gradient_checkpointing:
                pipe.unet.enable_gradient_checkpointing()
            self.unet_fn = torch.compile(pipe.unet) if compile else pipe.unet
            self.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
            self.prediction_type = self.scheduler.config.prediction_type
            if self.prediction_type not in ("epsilon", "v_prediction"):
                raise ValueError(f"unsupported scheduler prediction_type {self.prediction_type!r}: epsilon or v_prediction")
            self.latent_shape = tuple(self.latent_mean.shape[1:])
            self.optimizer = torch.optim.AdamW([self.vector], lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay)
            self.base_lr = lr
            self.scaler = torch.amp.GradScaler(device.type) if (dtype == torch.float16 and device.type == "cuda") else None
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "StyleTrainer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for p, flag in self._saved_flags:
            p.requires_grad_(flag)
        if not self._had_checkpointing and getattr(self.pipe.unet, "is_gradient_checkpointing", False):
            self.pipe.unet.disable_gradient_checkpointing()

    def draws(self, step: int) -> StepDraws:
        return step_draws(
            self.seed,
            step,
            num_images=len(self.source),
            batch_size=self.batch_size,
            flip_p=self.flip_p,
            num_templates=len(self.templates),
            num_timesteps=self.scheduler.config.num_train_timesteps,
            latent_shape=self.latent_shape,
        )

    def loss(self, d: StepDraws) -> torch.Tensor:
        """The stock textual-inversion loss for these draws (differentiable w.r.t. `vector`)."""
        dev = self.device
        images = d.images.to(dev)
        entries = images * self.orientations + (d.flips.to(dev).long() if self.orientations == 2 else 0)
        eps = d.latent_eps.to(dev, non_blocking=True)
        noise = d.noise.to(dev, non_blocking=True)
        timesteps = d.timesteps.to(dev)
        latents = self.latent_mean[entries].float() + self.latent_std[entries].float() * eps
        latents = (latents - self.shift_factor) * self.scaling_factor
        noisy = self.scheduler.add_noise(latents, noise, timesteps)
        target = noise if self.prediction_type == "epsilon" else self.scheduler.get_velocity(latents, noise, timesteps)
        ids = self.prompt_ids[d.templates.to(dev) * len(self.source.classes) + self.labels[images]]
        unet_dtype = self.pipe.unet.dtype
        with torch.autocast(dev.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            hidden = self.text(ids)
            pred = self.unet_fn(noisy.to(unet_dtype), timesteps, hidden.to(unet_dtype)).sample
        return F.mse_loss(pred.float(), target.float(), reduction="mean")

    def set_lr(self, factor: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.base_lr * factor

    def train_step(self, step: int) -> torch.Tensor:
        loss = self.loss(self.draws(step))
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    # -- checkpoint state: tensors (safetensors) + scalars (JSON)
    def state_tensors(self) -> dict[str, torch.Tensor]:
        tensors = {"embedding": self.vector.detach().float().cpu()}
        state = self.optimizer.state.get(self.vector)
        if state:
            tensors["exp_avg"] = state["exp_avg"].float().cpu()
            tensors["exp_avg_sq"] = state["exp_avg_sq"].float().cpu()
        return tensors

    def state_scalars(self) -> dict[str, Any]:
        state = self.optimizer.state.get(self.vector)
        return {
            "adam_step": float(state["step"]) if state else 0.0,
            "grad_scaler": self.scaler.state_dict() if self.scaler is not None else None,
        }

    def load_state(self, tensors: dict[str, torch.Tensor], scalars: dict[str, Any]) -> None:
        with torch.no_grad():
            self.vector.copy_(tensors["embedding"].to(self.vector.device))
        if "exp_avg" in tensors:
            template = self.optimizer.state_dict()
            template["state"] = {
                0: {
                    "step": torch.tensor(float(scalars["adam_step"])),
                    "exp_avg": tensors["exp_avg"].to(self.vector.device),
                    "exp_avg_sq": tensors["exp_avg_sq"].to(self.vector.device),
                }
            }
            self.optimizer.load_state_dict(template)
        if self.scaler is not None and scalars.get("grad_scaler"):
            self.scaler.load_state_dict(scalars["grad_scaler"])
