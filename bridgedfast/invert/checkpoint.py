"""Style-inversion checkpoints: one safetensors file beside the output (`style.ckpt.safetensors`)
holding the embedding, AdamW's moments and the loss history, with the step, the configuration
and the scalar state as JSON in its header (no pickle), replaced atomically.

A checkpoint resumes only the configuration that wrote it (`checkpoint_config`, frozen: stored
checkpoints are compared against it)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch

from ..files import atomic_write
from .config import InvertConfig

if TYPE_CHECKING:
    from .train import StyleTrainer

__all__ = ["CHECKPOINT_VERSION", "checkpoint_path", "checkpoint_config", "config_differences", "save_checkpoint",
           "read_checkpoint"]

CHECKPOINT_VERSION = 1


def checkpoint_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}.ckpt.safetensors")


def checkpoint_config(cfg: InvertConfig, templates: Sequence[str], *, fingerprint: str, data_hash: str) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: the model, the data and every option the
    embedding depends on (the run-time ones may change between sessions)."""
    config = {
        "model": fingerprint, "data": data_hash, "token": cfg.token, "init_word": cfg.init_word, "lr": cfg.effective_lr,
        "batch_size": cfg.batch_size, "resolution": cfg.resolution, "seed": cfg.seed, "templates": list(templates),
        "flip_p": cfg.flip_p, "weight_decay": cfg.weight_decay, "lr_schedule": cfg.lr_schedule,
        "warmup_steps": cfg.warmup_steps,
    }
    if cfg.lr_schedule != "constant":
        config["steps"] = cfg.steps  # the schedule's shape depends on the total; a constant one may be extended
    config.update(InvertConfig.new_keyed_values(cfg.values()))
    return config


def config_differences(saved: dict, current: dict) -> list[str]:
    return [f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in sorted(set(saved) | set(current))
            if saved.get(k) != current.get(k)]


def save_checkpoint(path: Path, step: int, config: dict, trainer: StyleTrainer, losses: list[float]) -> None:
    from safetensors.torch import save_file

    tensors = trainer.state_tensors()
    tensors["losses"] = torch.tensor(losses, dtype=torch.float32)
    meta = {"version": CHECKPOINT_VERSION, "step": step, "config": config, **trainer.state_scalars()}
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata={"bridgedfast_checkpoint": json.dumps(meta)})


def read_checkpoint(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(header metadata, tensors); ValueError for a file that is not a style checkpoint of this version."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})["bridgedfast_checkpoint"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, KeyError, json.JSONDecodeError) as exc:
        raise ValueError(f"checkpoint {str(path)!r} is not a bridgedfast style checkpoint ({exc}); "
                         "delete it to start over") from None
    if meta.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"checkpoint {str(path)!r} has version {meta.get('version')}, expected {CHECKPOINT_VERSION}")
    return meta, tensors
