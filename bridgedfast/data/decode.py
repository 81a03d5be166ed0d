"""JPEG decoding for the loader: full or reduced size on the CPU, batched nvJPEG on CUDA.

* Full size (CPU): the extension's decode op (`bridgedfast.ops.decode_jpegs`, libjpeg-turbo), one
  GIL-free call per batch on the loader's threads; where the augment draws its crops first
  (`PlannedCrop`), only each image's crop is decoded (exactly the pixels of a whole decode), and
  in stores whose JPEGs carry a restart marker after every MCU (what `pack` and ImageStoreWriter
  write) only the MCUs around the crop are entropy-decoded. Without the op: torchvision's decode
  (`store.decode_jpeg`), one call per image on a thread pool.
* Reduced size (CPU, `MixedLoader(jpeg_decode="reduced")`): when the crop drawn for an image is
  at least s times the output size in both directions (s = 2, 4 or 8), libjpeg's DCT scaling
  decodes the image at 1/s of its size (Pillow's `draft`, which also releases the GIL while it
  decodes). libjpeg's reduced pixel j covers full-size pixels [j*s, (j+1)*s), so a box maps onto
  the reduced image exactly when its edges are multiples of s; each such crop box is therefore
  first rounded to the nearest multiple of s (`snap_boxes`: at most s/2 pixels per edge, under
  half an output pixel, a crop RandomResizedCrop could equally have drawn). The pixels then
  differ from full-size decoding + torchvision's resized_crop of the rounded box only by
  libjpeg's DCT-domain reduction (see `REDUCED_TOLERANCE`). The time saved is only the inverse
  DCT, upsampling and colour conversion: Huffman decoding, most of a photo's decode time, is the
  same at every scale, and at 224 px from 300-500 px images few crops are large enough.
* nvJPEG (CUDA, `jpeg_decode="nvjpeg"`, the default for a CUDA loader): the whole batch's JPEGs
  in one `torchvision.io.decode_jpeg(list, device="cuda")` call, written into the packed batch
  on the GPU.
"""
from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
import torch

from ..reference import decode_jpeg_scaled

__all__ = [
    "JPEG_DECODE_MODES",
    "REDUCED_TOLERANCE",
    "PlannedCrop",
    "dct_scales",
    "decode_jpeg_scaled",
    "decode_jpegs_cuda",
    "snap_boxes",
    "scaled_sizes",
]

JPEG_DECODE_MODES = ("auto", "full", "reduced", "nvjpeg")
SCALES = (8, 4, 2)  # what Pillow's draft (libjpeg's scale_denom) offers besides 1

# Reduced-size decoding against full-size decoding + torchvision's resized_crop of the same
# (rounded) box, on photo-like images (smooth gradients, textures with periods down to 2.5 px,
# edges, sensor noise; JPEG quality 90), per image in 0-255 levels: the mean absolute difference
# stays below `mean` and the 99th percentile of the per-pixel difference below `p99`. Measured:
# means of 0.9-1.8 on average and at most 3.6, 99th percentiles of 4-8 on average and at most 21,
# single pixels up to 48 in fine texture at 1/4, where libjpeg's DCT-domain reduction aliases
# what the antialiased resize would have smoothed. Without rounding the boxes onto the reduced
# grid the means triple (half a reduced pixel of misplacement). tests/test_decode.py checks both.
REDUCED_TOLERANCE = {"mean": 4.0, "p99": 24.0}


def dct_scales(box_heights: np.ndarray, box_widths: np.ndarray, out_height: int, out_width: int) -> np.ndarray:
    """The largest s in (1, 2, 4, 8) per box with box >= s * output in both directions (int64 [N])."""
    bh, bw = np.asarray(box_heights, np.int64), np.asarray(box_widths, np.int64)
    scales = np.ones(len(bh), dtype=np.int64)
    for s in reversed(SCALES):  # 2, 4, 8: each one that fits overrides the smaller
        scales[(bh >= s * out_height) & (bw >= s * out_width)] = s
    return scales


