"""Filtering synthetic images: score each image (CLIP image-prompt similarity, or a classifier
trained on the real images), keep each class's best-scored fraction in a new store.

`filter_store(synthetic, out, keep=0.8, by="clip", clip_model=PATH)`; `bridgedfast filter`."""
from __future__ import annotations

from .api import FilterReport, filter_store, kept_indices
from .config import SCORERS, FilterConfig

__all__ = ["FilterConfig", "FilterReport", "SCORERS", "filter_store", "kept_indices"]
