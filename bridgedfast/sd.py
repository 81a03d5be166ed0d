"""Loading Stable Diffusion models the way diffusers does, with clear errors, and fingerprinting them.

Shared by generation and style inversion: a model argument may be a ready diffusers
pipeline, a local folder saved with `save_pretrained`, or a hub id (needs network access or
the local Hugging Face cache).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

__all__ = ["load_pipeline", "model_fingerprint"]


def load_pipeline(model: Any, *, torch_dtype: torch.dtype | None = None):
    """A `StableDiffusionPipeline` from a pipeline object, a local folder or a hub id."""
    from diffusers import DiffusionPipeline, StableDiffusionPipeline

    if isinstance(model, DiffusionPipeline):
        for name in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
            if getattr(model, name, None) is None:
                raise ValueError(f"the given pipeline has no {name}: a Stable Diffusion pipeline is needed")
        return model
    if not isinstance(model, (str, Path)):
        raise ValueError(f"model must be a diffusers pipeline, a folder or a hub id, got {type(model).__name__}")
    path = Path(model).expanduser()
    kwargs: dict[str, Any] = {"safety_checker": None, "requires_safety_checker": False}
    if torch_dtype is not None:
        kwargs["dtype"] = torch_dtype
    if path.exists():
        if not (path / "model_index.json").is_file():
            raise FileNotFoundError(f"{path} is not a diffusers Stable Diffusion folder (no model_index.json in it)")
        return StableDiffusionPipeline.from_pretrained(str(path), **kwargs)
    looks_like_path = str(model).startswith((".", "/", "~")) or str(model).count("/") != 1
    if looks_like_path:
        raise FileNotFoundError(f"model folder {str(model)!r} does not exist")
    try:
        return StableDiffusionPipeline.from_pretrained(str(model), **kwargs)
    except Exception as exc:  # network errors, missing repos, gated models...
        raise FileNotFoundError(
            f"could not load {str(model)!r} as a local folder or from the Hugging Face hub ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); pass a local Stable Diffusion folder instead"
        ) from exc


_VOLATILE_CONFIG_KEYS = {"dtype", "torch_dtype", "transformers_version", "use_cache", "output_attentions"}


def model_fingerprint(pipe) -> str:
    """A short stable hash of a pipeline's component configs and sampled weights (in their
    loaded dtype): keys caches (latents, engines) and detects a changed model against an
    existing output."""
    h = hashlib.sha256()
    for name in ("unet", "vae", "text_encoder"):
        module = getattr(pipe, name)
        h.update(name.encode())
        config = module.config.to_dict() if hasattr(module.config, "to_dict") else dict(module.config)
        # Loading details (dtype, paths, library versions) are not part of the model.
        config = {k: v for k, v in config.items() if not k.startswith("_") and k not in _VOLATILE_CONFIG_KEYS}
        h.update(json.dumps(config, sort_keys=True, default=str).encode())
        for key, tensor in sorted(module.state_dict().items()):
            h.update(key.encode())
            h.update(str(tuple(tensor.shape)).encode())
            # Cheap content summary: a few strided samples (so the hash depends on the dtype too).
            flat = tensor.detach().reshape(-1)
            sample = flat[:: max(1, flat.numel() // 64)].float().cpu()
            h.update(sample.numpy().tobytes())
    tok = pipe.tokenizer
    h.update(str(len(tok)).encode())
    return h.hexdigest()[:16]
