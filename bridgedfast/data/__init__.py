"""Image store, mixed real/synthetic sampler and loader.

`pack` a folder of class sub-folders into an `ImageStore`; append generated images with an
`ImageStoreWriter`; feed training with a `MixedLoader` (store -> gather -> fused augment).
"""
from __future__ import annotations

from .format import StoreCorruptError, StoreError, StoreVersionError
from .store import ImageStore, ImageStoreWriter

__all__ = ["ImageStore", "ImageStoreWriter", "StoreError", "StoreCorruptError", "StoreVersionError"]
