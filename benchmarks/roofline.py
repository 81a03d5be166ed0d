"""The roofline model of the CUDA kernels in benchmarks/README.md, computed rather than
estimated by hand: bytes moved, instructions issued and shared-memory traffic for the
benchmark shapes, and the time each of those bounds allows on an H100 and an H200.

  python benchmarks/roofline.py [--batch 256] [--size 224] [--min-side 400] [--max-side 512]

The tap counts, tile spans and chunk counts come from the kernels' own arithmetic (the same
RandomResizedCrop draws as TrainAugment, the same tile constants as resized_crop_grid.h). The
per-operation instruction costs are read off the kernel source (an estimate of the SASS, to
within perhaps 30%); the DRAM bytes are exact up to 32-byte sector rounding. No GPU needed.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bridgedfast.augment import TrainAugment  # noqa: E402


@dataclass
class Gpu:
    name: str
    dram_bytes_per_s: float
    sms: int
    clock_hz: float  # boost clock
    warp_issue_per_clk: int = 4  # one warp instruction per scheduler per clock, 4 schedulers per SM
    smem_bytes_per_clk: int = 128  # 32 banks x 4 bytes per SM

    def times(self, dram_bytes: float, warp_instr: float, smem_bytes: float) -> tuple[float, float, float]:
        return (dram_bytes / self.dram_bytes_per_s,
                warp_instr / (self.sms * self.warp_issue_per_clk * self.clock_hz),
                smem_bytes / (self.sms * self.smem_bytes_per_clk * self.clock_hz))


GPUS = [Gpu("H100 SXM (HBM3, 3.35 TB/s)", 3.35e12, 132, 1.98e9), Gpu("H200 SXM (HBM3e, 4.8 TB/s)", 4.8e12, 132, 1.98e9)]

# resized_crop_grid.h
TILE_W = TILE_H = 32
THREADS = 256
CHUNK_ROWS = 16
MAX_SPAN = 256
MAX_TAPS = 17

# Thread instructions per unit of work, read off the kernel source.
STAGE_ROW = 12        # per thread and staged row: row address, loop set-up
STAGE_PIXEL = 9       # 3 LDG.U8 + 2 shift-or + STS.32 + address arithmetic and loop
HPASS_ITEM = 10       # per (row, column) entry: loop, bounds, result STS.128
HPASS_TAP = 12        # LDS weight + LDS pixel + 3 x (byte permute + FADD) + 3 FFMA + index
VPASS_CHUNK = 15      # per thread and chunk: tap range clamp, loop set-up
VPASS_TAP = 17        # LDS weight + 3 LDS.128 (a channel of 4 pixels each) + 12 FFMA + index
STORE = 30            # 12 FFMA (normalise) + 3 STG.128 + addressing
TAPS_ENTRY = 30       # per row/column entry: span set-up, divide, stores
TAPS_TAP = 12         # triangle weight twice (total, then weight) + divide + STS


def axis_taps(crop_len: int, resize_len: int, antialias: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(start, count) of every resized pixel along one axis, as axis_tap_span computes them."""
    scale = np.float32(crop_len) / np.float32(resize_len)
    r = np.arange(resize_len, dtype=np.float32)
    if antialias:
        center = scale * (r + np.float32(0.5))
        support = max(scale, np.float32(1.0))
        lo = np.clip(np.trunc(center - support + np.float32(0.5)).astype(np.int64), 0, None)
        hi = np.minimum(np.trunc(center + support + np.float32(0.5)).astype(np.int64), crop_len)
        return lo, hi - lo
    src = np.maximum(scale * (r + np.float32(0.5)) - np.float32(0.5), 0)
    i0 = np.minimum(src.astype(np.int64), crop_len - 1)
    return i0, np.where(i0 >= crop_len - 1, 1, 2)


def tile_path_fits(crop_w: int, size: int, crop_h: int) -> bool:
    def max_taps(crop: int) -> int:
        s = crop / size
        return min(math.ceil(max(s, 1.0)) * 2 + 1, crop)
    kx, ky = max_taps(crop_w), max_taps(crop_h)
    return kx <= MAX_TAPS and ky <= MAX_TAPS and (TILE_W - 1) * crop_w / size + 2 + kx <= MAX_SPAN


