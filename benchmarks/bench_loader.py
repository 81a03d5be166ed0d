"""Loader throughput, store -> augmented batch: bridgedfast MixedLoader (gather op + fused
TrainAugment) vs torchvision ImageFolder + DataLoader with the same transforms (RandomResizedCrop
antialias + flip + ToDtype + Normalize) and the same number of workers, on the same images
(the peer reads them as JPEG files; ours from a packed store, raw or JPEG). The images are
photo-like (gradients, textures, edges, noise; JPEG quality 90), since decoding time depends on
content. JPEG rows on the CPU: the store `pack` writes by default (each JPEG re-encoded losslessly
with a restart marker after every MCU, so that only the MCUs around each crop are decoded), a store
keeping the original JPEG bytes (`pack --no-restart-markers`: only each crop's rows and columns are
reconstructed, every row above it still entropy-decoded), jpeg_decode='reduced' (DCT scaling where
the crop allows), and whole-image decoding alone (torchvision's libjpeg-turbo, no augmentation: what
a loader that decodes every pixel cannot beat). On CUDA: batched nvJPEG (the default there) and CPU
decoding.

  python benchmarks/bench_loader.py [--device cpu|cuda] [--images 512] [--batch 64] [--size 224] [--workers 2]
                                    [--sides 300 500] [--quick]

On the CPU our loader runs one producer thread per worker (each makes whole batches single-threaded;
a row compares it with one producer running all the workers as OpenMP threads) and writes its
batches into recycled output buffers (it reuses one only when the batch it held is no longer
referenced; the timed loop drops each batch, as a training loop does). --quick: a few tiny images
and one round, a smoke run of a few seconds.
"""
from __future__ import annotations

import argparse
import os
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


def _smooth(rng: np.random.Generator, h: int, w: int, cells: int, channels: int) -> np.ndarray:
    from PIL import Image

    coarse = rng.uniform(0, 255, (cells, cells, channels) if channels > 1 else (cells, cells)).astype(np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC), dtype=np.float32)


def photo_like(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A photo-like uint8 [h, w, 3] image, since JPEG decoding time depends on content: smooth
    colour fields, oriented textures at three scales (2.5-30 px periods) under smooth masks,
    textured hard-edged shapes, and sensor noise (std 4). About 2.4 bits per pixel at quality 90."""
    from PIL import Image, ImageDraw

    img = _smooth(rng, h, w, int(rng.integers(3, 7)), 3)
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    for period in (rng.uniform(2.5, 5), rng.uniform(5, 12), rng.uniform(12, 30)):
        angle = rng.uniform(0, np.pi)
        wave = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * np.float32(2 * np.pi / period))
        img += (_smooth(rng, h, w, 4, 1) * np.float32(rng.uniform(0.05, 0.15)) * wave)[..., None]
    shapes = Image.new("L", (w, h))
    draw = ImageDraw.Draw(shapes)
    for k in range(int(rng.integers(3, 8))):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        box = [x0, y0, x0 + int(rng.integers(w // 10 + 1, w // 2 + 2)), y0 + int(rng.integers(h // 10 + 1, h // 2 + 2))]
        (draw.ellipse if rng.uniform() < 0.5 else draw.rectangle)(box, fill=k + 1)
    label = np.asarray(shapes)
    palette = rng.uniform(0, 255, (9, 3)).astype(np.float32)
    inside = label > 0
    img[inside] = 0.35 * img[inside] + 0.65 * palette[label[inside]]
    img += rng.standard_normal((h, w, 3), dtype=np.float32) * np.float32(4)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_jpeg_folder(root: Path, images: int, classes: int = 8, seed: int = 0, scale: float = 1.0,
                     sides: tuple[int, int] = (300, 500)) -> Path:
    """Photo-like JPEGs (quality 90; each side drawn from `sides`, times `scale`) in class sub-folders."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    def one(i: int) -> None:
        rng = np.random.default_rng([seed, i])
        h, w = (int(rng.integers(sides[0], sides[1] + 1) * scale) for _ in range(2))
        folder = root / f"class_{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo_like(h, w, rng)).save(folder / f"{i:05d}.jpg", quality=90)

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(one, range(images)))
    return root


