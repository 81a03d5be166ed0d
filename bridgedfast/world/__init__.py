"""The miniature world: an offline replica of the paper's setting made of real trained models.

- `corpus`: characters rendered from matplotlib's bundled fonts, with captions ("the internet");
- `tokenizer`, `models`, `train`, `build`: a small text-to-image Stable Diffusion trained on that
  corpus ("Stable Diffusion 1.5") and a timm classifier trained on its letters only
  ("ImageNet-pretrained"), built by `build_world` / `bridgedfast world build`;
- `WEIGHTS`: the committed result of the full recipe (`WEIGHTS / "sd"`, a diffusers folder;
  `WEIGHTS / "classifier"`, timm weights as safetensors and a JSON card).

The target task is scikit-learn's handwritten digits (`bridgedfast.testing.digits_dataset`).
"""
from __future__ import annotations

from pathlib import Path

WEIGHTS = Path(__file__).resolve().parent / "weights"

__all__ = ["WEIGHTS", "build_world"]


def build_world(*args, **kwargs):
    from .build import build_world as _build

    return _build(*args, **kwargs)
