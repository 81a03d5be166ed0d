"""VAE latents of the real images, encoded once and cached on disk.

The cache is a folder per (model fingerprint, resolution, VAE dtype, preprocessing version)
holding safetensors shards; each shard stores the posterior `mean` and `std` of its entries and
their keys (image content hash + orientation) in its metadata. A changed image has a new key,
so only it is re-encoded; a changed model or resolution uses another folder. Shards are written
atomically as encoding proceeds, so an interrupted encoding resumes where it stopped.

Both mean and std are kept so that every training step draws `mean + std * eps` exactly as
stock diffusers' `latent_dist.sample()` does (the loss stays the stock one); this doubles the
cache size, which is small next to the images (2 x 4 x 64 x 64 values per image at 512 px).
"""
from __future__ import annotations

import json
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..files import atomic_write
from .images import ImageSource, preprocess

PREPROCESS_VERSION = 1
SHARD_SIZE = 256


@dataclass
class LatentStats:
    encoded: int   # entries run through the VAE encoder in this call
    reused: int    # entries read from the cache
    folder: Path


def cache_folder(root: Path, fingerprint: str, resolution: int, dtype: torch.dtype) -> Path:
    dtype_name = str(dtype).removeprefix("torch.")
    return Path(root) / f"{fingerprint}-{resolution}px-{dtype_name}-v{PREPROCESS_VERSION}"


def _read_shards(folder: Path, wanted: set[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    from safetensors import safe_open

    found: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for shard in sorted(folder.glob("shard-*.safetensors")):
        try:
            with safe_open(str(shard), framework="pt") as f:
                keys = json.loads(f.metadata()["keys"])
                rows = [r for r, k in enumerate(keys) if k in wanted and k not in found]
                if not rows:
                    continue
                mean, std = f.get_tensor("mean"), f.get_tensor("std")
            if mean.ndim < 1 or std.shape != mean.shape or mean.shape[0] != len(keys):
                raise ValueError(f"it holds {len(keys)} keys but mean {tuple(mean.shape)} and std {tuple(std.shape)}")
        except Exception as exc:  # a damaged shard is only a cache miss
            warnings.warn(f"ignoring unreadable latent cache shard {shard}: {exc}", stacklevel=2)
            continue
        for r in rows:
            found[keys[r]] = (mean[r], std[r])
    return found


def _write_shard(folder: Path, keys: list[str], mean: torch.Tensor, std: torch.Tensor) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    with atomic_write(folder / f"shard-{uuid.uuid4().hex[:12]}.safetensors", durable=False) as tmp:
        save_file({"mean": mean.contiguous(), "std": std.contiguous()}, str(tmp), metadata={"keys": json.dumps(keys)})


@torch.no_grad()
def encode_latents(
    vae: torch.nn.Module,
    source: ImageSource,
    content_keys: list[str],
    *,
    resolution: int,
    flips: bool,
    folder: Path,
    batch_size: int,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, LatentStats]:
    """Posterior mean and std [N*O, C, h, w] on the VAE's device and dtype, entry i*O + o being
    image i (content key `content_keys[i]`) in orientation o (O = 2 with horizontal flips, else 1). Unscaled: multiply samples by
    `vae.config.scaling_factor` before use."""
    orientations = 2 if flips else 1
    keys = [f"{content}:{o}" for content in content_keys for o in range(orientations)]
    cached = _read_shards(folder, set(keys)) if folder.is_dir() else {}
    missing = [e for e, k in enumerate(keys) if k not in cached]
    missing_images = sorted({e // orientations for e in missing})

    device, dtype = next(vae.parameters()).device, next(vae.parameters()).dtype
    new: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    pending_keys: list[str] = []
    pending_mean: list[torch.Tensor] = []
    pending_std: list[torch.Tensor] = []

    def flush() -> None:
        if pending_keys:
            _write_shard(folder, list(pending_keys), torch.cat(pending_mean).cpu(), torch.cat(pending_std).cpu())
            pending_keys.clear(), pending_mean.clear(), pending_std.clear()

    per_batch = max(1, batch_size // orientations)
    bar = tqdm(total=len(missing_images) * orientations, desc="encoding latents", unit="img", disable=not progress or not missing)
    for start in range(0, len(missing_images), per_batch):
        chunk = missing_images[start : start + per_batch]
        pixels, chunk_keys = [], []
        for i in chunk:
            x = preprocess(source.image(i), resolution)
            for o in range(orientations):
                pixels.append(x.flip(-1) if o else x)
                chunk_keys.append(keys[i * orientations + o])
        batch = torch.stack(pixels).to(device=device, dtype=dtype)
        dist = vae.encode(batch).latent_dist
        mean, std = dist.mean, dist.std
        for k, m, s in zip(chunk_keys, mean, std):
            new[k] = (m, s)
        pending_keys += chunk_keys
        pending_mean.append(mean)
        pending_std.append(std)
        if len(pending_keys) >= SHARD_SIZE:
            flush()
        bar.update(len(chunk_keys))
    flush()
    bar.close()

    first = cached[keys[0]] if keys[0] in cached else new[keys[0]]
    mean_all = torch.empty((len(keys), *first[0].shape), dtype=first[0].dtype, device=device)
    std_all = torch.empty_like(mean_all)
    for e, k in enumerate(keys):
        m, s = cached[k] if k in cached else new[k]
        mean_all[e].copy_(m)
        std_all[e].copy_(s)
    return mean_all, std_all, LatentStats(encoded=len(missing), reused=len(keys) - len(missing), folder=folder)
