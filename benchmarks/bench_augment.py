"""Fused training augmentation vs its peers, on a batch of varied-size uint8 images.

  python benchmarks/bench_augment.py [--device cpu|cuda] [--batch 256] [--size 224] [--threads 2] [--thp] [--quick]

Rows (images/s, ratio ours/peer):
  augment:  bridgedfast TrainAugment (RandomResizedCrop antialias + flip + normalize, one op)
            vs torchvision.transforms.v2 per sample (RandomResizedCrop(antialias=True) +
            RandomHorizontalFlip + ToDtype(float32, scale=True) + Normalize, then stack) on the
            same images, once per input form the op takes:
              list    a Python list of uint8 [H, W, 3] tensors of varied sizes (read in place)
              nhwc    one uint8 [N, S, S, 3] batch (S the middle of the side range)
              packed  PackedImages (one flat buffer + index), the loader's form
            each twice: "recycled", a plain `augment(x)` call, which on CPU writes into a
            recycled buffer once the previous batch is dropped (as MixedLoader's batches and
            Mixup's outputs are), and "fresh", `recycle_outputs=False`: the op returns a new
            output tensor per call (its memory comes from the blocks earlier, dropped outputs
            released, so no page is faulted in again; see csrc/torch/output_allocator.h).
            One more row, "fresh, cold pages", empties that cache before every call: every
            output is new memory the kernel first-touches (huge pages where the OS allows).
            kornia.augmentation batched (same steps on a batch padded to one size, as kornia
            needs) is a second peer of the packed rows. The peers allocate fresh outputs.
  + mixup:  the same with Mixup/CutMix on top (bridgedfast Mixup vs timm.data.Mixup), both of
            ours plain calls (recycled outputs)
  mixing:   Mixup/CutMix alone on a float batch (one mix_images op into Mixup's recycled output
            buffers vs timm's per-batch / per-sample code on a fresh copy, as it mixes in place)
--quick: tiny sizes and short timings, a smoke run of a few seconds (not for quoting).
Our GB/s counts the crop bytes read plus the output bytes written, beside the machine's copy
bandwidth (the roofline: a copy reads and writes each byte once). --thp sets torch's
THP_MEM_ALLOC_ENABLE=1 (huge pages for big CPU tensors) for every row alike: allocating and
first-touching each fresh output batch is a large share of the CPU time otherwise.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

if __name__ == "__main__" and "--thp" in sys.argv:
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # read once by torch's CPU allocator

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import Result, compare, save, throughput  # noqa: E402

from bridgedfast import ops  # noqa: E402
from bridgedfast.augment import IMAGENET_MEAN, IMAGENET_STD, Mixup, TrainAugment  # noqa: E402
from bridgedfast.packed import PackedImages  # noqa: E402


MIXUP_ARGS = dict(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=1000)


def make_images(batch: int, min_side: int, max_side: int, seed: int = 0) -> list[torch.Tensor]:
    """uint8 [H, W, 3] images with sides drawn uniformly in [min_side, max_side]."""
    g = torch.Generator().manual_seed(seed)
    sides = torch.randint(min_side, max_side + 1, (batch, 2), generator=g)
    return [torch.randint(0, 256, (int(h), int(w), 3), dtype=torch.uint8, generator=g) for h, w in sides]


def torchvision_pipeline(size: int):
    import torchvision.transforms.v2 as T

    return T.Compose(
        [
            T.RandomResizedCrop(size, antialias=True),
            T.RandomHorizontalFlip(),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def ours_fn(images, size: int, mixup: Mixup | None = None, target: torch.Tensor | None = None,
            recycle_outputs: bool = True, cold: bool = False):
    """Plain TrainAugment calls on `images` (any input form; then Mixup): recycled CPU outputs
    (the default), or a fresh output per call; `cold` frees the op's cached output blocks first."""
    augment = TrainAugment(size, seed=0, recycle_outputs=recycle_outputs)
    if cold:
        return lambda: (ops.release_cached_outputs(), augment(images))
    if mixup is None:
        return lambda: augment(images)
    return lambda: mixup(augment(images), target)


