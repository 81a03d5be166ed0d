"""Loader throughput, store -> augmented batch: bridgedfast MixedLoader (gather op + fused
TrainAugment) vs torchvision ImageFolder + DataLoader with the same transforms (RandomResizedCrop
antialias + flip + ToDtype + Normalize) and the same number of workers, on the same images
(the peer reads them as JPEG files; ours from a packed store, raw or JPEG).

  python benchmarks/bench_loader.py [--device cpu|cuda] [--images 512] [--batch 64] [--size 224] [--workers 2] [--quick]

On the CPU our loader writes its batches into recycled output buffers (it reuses one only when
the batch it held is no longer referenced; the timed loop drops each batch, as a training loop
does). --quick: a few tiny images and one round, a smoke run of a few seconds.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Result, compare, save  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def make_jpeg_folder(root: Path, images: int, classes: int = 8, seed: int = 0, scale: float = 1.0) -> Path:
    """ImageNet-like JPEGs (about 500x375 times `scale`, quality 90) in class sub-folders."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(images):
        h, w = int(rng.integers(300, 420) * scale), int(rng.integers(400, 520) * scale)
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([np.sin(yy / rng.uniform(5, 40)), np.cos(xx / rng.uniform(5, 40)), np.sin((xx + yy) / 30)], -1)
        pixels = np.clip(127 + 100 * base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
        folder = root / f"class_{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"{i:05d}.jpg", quality=90)
    return root


def ours_fn(store, batch: int, size: int, workers: int, device: str, cache: bool = False):
    from bridgedfast.augment import TrainAugment
    from bridgedfast.data import MixedLoader

    loader = MixedLoader(store, None, batch_size=batch, augment=TrainAugment(size, mean=MEAN, std=STD), device=device,
                         workers=workers, cache_on_device=cache, prefetch=2)
    epoch = [0]

    def run():
        loader.set_epoch(epoch[0])
        epoch[0] += 1
        for images, targets, _ in loader:
            pass
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    return run, len(loader) * batch


def peer_fn(folder: Path, batch: int, size: int, workers: int, device: str):
    from torchvision import datasets
    from torchvision.transforms import v2

    transform = v2.Compose([
        v2.PILToTensor(),
        v2.RandomResizedCrop(size, antialias=True),
        v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(MEAN, STD),
    ])
    dataset = datasets.ImageFolder(str(folder), transform=transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True, num_workers=workers,
                                         persistent_workers=workers > 0, pin_memory=device.startswith("cuda"))

    def run():
        for images, targets in loader:
            if device.startswith("cuda"):
                images = images.to(device, non_blocking=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    return run, len(loader) * batch


def augment_only_fn(store, batch: int, size: int, device: str):
    from bridgedfast.augment import TrainAugment
    from bridgedfast.data import MixedSampler, batch_seed
    from bridgedfast.packed import PackedImages

    augment = TrainAugment(size, mean=MEAN, std=STD)
    plan = MixedSampler(len(store), 0, batch_size=batch, synthetic_fraction=0.0).plan()
    batches = [PackedImages.from_images([store.image(int(i)) for i in index]).to(device) for _, index in plan]

    out = None
    if device == "cpu":  # the loader's recycled outputs, so the bound is comparable
        shape, dtype, memory_format = augment.output_spec(batch)
        out = torch.empty(shape, dtype=dtype, memory_format=memory_format)

    def run():
        for b, packed in enumerate(batches):
            augment(packed, torch.Generator().manual_seed(batch_seed(0, 0, 0, b)), out=out)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    return run, len(batches) * batch


def interleaved(runs: dict, rounds: int) -> dict[str, float]:
    """Images/s of each (run, items) pair: median over `rounds` full epochs, the candidates
    taking turns so that load from other processes on a shared machine hits them alike."""
    for run, _ in runs.values():
        run()  # warm-up: page cache, worker start-up, lazy initialisation
    seconds: dict[str, list[float]] = {key: [] for key in runs}
    for _ in range(rounds):
        for key, (run, _) in runs.items():
            start = time.perf_counter()
            run()
            seconds[key].append(time.perf_counter() - start)
    return {key: runs[key][1] / statistics.median(seconds[key]) for key in runs}


_SMALL: dict = {}


def _small_case():
    if not _SMALL:
        from bridgedfast.data import pack

        root = Path(tempfile.mkdtemp(prefix="bench_loader_"))
        make_jpeg_folder(root / "jpeg", 64)
        _SMALL["folder"] = root / "jpeg"
        _SMALL["store"] = pack(root / "jpeg", root / "raw", progress=False)
    return _SMALL


def test_loader_ours(benchmark):
    import pytest

    pytest.importorskip("bridgedfast.augment", reason="needs bridgedfast.augment (the fused TrainAugment)")
    case = _small_case()
    benchmark(ours_fn(case["store"], 32, 224, torch.get_num_threads(), "cpu")[0])


def test_loader_imagefolder(benchmark):
    case = _small_case()
    benchmark(peer_fn(case["folder"], 32, 224, 0, "cpu")[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--workers", type=int, default=2, help="peer DataLoader workers = our gather/decode threads")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: --workers)")
    ap.add_argument("--rounds", type=int, default=5, help="timed epochs per candidate (median reported)")
    ap.add_argument("--data", type=Path, default=None, help="keep the generated images and stores here")
    ap.add_argument("--quick", action="store_true", help="a few tiny images, one round: a smoke run of a few seconds")
    args = ap.parse_args()
    if args.quick:
        args.images, args.batch, args.size, args.rounds = 16, 4, 32, 1
    torch.set_num_threads(args.threads or args.workers)
    try:
        import bridgedfast.augment  # noqa: F401
    except ImportError as exc:
        sys.exit(f"bench_loader: needs bridgedfast.augment (the fused TrainAugment): {exc}")
    from bridgedfast.data import pack

    root = args.data or Path(tempfile.mkdtemp(prefix="bench_loader_"))
    folder = root / "jpeg"
    if not folder.exists():
        make_jpeg_folder(folder, args.images, scale=0.25 if args.quick else 1.0)
    stores = {}
    for encoding in ("raw", "jpeg"):
        path = root / f"store-{encoding}"
        stores[encoding] = pack(folder, path, encoding=encoding, progress=False) if not path.exists() else None
        if stores[encoding] is None:
            from bridgedfast.data import ImageStore

            stores[encoding] = ImageStore(path)

    runs = {"peer": peer_fn(folder, args.batch, args.size, args.workers, args.device)}
    names = {"peer": f"torchvision ImageFolder + DataLoader ({args.workers} workers)"}
    variants = [("raw", False), ("jpeg", False)] + ([("raw", True)] if args.device.startswith("cuda") else [])
    for encoding, cache in variants:
        key = f"{encoding}{'-cache' if cache else ''}"
        runs[key] = ours_fn(stores[encoding], args.batch, args.size, args.workers, args.device, cache)
        names[key] = f"bridgedfast MixedLoader ({encoding} store{', GPU-resident cache' if cache else ''})"
    runs["bound"] = augment_only_fn(stores["raw"], args.batch, args.size, args.device)
    names["bound"] = "TrainAugment alone on in-memory batches (upper bound; CPU: output reused)"
    speed = interleaved(runs, args.rounds)
    result = {key: Result(names[key], speed[key]) for key in runs}
    rows = []
    for encoding, cache in variants:
        key = f"{encoding}{'-cache' if cache else ''}"
        title = f"loader: store -> augmented batch {args.batch}x3x{args.size}x{args.size}, {encoding} store"
        rows += compare(title + (", GPU cache" if cache else ""), result[key], [result["peer"]], args.device)
    rows += compare("loader efficiency: raw-store loader vs its augmentation alone", result["raw"], [result["bound"]],
                    args.device)
    print("saved", save("loader", rows, args.device))


if __name__ == "__main__":
    main()
