"""Everything the trainer reads its images through: stores, class matching, few-shot subsets,
loaders and augmentations.

It goes through the public `bridgedfast.data` / `bridgedfast.augment` contracts (DESIGN.md), so
the trainer never touches a store's internals; and it is the one seam where tests put in-memory
stand-ins for them (the trainer calls these functions through this module)."""
from __future__ import annotations

import concurrent.futures
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import torch

from ..data.subsets import open_subset, write_subset
from ..packed import PackedImages

if TYPE_CHECKING:
    from ..augment import EvalAugment, Mixup, TrainAugment
    from ..data import ImageStore, MixedLoader
    from .config import StageConfig

__all__ = ["open_store", "write_subset", "open_subset", "check_classes", "make_train_loader", "make_train_augment",
           "make_eval_augment", "make_mixup", "iterate_eval"]


def open_store(path: str | Path, what: str) -> ImageStore:
    """The ImageStore at `path`; `what` names the option in errors (e.g. '--real-train')."""
    from ..data import ImageStore

    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{what} store {str(path)!r} does not exist")
    if not p.is_dir():
        raise NotADirectoryError(f"{what} store {str(path)!r} is not a folder (pack images with `bridgedfast pack`)")
    try:
        store = ImageStore(p)
    except (FileNotFoundError, ValueError) as exc:
        raise ValueError(f"{what} store {str(path)!r} cannot be opened: {exc}") from exc
    if len(store) == 0:
        raise ValueError(f"{what} store {str(path)!r} holds no images")
    return store


def check_classes(real: Sequence[str], synthetic: Sequence[str]) -> None:
    """The synthetic store must hold images of every real class and of no other class, matched
    by exact name (the loader maps synthetic labels to the real ones by name): errors name them."""
    real_set, syn_set = set(real), set(synthetic)

    def few(names: list[str]) -> str:
        return ", ".join(repr(n) for n in names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")

    unknown = [c for c in synthetic if c not in real_set]
    if unknown:
        raise ValueError(f"synthetic store has classes that the real store lacks: {few(unknown)} "
                         "(classes are matched by exact name)")
    missing = [c for c in real if c not in syn_set]
    if missing:
        raise ValueError(f"synthetic store has no class for real classes {few(missing)} (classes are matched by exact name)")


def make_train_augment(image_size: int, *, scale: tuple[float, float], ratio: tuple[float, float], hflip: float,
                       mean: Sequence[float], std: Sequence[float], channels_last: bool = False) -> TrainAugment:
    from ..augment import TrainAugment

    return TrainAugment(image_size, scale=tuple(scale), ratio=tuple(ratio), hflip=hflip, mean=tuple(mean), std=tuple(std),
                        channels_last=channels_last)


def make_eval_augment(image_size: int, *, crop_pct: float, mean: Sequence[float], std: Sequence[float],
                      channels_last: bool = False) -> EvalAugment:
    from ..augment import EvalAugment

    return EvalAugment(image_size, resize=max(image_size, int(image_size / crop_pct)), mean=tuple(mean), std=tuple(std),
                       channels_last=channels_last)


def make_mixup(stage: StageConfig, num_classes: int, seed: int) -> Mixup:
    """bridgedfast.augment.Mixup (timm.data.Mixup's arguments), drawing from its own seeded generator."""
    from ..augment import Mixup

    return Mixup(
        mixup_alpha=stage.mixup_alpha, cutmix_alpha=stage.cutmix_alpha, prob=stage.mixup_prob,
        switch_prob=stage.mixup_switch_prob, mode="batch", label_smoothing=stage.label_smoothing,
        num_classes=num_classes, seed=seed,
    )


def make_train_loader(real: ImageStore, synthetic: ImageStore | None, *, classes: Sequence[str], batch_size: int,
                      synthetic_fraction: float | None, augment: TrainAugment, device: torch.device, seed: int, rank: int,
                      world_size: int, workers: int | None, cache_on_device: bool | str = False) -> MixedLoader:
    """A MixedLoader yielding (images, targets, is_synthetic); `batch_size` is per rank and
    targets index `classes` (stores are matched to them by name)."""
    from ..data import MixedLoader

    return MixedLoader(real, synthetic, batch_size=batch_size, synthetic_fraction=synthetic_fraction, augment=augment,
                       device=device, seed=seed, drop_last=True, rank=rank, world_size=world_size,
                       classes=list(classes), workers=workers, cache_on_device=cache_on_device)


def iterate_eval(store: ImageStore, indices: torch.Tensor, *, batch_size: int, augment: EvalAugment, device: torch.device,
                 rank: int = 0, world_size: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's share (every world_size-th index) of `indices`, in order, as eval-augmented
    batches on `device` with their labels. The next batch is read while this one computes."""
    mine = indices[rank::world_size]
    labels = store.labels
    chunks = list(mine.split(batch_size))

    def read(chunk: torch.Tensor) -> PackedImages:
        packed = PackedImages.from_images([store.image(int(i)) for i in chunk])
        return packed.pin_memory() if device.type == "cuda" else packed

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(read, chunks[0]) if chunks else None
        for k, chunk in enumerate(chunks):
            packed = pending.result()
            pending = pool.submit(read, chunks[k + 1]) if k + 1 < len(chunks) else None
            x = augment(packed.to(device, non_blocking=True), None)
            yield x, labels[chunk].to(device, non_blocking=True)