def bits_per_pixel(folder: Path) -> float:
    from PIL import Image

    bits = pixels = 0
    for path in folder.rglob("*.jpg"):
        with Image.open(path) as img:
            pixels += img.width * img.height
        bits += 8 * path.stat().st_size
    return bits / max(pixels, 1)


def ours_fn(store, batch: int, size: int, workers: int, device: str, cache: bool = False, jpeg_decode: str = "auto",
            producers: int | None = None):
    from bridgedfast.augment import TrainAugment
    from bridgedfast.data import MixedLoader

    loader = MixedLoader(store, None, batch_size=batch, augment=TrainAugment(size, mean=MEAN, std=STD), device=device,
                         workers=workers, cache_on_device=cache, prefetch=2, jpeg_decode=jpeg_decode, producers=producers)
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


def decode_only_fn(store, workers: int):
    """Every image of the store decoded whole by libjpeg-turbo (torchvision's) on `workers` threads,
    nothing else: the ceiling of any loader that decodes every pixel of each JPEG on the CPU."""
    from concurrent.futures import ThreadPoolExecutor

    from bridgedfast.data.store import decode_jpeg

    pool = ThreadPoolExecutor(workers)
    data = [store.encoded(i) for i in range(len(store))]
    chunks = [data[k::workers] for k in range(workers)]

    def run():
        for _ in pool.map(lambda chunk: [decode_jpeg(x) for x in chunk], chunks):
            pass

    return run, len(store)


