"""Stores, class matching, few-shot subsets and the loaders the trainer uses.

Everything here goes through the public `bridgedfast.data` / `bridgedfast.augment` contracts
(DESIGN.md), so the trainer never touches a store's internals."""
from __future__ import annotations

import concurrent.futures
import re
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from ..packed import PackedImages

__all__ = ["open_store", "match_classes", "make_train_loader", "make_train_augment", "make_eval_augment", "iterate_eval"]


def open_store(path: str | Path, what: str):
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


def write_subset(store: Any, indices: torch.Tensor, path: Path) -> None:
    """Copies store images `indices` (in order) into a new store at `path`; resumes a partial copy."""
    from ..data import ImageStoreWriter

    with ImageStoreWriter(path, list(store.classes)) as writer:
        for i in indices.tolist()[len(writer):]:
            writer.add(store.image(i), int(store.labels[i]), {"source_index": i})


def open_subset(path: Path, expected: int) -> Any:
    from ..data import ImageStore

    store = ImageStore(path)
    if len(store) != expected:
        raise ValueError(f"{path} holds {len(store)} images, the few-shot split {expected}; delete it to rebuild")
    return store


def _normalise(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name).strip().lower()


def match_classes(real: Sequence[str], synthetic: Sequence[str]) -> torch.Tensor | None:
    """Maps synthetic labels to real labels by class name (exact, else ignoring case, spaces,
    '_' and '-'). None when the synthetic store already uses the real labels. Every real class
    needs synthetic images and no synthetic class may be unknown: both are errors naming them."""
    real, synthetic = list(real), list(synthetic)
    if real == synthetic:
        return None
    exact = {name: i for i, name in enumerate(real)}
    loose = {_normalise(name): i for i, name in enumerate(real)}
    mapping, unknown = [], []
    for name in synthetic:
        idx = exact.get(name, loose.get(_normalise(name)))
        if idx is None:
            unknown.append(name)
        mapping.append(-1 if idx is None else idx)
    missing = [name for i, name in enumerate(real) if i not in mapping]

    def few(names: list[str]) -> str:
        return ", ".join(repr(n) for n in names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")

    if unknown:
        raise ValueError(f"synthetic store has classes that the real store lacks: {few(unknown)}")
    if missing:
        raise ValueError(f"synthetic store has no images for real classes {few(missing)}")
    if len(set(mapping)) != len(mapping):
        raise ValueError("synthetic store has two classes that map to the same real class by name")
    return torch.tensor(mapping, dtype=torch.int64)


def make_train_augment(image_size: int, *, scale: tuple[float, float], ratio: tuple[float, float], hflip: float,
                       mean: Sequence[float], std: Sequence[float]) -> Any:
    from ..augment import TrainAugment

    return TrainAugment(image_size, scale=tuple(scale), ratio=tuple(ratio), hflip=hflip, mean=tuple(mean), std=tuple(std))


def make_eval_augment(image_size: int, *, crop_pct: float, mean: Sequence[float], std: Sequence[float]) -> Any:
    from ..augment import EvalAugment

    return EvalAugment(image_size, resize=int(round(image_size / crop_pct)), mean=tuple(mean), std=tuple(std))


def make_mixup(stage: Any, num_classes: int) -> Any:
    from ..augment import Mixup

    return Mixup(
        mixup_alpha=stage.mixup_alpha, cutmix_alpha=stage.cutmix_alpha, prob=stage.mixup_prob,
        switch_prob=stage.mixup_switch_prob, mode="batch", label_smoothing=stage.label_smoothing, num_classes=num_classes,
    )


def make_train_loader(real: Any, synthetic: Any | None, *, batch_size: int, synthetic_fraction: float | None,
                      augment: Any, device: torch.device, seed: int, rank: int, world_size: int,
                      workers: int | None) -> Any:
    """A MixedLoader yielding (images, targets, is_synthetic). `batch_size` is per rank."""
    from ..data import MixedLoader

    kwargs: dict[str, Any] = {}
    if workers is not None:
        kwargs["workers"] = workers
    return MixedLoader(real, synthetic, batch_size=batch_size, synthetic_fraction=synthetic_fraction, augment=augment,
                       device=device.type, seed=seed, drop_last=True, rank=rank, world_size=world_size, **kwargs)


def iterate_eval(store: Any, indices: torch.Tensor, *, batch_size: int, augment: Any, device: torch.device,
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
