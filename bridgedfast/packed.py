"""PackedImages: a batch of variable-size uint8 RGB images in one flat buffer.

This is the one form images travel in between the store, the loader and the fused
augmentation op: `data` holds the images back to back (HWC, 3 channels, row-major) and
`index` says where each one is. `index` always stays on the CPU so parameters (crop boxes)
can be drawn from image sizes without touching the device.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass(frozen=True)
class PackedImages:
    data: torch.Tensor   # uint8 [total_bytes], CPU (optionally pinned) or CUDA
    index: torch.Tensor  # int64 [N, 3] on CPU: (byte offset, height, width) of image i

    def __post_init__(self) -> None:
        if self.data.dtype != torch.uint8 or self.data.dim() != 1:
            raise ValueError(f"PackedImages.data must be a 1-D uint8 tensor, got {self.data.dtype} {tuple(self.data.shape)}")
        if self.index.dtype != torch.int64 or self.index.dim() != 2 or self.index.shape[1] != 3:
            raise ValueError(f"PackedImages.index must be int64 [N, 3], got {self.index.dtype} {tuple(self.index.shape)}")
        if self.index.device.type != "cpu":
            raise ValueError("PackedImages.index must live on the CPU")

    def __len__(self) -> int:
        return self.index.shape[0]

    @property
    def device(self) -> torch.device:
        return self.data.device

    @property
    def heights(self) -> torch.Tensor:
        return self.index[:, 1]

    @property
    def widths(self) -> torch.Tensor:
        return self.index[:, 2]

    def image(self, i: int) -> torch.Tensor:
        """Image i as a uint8 [H, W, 3] view into `data`."""
        offset, h, w = (int(v) for v in self.index[i])
        return self.data[offset : offset + h * w * 3].view(h, w, 3)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "PackedImages":
        return PackedImages(self.data.to(device, non_blocking=non_blocking), self.index)

    def pin_memory(self) -> "PackedImages":
        return PackedImages(self.data.pin_memory(), self.index)

    @classmethod
    def from_images(cls, images: Sequence[torch.Tensor]) -> "PackedImages":
        """Packs uint8 [H, W, 3] tensors (all on one device) into one buffer."""
        if len(images) == 0:
            raise ValueError("PackedImages.from_images: no images given")
        index = []
        offset = 0
        for i, img in enumerate(images):
            if not isinstance(img, torch.Tensor) or img.dtype != torch.uint8 or img.dim() != 3 or img.shape[2] != 3:
                raise ValueError(
                    f"image {i} must be a uint8 [H, W, 3] tensor, got "
                    f"{getattr(img, 'dtype', type(img))} {tuple(getattr(img, 'shape', ()))}"
                )
            h, w = img.shape[0], img.shape[1]
            index.append((offset, h, w))
            offset += h * w * 3
        data = torch.cat([img.reshape(-1) for img in images])
        return cls(data, torch.tensor(index, dtype=torch.int64))