def resized_crop_model(boxes: torch.Tensor, size: int, out_bytes: int) -> dict:
    """DRAM bytes, thread instructions and shared bytes of the tile kernel for these crops."""
    dram = instr = smem = 0.0
    direct = 0
    staged = htaps = vtaps = 0.0  # per batch: staged source pixels, horizontal and vertical taps
    for _, _, bh, bw in boxes.tolist():
        dram += 3 * bh * bw + 3 * size * size * out_bytes
        if not tile_path_fits(bw, size, bh):
            direct += 1
            continue
        xs, xc = axis_taps(bw, size)
        ys, yc = axis_taps(bh, size)
        for oy0 in range(0, size, TILE_H):
            ry, rc = ys[oy0:oy0 + TILE_H], yc[oy0:oy0 + TILE_H]
            rows = int((ry + rc).max() - ry.min())
            chunks = math.ceil(rows / CHUNK_ROWS)
            for ox0 in range(0, size, TILE_W):
                cx, cc = xs[ox0:ox0 + TILE_W], xc[ox0:ox0 + TILE_W]
                span = int((cx + cc).max() - cx.min())
                taps = TILE_W + TILE_H
                instr += taps * TAPS_ENTRY + (cc.sum() + rc.sum()) * TAPS_TAP + 6 * taps
                smem += 4 * (cc.sum() + rc.sum()) + 8 * taps
                instr += rows * 32 * STAGE_ROW + rows * span * STAGE_PIXEL
                smem += 4 * rows * span
                staged += rows * span
                htaps += rows * cc.sum()
                vtaps += TILE_W * rc.sum()
                instr += chunks * CHUNK_ROWS * TILE_W * HPASS_ITEM + rows * cc.sum() * HPASS_TAP
                smem += rows * (cc.sum() * 8 + 12 * TILE_W)
                instr += THREADS * chunks * VPASS_CHUNK + (TILE_W // 4) * rc.sum() * VPASS_TAP
                smem += (TILE_W // 4) * rc.sum() * 52
                instr += THREADS * STORE
    out_pixels = len(boxes) * size * size
    return {"dram": dram, "warp_instr": instr / 32, "smem": smem, "direct": direct,
            "per_pixel": (staged / out_pixels, htaps / out_pixels, vtaps / out_pixels)}


def stream_model(values: float, value_bytes: int, reads: int, writes: int, instr_per_vector: float,
                 values_per_vector: int) -> dict:
    return {"dram": values * value_bytes * (reads + writes), "warp_instr": values / values_per_vector * instr_per_vector / 32,
            "smem": 0.0, "direct": 0}


def fmt_us(t: float) -> str:
    return f"{t * 1e6:.0f} us"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--min-side", type=int, default=400)
    ap.add_argument("--max-side", type=int, default=512)
    args = ap.parse_args()
    n, size = args.batch, args.size
    g = torch.Generator().manual_seed(0)
    sides = torch.randint(args.min_side, args.max_side + 1, (n, 2), generator=g)
    boxes, _ = TrainAugment(size, seed=0).draw(sides[:, 0], sides[:, 1])
    eval_boxes = torch.stack([torch.zeros(n, dtype=torch.int64), torch.zeros(n, dtype=torch.int64),
                              sides.min(1).values, sides.min(1).values], 1)  # the eval transform's scale
    pixels = n * 3 * size * size
    packed_bytes = float((sides[:, 0] * sides[:, 1]).sum()) * 3
    cases = [
        (f"resized_crop, TrainAugment {n} x {args.min_side}-{args.max_side} px -> {size} px, fp32", resized_crop_model(boxes, size, 4)),
        (f"resized_crop, the same, bf16 output", resized_crop_model(boxes, size, 2)),
        (f"resized_crop, whole {args.min_side}-{args.max_side} px squares -> {size} px, fp32", resized_crop_model(eval_boxes, size, 4)),
        # Per 16-byte vector pair: 2 LDG.128 + 2 STG.128 + 8 values x ~6 (2 compares, select,
        # FMUL, FFMA, pack) + ~10 loop/address.
        (f"mix_images (Mixup/CutMix) on [{n}, 3, {size}, {size}] fp32", stream_model(pixels, 4, 1, 1, 62, 8)),
        # Per 16 bytes (the misaligned case, ~15 items in 16): 2 LDG.128 + 4 funnel shifts + STG.128
        # + ~6 loop/address.
        (f"gather_images of the {n} stored images ({packed_bytes / 1e6:.0f} MB)", stream_model(packed_bytes, 1, 1, 1, 13, 16)),
    ]
    print("| kernel | DRAM bytes | per output value: DRAM bytes / thread instr / smem bytes | GPU | DRAM bound | issue bound | smem bound |")
    print("|---|---|---|---|---|---|---|")
    for name, m in cases:
        values = pixels if "gather" not in name else packed_bytes
        per = f"{m['dram'] / values:.2f} / {m['warp_instr'] * 32 / values:.1f} / {m['smem'] / values:.1f}"
        for gpu in GPUS:
            t_dram, t_issue, t_smem = gpu.times(m["dram"], m["warp_instr"], m["smem"])
            print(f"| {name} | {m['dram'] / 1e6:.0f} MB | {per} | {gpu.name} | {fmt_us(t_dram)} | {fmt_us(t_issue)} | {fmt_us(t_smem)} |")
        if "per_pixel" in m:
            st, ht, vt = m["per_pixel"]
            print(f"|  per output pixel: {st:.2f} staged source pixels, {ht:.2f} horizontal taps, {vt:.2f} vertical taps | | | | | | |")
        if m["direct"]:
            print(f"|  ({m['direct']} images take the direct kernel, not modelled) | | | | | | |")


if __name__ == "__main__":
    main()
