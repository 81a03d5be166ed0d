"""Fused Mixup/CutMix image mixing (bridgedfast mix_images) vs timm.data.Mixup's tensor ops.

  python benchmarks/bench_mixup.py [--device cpu|cuda] [--batch 256] [--size 224]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Result, compare, save, throughput  # noqa: E402

from bridgedfast import ops  # noqa: E402


def make_case(batch: int, size: int, device: str):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, size, size, generator=g).to(device)
    lam = torch.full((batch,), 0.7)
    boxes = torch.zeros(batch, 4, dtype=torch.int32)
    return x, lam, boxes


def ours_fn(x, lam, boxes):
    lam_d, boxes_d = lam.to(x.device), boxes.to(x.device)
    return lambda: ops.mix_images(x, lam_d, boxes_d)


def timm_fn(x, lam_value: float = 0.7):
    # timm's batch-mode mixup on a copy (it mixes in place): x*lam + flip(x)*(1-lam).
    def run():
        y = x.clone()
        flipped = y.flip(0).mul_(1.0 - lam_value)
        return y.mul_(lam_value).add_(flipped)

    return run


def test_mix_ours(benchmark):
    x, lam, boxes = make_case(64, 224, "cpu")
    benchmark(ours_fn(x, lam, boxes))


def test_mix_timm(benchmark):
    x, _, _ = make_case(64, 224, "cpu")
    benchmark(timm_fn(x))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x, lam, boxes = make_case(args.batch, args.size, args.device)
    ours = Result("bridgedfast mix_images", throughput(ours_fn(x, lam, boxes), args.batch))
    peer = Result("timm Mixup (batch mode tensor ops)", throughput(timm_fn(x), args.batch))
    rows = compare(f"mixup {args.batch}x3x{args.size}x{args.size} float32", ours, [peer], args.device)
    print("saved", save("mixup", rows, args.device))


if __name__ == "__main__":
    main()
