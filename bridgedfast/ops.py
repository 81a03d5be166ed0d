"""Typed wrappers of the compiled ops (`torch.ops.bridgedfast.*`), their fake kernels for
torch.compile, and the fallback to the pure-PyTorch references in `bridgedfast.reference`."""
from __future__ import annotations

import torch

from . import _ext
from .reference import gather_images_reference, mix_images_reference

__all__ = ["mix_images", "gather_images"]


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


def _check_gather_items(sources: list[torch.Tensor], items: torch.Tensor, out: torch.Tensor) -> None:
    """The kernels' bounds checks, repeated for the pure-PyTorch fallback."""
    if items.dtype != torch.int64 or items.dim() != 2 or items.shape[1] != 4 or items.device.type != "cpu":
        raise ValueError(f"gather_images: items must be a CPU int64 [N, 4] tensor, got {items.dtype} {tuple(items.shape)} on {items.device}")
    sizes = torch.tensor([s.numel() for s in sources] + [0], dtype=torch.int64)
    src, start, n, dst = items.unbind(1)
    bad = (src < 0) | (src >= len(sources)) | (start < 0) | (n < 0) | (dst < 0) | (dst + n > out.numel())
    bad |= start + n > sizes[src.clamp(0, len(sources))]
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise ValueError(f"gather_images: item {i} {items[i].tolist()} is out of range of its source or of out")


def gather_images(
    sources: list[torch.Tensor], items: torch.Tensor, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Copy byte ranges of flat uint8 sources into one flat uint8 buffer (the store -> batch gather).

    sources: 1-D uint8 tensors on one device (CPU: e.g. memory-mapped shards; CUDA: a
    GPU-resident store); items: CPU int64 [N,4] rows (source, src_offset, nbytes, dst_offset);
    out: 1-D uint8 on the sources' device (allocated to fit when None) -> out.
    """
    items = torch.as_tensor(items, dtype=torch.int64)
    if len(sources) == 0 and items.shape[0] > 0:
        raise ValueError("gather_images: items given but no sources")
    if out is None:
        device = sources[0].device if sources else torch.device("cpu")
        end = int((items[:, 3] + items[:, 2]).max()) if items.shape[0] else 0
        out = torch.empty(end, dtype=torch.uint8, device=device)
    if _use_kernel("gather_images", out.device):
        torch.ops.bridgedfast.gather_images.default(list(sources), items, out)
        return out
    _check_gather_items(list(sources), items, out)
    return gather_images_reference(list(sources), items, out)


if _ext.extension_loaded():

    @torch.library.register_fake("bridgedfast::gather_images")
    def _gather_images_fake(sources: list[torch.Tensor], items: torch.Tensor, out: torch.Tensor) -> None:
        torch._check(items.dim() == 2 and items.shape[1] == 4, lambda: "gather_images: items must be [N, 4]")
        torch._check(out.dim() == 1, lambda: "gather_images: out must be 1-D")
        return None

    @torch.library.register_fake("bridgedfast::mix_images")
    def _mix_images_fake(x: torch.Tensor, lam: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        torch._check(x.dim() == 4, lambda: f"mix_images: x must be 4D, got {x.dim()}D")
        torch._check(lam.shape == (x.shape[0],), lambda: "mix_images: lam must be [N]")
        torch._check(boxes.shape == (x.shape[0], 4), lambda: "mix_images: boxes must be [N, 4]")
        channels_last = x.shape[1] > 1 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        return torch.empty_like(x, memory_format=fmt)
