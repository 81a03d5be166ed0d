"""The real images style inversion learns from, behind one small interface.

A source is either a folder of class sub-folders of images (read as `pack` reads it: class =
sub-folder name, sorted, images found recursively, as torchvision's ImageFolder) or a
`bridgedfast.data.ImageStore`. Both give `len()`, `.classes`, `label(i)`, `image(i)` (uint8 HWC
RGB tensor), `key(i)` (a content hash that keys the latent cache) and `name(i)` (for error messages).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Protocol

import torch


class ImageSource(Protocol):
    classes: list[str]

    def __len__(self) -> int: ...
    def label(self, i: int) -> int: ...
    def image(self, i: int) -> torch.Tensor: ...
    def key(self, i: int) -> str: ...
    def name(self, i: int) -> str: ...


class FolderImages:
    """A folder of class sub-folders of image files (`bridgedfast.data.scan_class_folders`), read with PIL."""

    def __init__(self, root: str | Path) -> None:
        from ..data.folders import IMAGE_EXTENSIONS, scan_class_folders

        self.root = Path(root)
        found = scan_class_folders(self.root, "data folder")
        self.classes = found.classes
        self.files = [path for path, _ in found.images]
        self._labels = [label for _, label in found.images]
        if found.not_images:  # as `pack` refuses them: a stray file is more likely a mistake than noise
            path = found.not_images[0]
            raise ValueError(f"{path}: not an image file (extension {path.suffix or 'none'!r}); remove it, or pack the "
                             f"folder with `bridgedfast pack --skip-bad` and invert the store "
                             f"({len(found.not_images)} such file(s))")
        if not self.files:
            loose = [f for f in self.root.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS]
            hint = " (images must be inside class sub-folders, not directly in it)" if loose else ""
            raise ValueError(f"no images found in data folder {str(self.root)!r}{hint}")

    def __len__(self) -> int:
        return len(self.files)

    def label(self, i: int) -> int:
        return self._labels[i]

    def image(self, i: int) -> torch.Tensor:
        import numpy as np
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(self.files[i]) as im:
                return torch.from_numpy(np.asarray(im.convert("RGB")).copy())
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
            raise ValueError(f"cannot read image {str(self.files[i])!r}: {type(exc).__name__}: {exc}") from None

    def key(self, i: int) -> str:
        return hashlib.sha1(self.files[i].read_bytes()).hexdigest()

    def name(self, i: int) -> str:
        return str(self.files[i])


class StoreImages:
    """An ImageStore, through its public API."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.classes = list(store.classes)
        self._labels = [int(v) for v in store.labels.tolist()]
        if len(store) == 0:
            raise ValueError(f"image store {str(getattr(store, 'path', store))!r} holds no images")

    def __len__(self) -> int:
        return len(self.store)

    def label(self, i: int) -> int:
        return self._labels[i]

    def image(self, i: int) -> torch.Tensor:
        return self.store.image(i)

    def key(self, i: int) -> str:
        # The stored bytes (raw pixels or JPEG) identify the image without decoding it.
        encoded = getattr(self.store, "encoded", None)
        data = encoded(i) if encoded is not None else self.store.image(i)
        h = hashlib.sha1(data.contiguous().numpy().tobytes())
        if encoded is None:
            h.update(str(tuple(data.shape)).encode())
        return h.hexdigest()

    def name(self, i: int) -> str:
        return f"image {i} of {getattr(self.store, 'path', 'the image store')}"


def open_images(data: Any) -> ImageSource:
    """An ImageSource from an ImageStore, an ImageStore folder or a folder of class sub-folders."""
    from ..data import ImageStore

    if isinstance(data, ImageStore):
        return StoreImages(data)
    if isinstance(data, (FolderImages, StoreImages)):
        return data
    if not isinstance(data, (str, Path)):
        raise ValueError(f"data must be an ImageStore or a folder path, got {type(data).__name__}")
    path = Path(data).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"data {str(data)!r} does not exist")
    has_subfolders = path.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir())
    store_error: Exception | None = None
    if path.is_dir() and not has_subfolders:
        try:
            store = ImageStore(path)
        except (ValueError, OSError) as exc:
            store_error = exc
        else:
            return StoreImages(store)
    try:
        return FolderImages(path)
    except ValueError as exc:
        if store_error is None:
            raise
        raise ValueError(
            f"data {str(path)!r} is neither a folder of class sub-folders of images nor a readable image store "
            f"({type(store_error).__name__}: {store_error})"
        ) from None


def preprocess(image: torch.Tensor, resolution: int) -> torch.Tensor:
    """uint8 [H, W, 3] -> float32 [3, R, R] in [-1, 1]: shorter side resized to R (bicubic,
    antialiased, as diffusers' textual-inversion example resizes with PIL bicubic), center crop."""
    from torchvision.transforms.v2 import functional as TF
    from torchvision.transforms import InterpolationMode

    if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected a uint8 [H, W, 3] image, got {image.dtype} {tuple(image.shape)}")
    chw = image.permute(2, 0, 1)
    chw = TF.resize(chw, [resolution], interpolation=InterpolationMode.BICUBIC, antialias=True)
    chw = TF.center_crop(chw, [resolution, resolution])
    return chw.float().div_(127.5).sub_(1.0)
