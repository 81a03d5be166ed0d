"""img2img's starting images: image i of class c starts from real image (i mod n_c) of class c,
in the order of its image store (or of the folder, read as `pack` reads it), prepared by
`init_image` (resize so it covers height x width, aspect kept, then crop the centre)."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DEFAULT_STRENGTH", "InitImages", "init_image", "open_init_images"]

DEFAULT_STRENGTH = 0.75  # diffusers' StableDiffusionImg2ImgPipeline default


def init_image(image_uint8_hwc: Any, height: int, width: int) -> "PIL.Image.Image":  # noqa: F821
    """The init image img2img starts from, as a `height` x `width` RGB PIL image: the image is
    resized (Lanczos, aspect ratio kept) to the smallest size that covers height x width, then
    its centre is cropped. An image that already has that size is returned unchanged. Give this
    image to a stock `StableDiffusionImg2ImgPipeline(image=...)` to reproduce a generated image."""
    import torch
    from PIL import Image

    if isinstance(image_uint8_hwc, torch.Tensor):
        image_uint8_hwc = image_uint8_hwc.cpu().numpy()
    a = np.asarray(image_uint8_hwc)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3 or min(a.shape[:2]) < 1:
        raise ValueError(f"init_image needs a uint8 [H, W, 3] image, got {a.dtype} {tuple(a.shape)}")
    for name, side in (("height", height), ("width", width)):
        if isinstance(side, bool) or not isinstance(side, (int, np.integer)) or side < 1:
            raise ValueError(f"init_image: {name} must be a positive integer, got {side!r}")
    h, w = a.shape[:2]
    img = Image.fromarray(np.ascontiguousarray(a), "RGB")
    scale = max(height / h, width / w)
    size = (max(width, round(w * scale)), max(height, round(h * scale)))
    if size != (w, h):
        img = img.resize(size, Image.Resampling.LANCZOS)
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    if (left, top) != (0, 0) or size != (width, height):
        img = img.crop((left, top, left + width, top + height))
    return img


class InitImages:
    """The real images img2img starts from: an image store or a folder of class sub-folders.
    `index(c, i)` is the source's index of image i of generation class c (classes matched by
    exact name); `image(index)` its uint8 HWC pixels; `fingerprint` changes with the contents."""

    def __init__(self, source: str | Path, names: list[str]) -> None:
        from ..data.subsets import is_store

        path = Path(source).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"init images {str(source)!r} do not exist")
        self.path = str(path.resolve())
        self._store, self._files = None, None
        if is_store(path):
            from ..data import ImageStore

            self._store = ImageStore(path)
            classes, labels = list(self._store.classes), self._store.labels.numpy()
        else:
            from ..data.folders import scan_class_folders

            found = scan_class_folders(path, "init images folder")
            classes = found.classes
            self._files = [p for p, _ in found.images]
            self._root = path
            labels = np.array([lab for _, lab in found.images], dtype=np.int64)
        present = {name: k for k, name in enumerate(classes)}
        members = [np.flatnonzero(labels == present[n]) if n in present else np.empty(0, np.int64) for n in names]
        missing = [n for n, m in zip(names, members) if len(m) == 0]
        if missing:
            shown = ", ".join(repr(n) for n in missing[:5]) + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else "")
            raise ValueError(f"init images {str(source)!r} hold no image of classes {shown} (classes are matched "
                             "by exact name)")
        self.members = [m.tolist() for m in members]
        self.fingerprint = self._fingerprint(classes, labels)

    def index(self, class_index: int, image_index: int) -> int:
        own = self.members[class_index]
        return own[image_index % len(own)]

    def image(self, index: int) -> np.ndarray:
        if self._store is not None:
            return self._store.image(index).numpy()
        from PIL import Image

        path = self._files[index]
        try:
            with Image.open(path) as img:
                return np.asarray(img.convert("RGB"))
        except Exception as exc:  # Pillow raises several kinds for a broken file
            raise ValueError(f"init image {str(path)!r} cannot be read: {exc}") from None

    def _fingerprint(self, classes: list[str], labels: np.ndarray) -> str:
        """sha256 of what decides the init images: the class names, the labels and each image's
        bytes (a store's data checksums; a folder's file names and contents)."""
        h = hashlib.sha256(repr(classes).encode())
        h.update(labels.astype(np.int64).tobytes())
        if self._store is not None:
            r = self._store.records
            for column in ("data_crc", "height", "width", "encoding"):
                h.update(np.ascontiguousarray(r[column]).tobytes())
        else:
            for f in self._files:
                h.update(str(f.relative_to(self._root)).encode() + b"\0")
                h.update(hashlib.sha256(f.read_bytes()).digest())
        return h.hexdigest()


def open_init_images(source: str | Path | None, names: list[str]) -> InitImages | None:
    return None if source is None else InitImages(source, names)
