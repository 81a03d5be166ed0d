"""Pure-PyTorch references: the slow twins that define what each fused op computes.

They are used by the tests as the ground truth and by `bridgedfast.ops` as the fallback when
the compiled extension (or a device's kernel) is missing.
"""
from __future__ import annotations

import torch


def mix_images_reference(x: torch.Tensor, lam: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """out[i] = inside boxes[i] ? x[N-1-i] : lam[i] * x[i] + (1 - lam[i]) * x[N-1-i], computed in float32."""
    n, _, h, w = x.shape
    partner = x.flip(0).float()
    lam4 = lam.to(device=x.device, dtype=torch.float32).view(n, 1, 1, 1)
    mixed = x.float() * lam4 + partner * (1.0 - lam4)
    b = boxes.to(device=x.device, dtype=torch.int64)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (ys >= b[:, 0, None, None]) & (ys < b[:, 1, None, None]) & (xs >= b[:, 2, None, None]) & (
        xs < b[:, 3, None, None]
    )
    out = torch.where(inside[:, None], partner, mixed).to(x.dtype)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        out = out.contiguous(memory_format=torch.channels_last)
    return out


def gather_images_reference(sources: list[torch.Tensor], items: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out[dst:dst+n] = sources[s][src:src+n] for each items row (s, src, n, dst); returns out."""
    for s, src, n, dst in items.tolist():
        out[dst : dst + n].copy_(sources[s][src : src + n])
    return out
