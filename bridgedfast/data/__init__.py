"""Image store, mixed real/synthetic sampler and loader.

`pack` a folder of class sub-folders into an `ImageStore`; append generated images with an
`ImageStoreWriter`; feed training with a `MixedLoader` (store -> gather -> fused augment);
`split_store` and `few_shot_split` take seeded subsets.
"""
from __future__ import annotations

from .folders import scan_class_folders
from .format import StoreCorruptError, StoreError, StoreVersionError
from .loader import MixedLoader
from .pack import pack
from .sampler import MixedSampler, batch_seed
from .store import ImageStore, ImageStoreWriter
from .subsets import few_shot_split, is_store, split_store

__all__ = [
    "ImageStore",
    "ImageStoreWriter",
    "MixedLoader",
    "MixedSampler",
    "StoreCorruptError",
    "StoreError",
    "StoreVersionError",
    "batch_seed",
    "few_shot_split",
    "is_store",
    "pack",
    "scan_class_folders",
    "split_store",
]
