"""Training throughput: a timm model's SGD steps fed by our MixedLoader (store -> fused augment on
the training device) vs the same loop fed by torchvision ImageFolder + DataLoader (JPEG files,
transforms.v2 RandomResizedCrop antialias + flip + ToDtype + Normalize, the same workers).

  python benchmarks/bench_train.py [--device cpu|cuda] [--model resnet50] [--batch 16] [--size 224]
                                   [--workers 2] [--amp bf16|fp16|none] [--images 512]

On CUDA the loop uses AMP (bf16 by default) and channels_last for both sides. Training steps
are timed in alternating blocks (ours, theirs, ours, ...; median step), so a shared machine's
changing load falls on both alike. Besides the training rows it prints the loaders alone (images/s with
no model), which shows how far each is from being the bottleneck.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Result, compare, save, throughput  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def make_dataset(root: Path, images: int, classes: int = 8, size_range: tuple[int, int] = (256, 400)) -> tuple[Path, Path]:
    """A folder of JPEG class sub-folders and the same images packed into a store (raw)."""
    from bridgedfast.data import pack
    from bridgedfast.testing import image_folder

    folder = root / "images"
    if not folder.exists():
        image_folder(folder, [f"class{c:02d}" for c in range(classes)], per_class=max(1, images // classes),
                     size_range=size_range, seed=0, fmt="jpg")
    store = root / "store"
    if not store.exists():
        pack(folder, store)
    return folder, store


def forever(make_iter):
    while True:
        yield from make_iter()


def ours_batches(store: Path, batch: int, size: int, device: str, workers: int, channels_last: bool):
    from bridgedfast.augment import TrainAugment
    from bridgedfast.data import ImageStore, MixedLoader

    loader = MixedLoader(ImageStore(store), batch_size=batch, augment=TrainAugment(size, mean=MEAN, std=STD,
                         channels_last=channels_last), device=device, workers=workers, seed=0)
    epoch = [0]

    def one_epoch():
        loader.set_epoch(epoch[0])
        epoch[0] += 1
        for images, targets, _ in loader:
            yield images, targets

    return forever(one_epoch)


def torchvision_batches(folder: Path, batch: int, size: int, device: str, workers: int, channels_last: bool):
    import torchvision
    from torchvision.transforms import v2

    tf = v2.Compose([v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip(), v2.ToImage(),
                     v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)])
    ds = torchvision.datasets.ImageFolder(str(folder), transform=tf)
    dl = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                                     pin_memory=device.startswith("cuda"), persistent_workers=workers > 0)

    def one_epoch():
        for images, targets in dl:
            images = images.to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            yield images, targets.to(device, non_blocking=True)

    return forever(one_epoch)


def train_step_fn(model_name: str, batches, device: str, amp: str, channels_last: bool, num_classes: int):
    """One SGD step per call on the next batch (what `throughput` times)."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model(model_name, num_classes=num_classes).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    autocast = (lambda: torch.autocast(device.split(":")[0], dtype=dtype)) if dtype else contextlib.nullcontext

    def step():
        images, targets = next(batches)
        with autocast():
            loss = torch.nn.functional.cross_entropy(model(images).float(), targets, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()

    return step


def alternating_throughput(fns: list, items: int, blocks: int, steps: int, device: str) -> list[float]:
    """Items/s of each fn (median step time), timed in alternating blocks so a shared machine's
    changing load falls on every contender alike. Each block starts with an untimed step: the
    other side's loader refills its prefetch queue meanwhile, which is not this side's cost."""
    import statistics
    import time

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    times: list[list[float]] = [[] for _ in fns]
    for _ in range(blocks):
        for k, fn in enumerate(fns):
            fn()
            for _ in range(steps):
                sync()
                start = time.perf_counter()
                fn()
                sync()
                times[k].append(time.perf_counter() - start)
    return [items / statistics.median(t) for t in times]


def loader_only_fn(batches):
    def step():
        images, _ = next(batches)
        return images

    return step


def _case(tmp: Path, images: int = 48, size: int = 64):
    return make_dataset(tmp, images, classes=4, size_range=(48, 96))


def test_train_ours(benchmark, tmp_path):
    _, store = _case(tmp_path)
    benchmark(train_step_fn("test_resnet", ours_batches(store, 8, 64, "cpu", 2, False), "cpu", "none", False, 4))


def test_train_torchvision(benchmark, tmp_path):
    folder, _ = _case(tmp_path)
    benchmark(train_step_fn("test_resnet", torchvision_batches(folder, 8, 64, "cpu", 2, False), "cpu", "none", False, 4))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--batch", type=int, default=None, help="default: 16 on CPU, 256 on CUDA")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--workers", type=int, default=2, help="loader worker threads (ours) / processes (DataLoader)")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--amp", default=None, help="bf16, fp16 or none (default: bf16 on CUDA, none on CPU)")
    ap.add_argument("--images", type=int, default=None, help="images in the generated dataset (default: 4 batches)")
    ap.add_argument("--blocks", type=int, default=3, help="alternating timing blocks per side (default: 3)")
    ap.add_argument("--steps", type=int, default=None, help="timed training steps per block (default: 2 CPU, 10 CUDA)")
    ap.add_argument("--min-run-time", type=float, default=3.0, help="seconds timed per loader-only row")
    ap.add_argument("--data", default=None, help="folder to keep the generated dataset in (default: a temp folder)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of a few seconds, not for quoting")
    args = ap.parse_args()
    if args.quick:
        args.model, args.size, args.batch, args.blocks, args.steps, args.min_run_time = "resnet18", 64, 8, 1, 1, 0.5
    torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    batch = args.batch or (256 if cuda else 16)
    amp = args.amp or ("bf16" if cuda else "none")
    channels_last = cuda
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.data) if args.data else Path(tmp)
        folder, store = make_dataset(root, args.images or 4 * batch)
        rows = []
        what = f"{args.model} training {batch}x3x{args.size}x{args.size} (amp {amp}, channels_last {channels_last})"
        steps = [train_step_fn(args.model, ours_batches(store, batch, args.size, args.device, args.workers, channels_last),
                               args.device, amp, channels_last, 8),
                 train_step_fn(args.model, torchvision_batches(folder, batch, args.size, args.device, args.workers, channels_last),
                               args.device, amp, channels_last, 8)]
        ours_ips, peer_ips = alternating_throughput(steps, batch, args.blocks, args.steps or (10 if cuda else 2), args.device)
        ours = Result("bridgedfast MixedLoader + TrainAugment", ours_ips)
        peer = Result(f"torchvision ImageFolder + DataLoader ({args.workers} workers)", peer_ips)
        rows += compare(what, ours, [peer], args.device)
        ours_l = Result("bridgedfast MixedLoader + TrainAugment",
                        throughput(loader_only_fn(ours_batches(store, batch, args.size, args.device, args.workers, channels_last)),
                                   batch, min_run_time=args.min_run_time))
        peer_l = Result(f"torchvision ImageFolder + DataLoader ({args.workers} workers)",
                        throughput(loader_only_fn(torchvision_batches(folder, batch, args.size, args.device, args.workers, channels_last)),
                                   batch, min_run_time=args.min_run_time))
        rows += compare(f"loaders alone, {batch}x3x{args.size}x{args.size} batches", ours_l, [peer_l], args.device)
    print("saved", save("train", rows, args.device))


if __name__ == "__main__":
    main()
