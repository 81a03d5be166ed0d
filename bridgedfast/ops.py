"""Typed wrappers of the compiled ops (`torch.ops.bridgedfast.*`), their fake kernels for
torch.compile, and the fallback to the pure-PyTorch references in `bridgedfast.reference`."""
from __future__ import annotations

import torch

from . import _ext
from .reference import mix_images_reference

__all__ = ["mix_images"]


def _use_kernel(op: str, device: torch.device) -> bool:
    if _ext.has_kernel(op, device.type):
        return True
    _ext.warn_fallback(op, device.type)
    return False


def mix_images(x: torch.Tensor, lam: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Mix each image with its partner, the batch reversed (timm's convention), in one pass.

    x: float [N,C,H,W] (float32/16/bf16, NCHW or channels_last); lam: float32 [N];
    boxes: int32 [N,4] (y0, y1, x0, x1), half-open, empty for plain Mixup ->
    out[i] = inside box ? x[N-1-i] : lam[i] * x[i] + (1 - lam[i]) * x[N-1-i], same layout as x.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"mix_images: x must be a [N, C, H, W] tensor, got {getattr(x, 'shape', type(x))}")
    lam = torch.as_tensor(lam, dtype=torch.float32).to(x.device, non_blocking=True)
    boxes = torch.as_tensor(boxes, dtype=torch.int32).to(x.device, non_blocking=True)
    if _use_kernel("mix_images", x.device):
        return torch.ops.bridgedfast.mix_images.default(x, lam, boxes)
    return mix_images_reference(x, lam, boxes)


if _ext.extension_loaded():

    @torch.library.register_fake("bridgedfast::mix_images")
    def _mix_images_fake(x: torch.Tensor, lam: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        torch._check(x.dim() == 4, lambda: f"mix_images: x must be 4D, got {x.dim()}D")
        torch._check(lam.shape == (x.shape[0],), lambda: "mix_images: lam must be [N]")
        torch._check(boxes.shape == (x.shape[0], 4), lambda: "mix_images: boxes must be [N, 4]")
        channels_last = x.shape[1] > 1 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        return torch.empty_like(x, memory_format=fmt)
