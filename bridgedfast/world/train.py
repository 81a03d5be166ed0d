"""Training loops of the world's models: the VAE (reconstruction + a small KL term), the UNet
(epsilon prediction under SD's noise schedule, 10% empty captions for classifier-free guidance,
EMA weights), and the letters-only classifier. Every random draw comes from a seeded generator."""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm


def to_unit(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 [N,H,W,3] -> float [N,3,H,W] in [-1, 1] (what the SD VAE takes)."""
    return images_u8.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def _lr(step: int, total: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def train_vae(vae, images: torch.Tensor, *, steps: int, batch: int, lr: float, seed: int, progress: bool):
    """Trains `vae` in place on uint8 `images`; sets its `scaling_factor` to 1/std of the latents."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    vae.train()
    bar = tqdm(range(steps), desc="world: VAE", disable=not progress)
    for step in bar:
        _set_lr(opt, _lr(step, steps, lr, max(1, steps // 20)))
        x = to_unit(images[torch.randint(len(images), (batch,), generator=g)])
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=g)
        recon = vae.decode(z).sample
        kl = 0.5 * (post.mean.pow(2) + post.var - 1.0 - post.logvar).mean()
        loss = F.mse_loss(recon, x) + 0.5 * F.l1_loss(recon, x) + 1e-4 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    vae.eval()
    with torch.no_grad():
        sample = to_unit(images[torch.randperm(len(images), generator=g)[:512]])
        std = float(vae.encode(sample).latent_dist.mean.std())
    vae.register_to_config(scaling_factor=1.0 / std)
    return vae


@torch.no_grad()
def encode_latents(vae, images: torch.Tensor, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) of the VAE posterior of every image, unscaled."""
    means, stds = [], []
    for i in range(0, len(images), batch):
        post = vae.encode(to_unit(images[i:i + batch])).latent_dist
        means.append(post.mean)
        stds.append(post.std)
    return torch.cat(means), torch.cat(stds)


@torch.no_grad()
def encode_captions(text_encoder, tokenizer, captions: list[str]) -> torch.Tensor:
    """Last hidden states [len(captions), 77, width], as the SD pipeline computes them."""
    ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    return torch.cat([text_encoder(ids[i:i + 64])[0] for i in range(0, len(ids), 64)])


def _ema_update(ema, model, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.lerp_(p, 1.0 - decay)


def train_unet(unet, latents: tuple[torch.Tensor, torch.Tensor], scaling: float, text: torch.Tensor,
               caption_ids: torch.Tensor, empty_id: int, *, steps: int, batch: int, lr: float, seed: int,
               progress: bool, drop: float = 0.1, ema_decay: float = 0.999):
    """Epsilon-prediction training; returns the EMA copy of `unet` (what gets saved)."""
    from .models import training_scheduler

    sched = training_scheduler()
    alphas = sched.alphas_cumprod
    g = torch.Generator().manual_seed(seed)
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=1e-2)
    unet.train()
    mean, std = latents
    bar = tqdm(range(steps), desc="world: UNet", disable=not progress)
    for step in bar:
        _set_lr(opt, _lr(step, steps, lr, max(1, steps // 20)))
        idx = torch.randint(len(mean), (batch,), generator=g)
        z0 = (mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=g)) * scaling
        t = torch.randint(len(alphas), (batch,), generator=g)
        noise = torch.randn(z0.shape, generator=g)
        a = alphas[t].view(-1, 1, 1, 1)
        zt = a.sqrt() * z0 + (1 - a).sqrt() * noise
        ids = torch.where(torch.rand(batch, generator=g) < drop, torch.full_like(idx, empty_id), caption_ids[idx])
        pred = unet(zt, t, encoder_hidden_states=text[ids]).sample
        loss = F.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        _ema_update(ema, unet, min(ema_decay, (1 + step) / (10 + step)))
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    return ema


def train_classifier(model, images: torch.Tensor, labels: torch.Tensor, mean, std, *, steps: int, batch: int,
                     lr: float, seed: int, progress: bool):
    """Supervised training on uint8 `images` with random shifts; returns the model in eval mode."""
    g = torch.Generator().manual_seed(seed)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-2)
    model.train()
    bar = tqdm(range(steps), desc="world: classifier", disable=not progress)
    for step in bar:
        _set_lr(opt, _lr(step, steps, lr, max(1, steps // 20)))
        idx = torch.randint(len(images), (batch,), generator=g)
        x = (images[idx].permute(0, 3, 1, 2).float() / 255 - m) / s
        dy, dx = (int(v) for v in torch.randint(-2, 3, (2,), generator=g))
        x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
        loss = F.cross_entropy(model(x), labels[idx], label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    return model.eval()