def crop_decode_fn(store, batch: int, size: int, workers: int, own_entropy: bool):
    """The decode op alone on the restart-marked store: each image's TrainAugment crop (one seeded
    draw), batch by batch on `workers` threads, its MCUs Huffman-decoded by the op's own decoder or
    (own_entropy=False) by libjpeg-turbo's. Same items and pixels either way."""
    from bridgedfast import ops
    from bridgedfast.augment import TrainAugment

    data = [store.encoded(i) for i in range(len(store))]
    source = torch.cat(data)
    sizes = store.sizes
    boxes, _ = TrainAugment(size).draw(sizes[:, 0], sizes[:, 1], torch.Generator().manual_seed(0))
    nbytes = torch.tensor([d.numel() for d in data])
    starts = torch.cumsum(nbytes, 0) - nbytes
    batches = []
    for b in range(0, len(data) - batch + 1, batch):
        sl = slice(b, b + batch)
        region = boxes[sl, 2] * boxes[sl, 3] * 3
        items = torch.stack([torch.zeros(batch, dtype=torch.int64), starts[sl], nbytes[sl],
                             torch.cumsum(region, 0) - region, sizes[sl, 0], sizes[sl, 1], torch.ones(batch, dtype=torch.int64),
                             boxes[sl, 0], boxes[sl, 1], boxes[sl, 2], boxes[sl, 3]], 1)
        batches.append((items, torch.empty(int(region.sum()), dtype=torch.uint8)))

    def run():
        for items, out in batches:
            ops.decode_jpegs([source], items, out, threads=workers, own_entropy=own_entropy)

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
    ap.add_argument("--sides", type=int, nargs=2, default=(300, 500), metavar=("MIN", "MAX"),
                    help="image sides in pixels, each drawn from MIN..MAX (default 300 500)")
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
        make_jpeg_folder(folder, args.images, scale=0.25 if args.quick else 1.0, sides=tuple(args.sides))
    stores = {}
    for key, encoding, markers in (("raw", "raw", False), ("jpeg", "jpeg", True), ("jpeg-plain", "jpeg", False)):
        path = root / f"store-{key}"
        if path.exists():
            from bridgedfast.data import ImageStore

            stores[key] = ImageStore(path)
        else:
            stores[key] = pack(folder, path, encoding=encoding, restart_markers=markers, progress=False)

    bpp = bits_per_pixel(folder)
    print(f"{len(stores['jpeg'])} photo-like JPEGs, quality 90, {bpp:.2f} bits per pixel")
    runs = {"peer": peer_fn(folder, args.batch, args.size, args.workers, args.device)}
    names = {"peer": f"torchvision ImageFolder + DataLoader ({args.workers} workers)"}
    cuda = args.device.startswith("cuda")
    # (key, store, GPU cache, jpeg_decode, title suffix, our name)
    variants = [("raw", "raw", False, "auto", "raw store", "raw store")]
    if cuda:
        variants += [("jpeg", "jpeg", False, "auto", "jpeg store", "jpeg store, nvJPEG on the GPU"),
                     ("jpeg-cpu", "jpeg", False, "full", "jpeg store, CPU decoding", "jpeg store, libjpeg-turbo on the CPU"),
                     ("raw-cache", "raw", True, "auto", "raw store, GPU cache", "raw store, GPU-resident cache")]
    else:
        variants += [("jpeg", "jpeg", False, "auto", "jpeg store (pack's default: restart markers)",
                      "jpeg store with restart markers"),
                     ("jpeg-plain", "jpeg-plain", False, "auto", "jpeg store (original bytes: pack --no-restart-markers)",
                      "jpeg store, original bytes"),
                     ("jpeg-reduced", "jpeg", False, "reduced", "jpeg store (restart markers), reduced-size decoding",
                      "jpeg store, jpeg_decode='reduced'")]
    for key, encoding, cache, mode, _, name in variants:
        runs[key] = ours_fn(stores[encoding], args.batch, args.size, args.workers, args.device, cache, mode)
        names[key] = f"bridgedfast MixedLoader ({name})"
    if not cuda and args.workers > 1:  # the loader's CPU default (a producer per worker) against one producer
        runs["jpeg-1p"] = ours_fn(stores["jpeg"], args.batch, args.size, args.workers, args.device, producers=1)
        names["jpeg-1p"] = f"the same, one producer thread running {args.workers} OpenMP threads per batch"
    runs["bound"] = augment_only_fn(stores["raw"], args.batch, args.size, args.device)
    names["bound"] = "TrainAugment alone on in-memory batches (upper bound; CPU: output reused)"
    if not cuda:
        runs["decode"] = decode_only_fn(stores["jpeg-plain"], args.workers)
        names["decode"] = f"whole-image JPEG decoding alone, {args.workers} threads (original bytes)"
        from bridgedfast.ops import decode_jpegs_compiled

        if decode_jpegs_compiled():
            for own in (True, False):
                runs[f"crops-{own}"] = crop_decode_fn(stores["jpeg"], args.batch, args.size, args.workers, own)
            names["crops-True"] = "decode op, crops' MCUs, its own Huffman decoder"
            names["crops-False"] = "decode op, crops' MCUs, libjpeg-turbo's Huffman decoder"
    speed = interleaved(runs, args.rounds)
    result = {key: Result(names[key], speed[key]) for key in runs}
    rows = []
    for key, _, _, _, suffix, _ in variants:
        title = f"loader: store -> augmented batch {args.batch}x3x{args.size}x{args.size}, {suffix}"
        rows += compare(title, result[key], [result["peer"]], args.device)
    rows += compare("loader efficiency: raw-store loader vs its augmentation alone", result["raw"], [result["bound"]],
                    args.device)
    if "jpeg-1p" in result:
        rows += compare(f"jpeg store (restart markers): {args.workers} producer threads vs one", result["jpeg"],
                        [result["jpeg-1p"]], args.device)
    if not cuda:
        rows += compare(f"JPEG decoding alone ({bpp:.1f} bits/pixel) vs the whole peer loader", result["decode"],
                        [result["peer"]], args.device)
        if "crops-True" in result:
            rows += compare("crop decoding alone, restart-marked store: Huffman decoders", result["crops-True"],
                            [result["crops-False"]], args.device)
    print("saved", save("loader", rows, args.device))


if __name__ == "__main__":
    main()
