"""Pure-PyTorch references: the slow twins that define what each fused op computes.

They are used by the tests as the ground truth and by `bridgedfast.ops` as the fallback when
the compiled extension (or a device's kernel) is missing.
"""
from __future__ import annotations

import io

import numpy as np
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


def decode_jpeg_scaled(data: torch.Tensor | bytes, scale: int) -> np.ndarray:
    """JPEG bytes -> uint8 [ceil(H/scale), ceil(W/scale), 3] RGB, decoded at 1/scale by libjpeg's
    DCT scaling (scale 1, 2, 4 or 8). Raises ValueError for data that is not a decodable JPEG."""
    from PIL import Image

    if scale not in (1, 2, 4, 8):
        raise ValueError(f"scale must be 1, 2, 4 or 8, got {scale!r}")
    raw = data.numpy().tobytes() if isinstance(data, torch.Tensor) else bytes(data)
    try:
        with Image.open(io.BytesIO(raw)) as img:
            if img.format != "JPEG":
                raise ValueError(f"not a JPEG (Pillow reads it as {img.format})")
            width, height = img.size
            if scale > 1:
                # draft picks the largest libjpeg scale whose result is at least this size: 1/scale.
                img.draft("RGB", (max(1, width // scale), max(1, height // scale)))
            want = (-(-width // scale), -(-height // scale))
            if img.size != want:
                raise ValueError(f"libjpeg scaled {width}x{height} to {img.size[0]}x{img.size[1]}, not to 1/{scale}")
            rgb = img if img.mode == "RGB" else img.convert("RGB")
            return np.asarray(rgb)
    except (OSError, SyntaxError) as exc:  # what Pillow raises for a broken file
        raise ValueError(f"the JPEG does not decode ({exc})") from None


# decode_jpegs' item columns and statuses (csrc/torch/decode_jpegs_cpu.cpp).
DECODE_COLUMNS = ("source", "offset", "nbytes", "dst", "height", "width", "scale", "top", "left", "region_h", "region_w")
DECODE_OK, DECODE_UNDECODABLE, DECODE_WRONG_SIZE = 0, 1, 2


def decode_jpegs_reference(sources: list[torch.Tensor], items: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """What the decode_jpegs op computes, one image at a time: each item's JPEG decoded whole
    (torchvision's libjpeg-turbo at scale 1, Pillow's DCT scaling at 1/2, 1/4, 1/8), its
    (height, width) checked, and the region [top:top+region_h, left:left+region_w] copied to
    out[dst:] as uint8 [region_h, region_w, 3]. Returns int32 [N] statuses (0 = decoded,
    1 = does not decode, 2 = decodes to another size); a failed item's bytes in out are untouched."""
    from torchvision.io import ImageReadMode, decode_jpeg

    status = torch.zeros(items.shape[0], dtype=torch.int32)
    for k, (s, start, n, dst, h, w, scale, top, left, rh, rw) in enumerate(items.tolist()):
        data = sources[s][start : start + n]
        try:
            if scale == 1:
                pixels = decode_jpeg(data.contiguous(), mode=ImageReadMode.RGB).permute(1, 2, 0)
            else:
                pixels = torch.from_numpy(decode_jpeg_scaled(data, scale).copy())
        except Exception:  # noqa: BLE001 - whatever the decoders raise for a broken file
            status[k] = DECODE_UNDECODABLE
            continue
        if tuple(pixels.shape) != (h, w, 3):
            status[k] = DECODE_WRONG_SIZE
            continue
        out[dst : dst + rh * rw * 3].view(rh, rw, 3).copy_(pixels[top : top + rh, left : left + rw])
    return status


def resized_crop_reference(
    data: torch.Tensor,
    index: torch.Tensor,
    boxes: torch.Tensor,
    flip: torch.Tensor,
    size: list[int],
    mean: list[float],
    std: list[float],
    antialias: bool,
    out_dtype: torch.dtype,
    channels_last: bool,
    resize: torch.Tensor | None = None,
) -> torch.Tensor:
    """The twin of `torch.ops.bridgedfast.resized_crop`, one image at a time with torch's own
    bilinear `interpolate` (what torchvision's resize calls on float images).

    data: uint8 packed HWC RGB; index int64 [N,3] (offset, height, width); boxes int64 [N,4]
    (top, left, height, width); flip bool [N]; resize None or int64 [N,4] (height, width, top,
    left): resize the box to that size and keep the `size` window at (top, left) instead of
    resizing it to `size` -> [N,3,H,W] in out_dtype: (x/255 - mean)/std.
    """
    out_h, out_w = int(size[0]), int(size[1])
    mean_t = torch.tensor(mean, dtype=torch.float32, device=data.device).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=data.device).view(3, 1, 1)
    outs = []
    for i in range(index.shape[0]):
        offset, h, w = (int(v) for v in index[i])
        top, left, bh, bw = (int(v) for v in boxes[i])
        img = data[offset : offset + h * w * 3].view(h, w, 3).permute(2, 0, 1).float()
        crop = img[:, top : top + bh, left : left + bw]
        if resize is None:
            rh, rw, wy, wx = out_h, out_w, 0, 0
        else:
            rh, rw, wy, wx = (int(v) for v in resize[i])
        if (rh, rw) != (bh, bw):
            crop = torch.nn.functional.interpolate(
                crop[None], size=(rh, rw), mode="bilinear", align_corners=False, antialias=antialias
            )[0]
        crop = crop[:, wy : wy + out_h, wx : wx + out_w]
        if bool(flip[i]):
            crop = crop.flip(-1)
        outs.append((crop / 255.0 - mean_t) / std_t)
    out = torch.stack(outs) if outs else torch.empty(0, 3, out_h, out_w, device=data.device)
    out = out.to(out_dtype)
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out.contiguous()
