"""Image store, mixed real/synthetic sampler and loader.

`pack` a folder of class sub-folders into an `ImageStore`; append generated images with an
`ImageStoreWriter`; feed training with a `MixedLoader` (store -> gather -> fused augment).
"""
from __future__ import annotations

from .format import StoreCorruptError, StoreError, StoreVersionError
from .loader import MixedLoader
from .pack import pack
from .sampler import MixedSampler, batch_seed
from .store import ImageStore, ImageStoreWriter

__all__ = [
    "ImageStore",
    "ImageStoreWriter",
    "MixedLoader",
    "MixedSampler",
    "StoreCorruptError",
    "StoreError",
    "StoreVersionError",
    "batch_seed",
    "pack",
]