def torchvision_fn(images_chw: list[torch.Tensor], size: int, mixup=None, target=None):
    pipeline = torchvision_pipeline(size)
    if mixup is None:
        return lambda: torch.stack([pipeline(x) for x in images_chw])
    return lambda: mixup(torch.stack([pipeline(x) for x in images_chw]), target)


def kornia_fn(images_chw: list[torch.Tensor], size: int, device: str):
    import kornia.augmentation as K

    h = max(x.shape[1] for x in images_chw)
    w = max(x.shape[2] for x in images_chw)
    padded = torch.zeros(len(images_chw), 3, h, w, dtype=torch.uint8, device=device)
    for i, x in enumerate(images_chw):
        padded[i, :, : x.shape[1], : x.shape[2]] = x
    pipeline = torch.nn.Sequential(
        K.RandomResizedCrop((size, size)),
        K.RandomHorizontalFlip(),
        K.Normalize(torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)),
    ).to(device)
    return lambda: pipeline(padded.float().div_(255))


def copy_bandwidth(device: str, quick: bool = False) -> float:
    """Bytes/s of a large device copy, counting its read and its write."""
    src = torch.empty((1 if quick else 64) * 1024 * 1024, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    return 2 * src.numel() * 4 * throughput(lambda: dst.copy_(src), 1, min_run_time=0.05 if quick else 0.5)


def bytes_moved(images, size: int, draws: int = 8) -> float:
    """Mean crop bytes read + output bytes written per batch by TrainAugment(size) (float32)."""
    augment = TrainAugment(size, seed=0)
    heights, widths = ops.image_sizes(images)
    crop = 0.0
    for _ in range(draws):
        boxes, _ = augment.draw(heights, widths)
        crop += float((boxes[:, 2] * boxes[:, 3]).sum()) * 3 / draws
    return crop + len(heights) * 3 * size * size * 4


def make_batch(batch: int, side: int, seed: int = 0) -> torch.Tensor:
    """One uint8 [N, side, side, 3] batch."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, side, side, 3), dtype=torch.uint8, generator=g)


# pytest-benchmark entry points (make bench): a small batch so the per-sample peer stays quick.
def _small_case():
    images = make_images(32, 224, 400)
    return images, PackedImages.from_images(images)


def test_augment_ours(benchmark):
    _, packed = _small_case()
    benchmark(ours_fn(packed, 224))


def test_augment_ours_list(benchmark):
    images, _ = _small_case()
    benchmark(ours_fn(images, 224))


def test_augment_torchvision_per_sample(benchmark):
    images, _ = _small_case()
    benchmark(torchvision_fn([x.permute(2, 0, 1).contiguous() for x in images], 224))


def test_mix_ours(benchmark):
    x = torch.rand(64, 3, 224, 224)
    mixup = Mixup(mode="elem", **MIXUP_ARGS)
    benchmark(lambda: mixup(x, torch.zeros(64, dtype=torch.int64)))


def test_mix_timm(benchmark):
    from timm.data import Mixup as TimmMixup

    x = torch.rand(64, 3, 224, 224)
    mixup = TimmMixup(mode="elem", **MIXUP_ARGS)
    benchmark(lambda: mixup(x.clone(), torch.zeros(64, dtype=torch.int64)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--min-side", type=int, default=224)
    ap.add_argument("--max-side", type=int, default=400)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-run-time", type=float, default=2.0)
    ap.add_argument("--no-kornia", action="store_true", help="skip the kornia row (slow on CPU)")
    ap.add_argument("--thp", action="store_true", help="huge pages for big CPU tensors (THP_MEM_ALLOC_ENABLE=1)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, a smoke run of a few seconds")
    args = ap.parse_args()
    if args.quick:
        args.batch, args.size, args.min_side, args.max_side = 8, 32, 32, 64
        args.min_run_time, args.no_kornia = 0.05, True
    torch.set_num_threads(args.threads)
    from timm.data import Mixup as TimmMixup

    dev, n, size, t = args.device, args.batch, args.size, args.min_run_time
    images = [x.to(dev) for x in make_images(n, args.min_side, args.max_side)]
    packed = PackedImages.from_images(images)
    side = (args.min_side + args.max_side) // 2
    batch = make_batch(n, side, seed=3).to(dev)
    images_chw = [x.permute(2, 0, 1).contiguous() for x in images]
    batch_chw = [x.permute(2, 0, 1).contiguous() for x in batch]
    target = torch.randint(0, 1000, (n,), generator=torch.Generator().manual_seed(1)).to(dev)
    alloc = "THP_MEM_ALLOC_ENABLE=1" if os.environ.get("THP_MEM_ALLOC_ENABLE") == "1" else "default allocator"
    print(f"{n} images, sides {args.min_side}..{args.max_side} (nhwc: {side}x{side}) -> {size}x{size} float32, {dev}, "
          f"{torch.get_num_threads()} threads, {alloc}")

    rows = []
    bandwidth = copy_bandwidth(dev, quick=args.quick)

    def ours_result(name: str, per_s: float, moved: float) -> Result:
        gbs = moved * per_s / n / 1e9
        return Result(name, per_s, extra=f"{gbs:.1f} GB/s = {100 * gbs / (bandwidth / 1e9):.0f}% of copy bandwidth "
                                         f"{bandwidth / 1e9:.1f} GB/s")

    peer_varied = Result("torchvision.v2 per-sample", throughput(torchvision_fn(images_chw, size), n, min_run_time=t))
    peer_nhwc = Result("torchvision.v2 per-sample", throughput(torchvision_fn(batch_chw, size), n, min_run_time=t))
    kornia = []
    if not args.no_kornia:
        kornia.append(Result("kornia batched (padded batch)", throughput(kornia_fn(images_chw, size, dev), n, min_run_time=t)))
    forms = [("list", images, peer_varied, f"list of {n} uint8 HWC tensors"),
             ("nhwc", batch, peer_nhwc, f"uint8 [{n}, {side}, {side}, 3] batch"),
             ("packed", packed, peer_varied, f"PackedImages of {n} images")]
    for form, x, peer, what in forms:
        moved = bytes_moved(x, size)
        for recycled in (True, False):
            label = "recycled output (plain call)" if recycled else "fresh output (recycle_outputs=False)"
            ours = ours_result(f"bridgedfast TrainAugment, {form}, {label}",
                               throughput(ours_fn(x, size, recycle_outputs=recycled), n, min_run_time=t), moved)
            peers = [peer, *kornia] if form == "packed" and recycled else [peer]
            rows += compare(f"augment [{form}] {what} -> 3x{size}x{size}, {label}", ours, peers, dev)
    if dev == "cpu":
        cold = ours_result("bridgedfast TrainAugment, packed, fresh output, cold pages",
                           throughput(ours_fn(packed, size, recycle_outputs=False, cold=True), n, min_run_time=t),
                           bytes_moved(packed, size))
        rows += compare(f"augment [packed] -> 3x{size}x{size}, fresh output on new pages every call (cache emptied)",
                        cold, [peer_varied], dev)

    ours_mix = Result("bridgedfast TrainAugment + Mixup (plain calls, recycled outputs)", throughput(
        ours_fn(packed, size, Mixup(**MIXUP_ARGS), target), n, min_run_time=t))
    peer_mix = Result("torchvision.v2 per-sample + timm Mixup", throughput(
        torchvision_fn(images_chw, size, TimmMixup(**MIXUP_ARGS), target), n, min_run_time=t))
    rows += compare(f"augment + Mixup/CutMix (batch mode) {n} images", ours_mix, [peer_mix], dev)

    x = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(2)).to(dev)
    for mode in ("batch", "elem"):
        ours_m, timm_m = Mixup(mode=mode, **MIXUP_ARGS), TimmMixup(mode=mode, **MIXUP_ARGS)
        rows += compare(
            f"Mixup/CutMix alone, mode={mode}, {n}x3x{size}x{size} float32",
            Result("bridgedfast Mixup (1 mix_images op, recycled out)", throughput(lambda: ours_m(x, target), n, min_run_time=t)),
            [Result("timm.data.Mixup (on a copy: it mixes in place)", throughput(lambda: timm_m(x.clone(), target), n, min_run_time=t))],
            dev,
        )
    print("saved", save("augment", rows, dev))


if __name__ == "__main__":
    main()