def scaled_sizes(heights: np.ndarray, widths: np.ndarray, scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The size libjpeg decodes an H x W image to at 1/s: (ceil(H/s), ceil(W/s))."""
    h, w, s = (np.asarray(v, np.int64) for v in (heights, widths, scales))
    return -(-h // s), -(-w // s)


def snap_boxes(boxes: np.ndarray, scales: np.ndarray, heights: np.ndarray, widths: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """Crop boxes (top, left, height, width) in full-size pixels, for images decoded at 1/s:
    each edge rounded to the nearest multiple of s (half up; at most s/2 pixels), kept inside
    the image and non-empty. Returns (the rounded boxes in full-size pixels, the same boxes in
    the reduced images, whose edges are the full-size ones divided by s exactly). heights and
    widths are the full sizes. A box reaching an image's bottom (right) edge where the height
    (width) is not a multiple of s ends with libjpeg's last, partial reduced row (column)."""
    b = np.asarray(boxes, np.int64)
    s = np.asarray(scales, np.int64)
    h, w = np.asarray(heights, np.int64), np.asarray(widths, np.int64)
    small_h, small_w = -(-h // s), -(-w // s)
    top, left = (2 * b[:, 0] + s) // (2 * s), (2 * b[:, 1] + s) // (2 * s)
    bottom, right = (2 * (b[:, 0] + b[:, 2]) + s) // (2 * s), (2 * (b[:, 1] + b[:, 3]) + s) // (2 * s)
    bottom = np.minimum(np.maximum(bottom, top + 1), small_h)
    right = np.minimum(np.maximum(right, left + 1), small_w)
    top, left = np.minimum(top, bottom - 1), np.minimum(left, right - 1)
    reduced = np.stack([top, left, bottom - top, right - left], 1)
    full = np.stack([top * s, left * s, np.minimum(bottom * s, h) - top * s, np.minimum(right * s, w) - left * s], 1)
    return full, reduced


_NVJPEG_FAILED: list[str] = []


def decode_jpegs_cuda(datas: Sequence[torch.Tensor], device: torch.device) -> list[torch.Tensor] | None:
    """JPEG bytes (1-D uint8 CPU tensors) -> uint8 [H, W, 3] views on `device`, decoded by
    nvJPEG in one batched call; None where torchvision has no nvJPEG or the batch does not
    decode there (the caller then decodes on the CPU, which also names a damaged image)."""
    if _NVJPEG_FAILED:
        return None
    try:
        from torchvision.io import ImageReadMode, decode_jpeg

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision >= 0.29 points at torchcodec on every call
            images = decode_jpeg(list(datas), mode=ImageReadMode.RGB, device=device)
    except (ImportError, RuntimeError, TypeError) as exc:
        message = str(exc)
        missing = any(m in message.lower() for m in ("not compiled", "not available", "not supported", "no kernel"))
        if missing or isinstance(exc, (ImportError, TypeError)):
            # Missing everywhere, not just for this batch: stop trying.
            _NVJPEG_FAILED.append(message)
            warnings.warn(f"bridgedfast MixedLoader: nvJPEG decoding is not available ({message.splitlines()[0]}); "
                          "decoding JPEGs on the CPU", RuntimeWarning, stacklevel=2)
        return None
    return [img.permute(1, 2, 0) for img in images]


class PlannedCrop:
    """An augment's random crop drawn before the images are decoded, so that each JPEG can be
    decoded at the smallest size its crop allows. Works with augments shaped like
    `bridgedfast.augment.TrainAugment` (`draw(heights, widths, generator) -> (boxes, flip)`,
    `output_size`, `mean`, `std`, `antialias`, `out_dtype`, `channels_last`): calling it with the
    drawn boxes computes exactly what `augment(images, generator)` computes."""

    _NEEDED = ("draw", "output_size", "mean", "std", "antialias", "out_dtype", "channels_last")

    def __init__(self, augment: Any) -> None:
        self.augment = augment

    @classmethod
    def of(cls, augment: Any) -> "PlannedCrop | None":
        if all(hasattr(augment, name) for name in cls._NEEDED) and callable(augment.draw):
            return cls(augment)
        return None

    @property
    def output_size(self) -> tuple[int, int]:
        return tuple(self.augment.output_size)  # type: ignore[return-value]

    def draw(self, heights: np.ndarray, widths: np.ndarray, generator: torch.Generator) -> tuple[np.ndarray, torch.Tensor]:
        boxes, flip = self.augment.draw(torch.from_numpy(np.asarray(heights, np.int64)),
                                        torch.from_numpy(np.asarray(widths, np.int64)), generator)
        return boxes.numpy(), flip

    def __call__(self, packed, boxes: np.ndarray, flip: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        from .. import ops

        a = self.augment
        return ops.resized_crop(packed, torch.from_numpy(np.ascontiguousarray(boxes)), a.output_size, flip=flip,
                                mean=a.mean, std=a.std, antialias=a.antialias, out_dtype=a.out_dtype,
                                channels_last=a.channels_last, out=out)
