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

from ..data.subsets import few_shot_split, open_subset, write_subset
from ..distributed import DistInfo, barrier
from ..packed import PackedImages

if TYPE_CHECKING:
    from ..augment import EvalAugment, Mixup, TrainAugment
    from ..data import ImageStore, MixedLoader
    from .config import StageConfig, TrainConfig

__all__ = ["RunData", "open_store", "write_subset", "open_subset", "check_classes", "check_class_counts",
           "IMBALANCE_WARN_RATIO", "synthetic_prefix",
           "generated_per_class", "make_train_loader",
           "make_train_augment", "make_eval_augment", "make_mixup", "iterate_eval"]


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


def synthetic_prefix(store: ImageStore, per_class: int) -> ImageStore:
    """The images of a generated store with image_index < per_class, read in place (no copy).
    Refused when the generation (its manifest) made fewer than per_class images per class."""
    from ..data.subsets import StoreSubset, image_index_prefix

    made = generated_per_class(store.path)
    if made is not None and made < per_class:
        raise ValueError(f"synthetic-per-class {per_class}: {str(store.path)!r} was generated with {made} images per "
                         "class; generate more (per_class only grows) or ask for fewer")
    try:
        indices = image_index_prefix(store, per_class)
    except ValueError as exc:
        raise ValueError(f"synthetic-per-class: {exc}") from None
    return StoreSubset(store, indices)


def generated_per_class(path: str | Path) -> int | None:
    """Images per class of the generation behind a store: its generation.json (or, for a
    filtered store, the one it was filtered from, as filter.json records); None if unknown."""
    import json

    for name, key in (("generation.json", ("config", "per_class")), ("filter.json", ("source_per_class",))):
        file = Path(path) / name
        if file.is_file():
            value = json.loads(file.read_text())
            for k in key:
                value = value.get(k) if isinstance(value, dict) else None
            return value if isinstance(value, int) else None
    return None


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


#: check_class_counts warns when the fullest class holds more than this many times the images
#: of the emptiest (non-empty) one.
IMBALANCE_WARN_RATIO = 4.0


def check_class_counts(classes: Sequence[str], labels: torch.Tensor, what: str = "synthetic store") -> list[int]:
    """Images per class of a store (`labels` index `classes`): a class with no image is an error
    naming it (an interrupted class-major generation, a hand-built store), and counts that differ
    by more than IMBALANCE_WARN_RATIO (max / min) are warned about. Returns the counts."""
    import warnings

    counts = torch.bincount(labels.to(torch.int64), minlength=len(classes)).tolist()[:len(classes)] if len(labels) \
        else [0] * len(classes)
    empty = [c for c, n in zip(classes, counts) if n == 0]
    if empty:
        shown = ", ".join(repr(n) for n in empty[:5]) + (f" (+{len(empty) - 5} more)" if len(empty) > 5 else "")
        raise ValueError(f"{what} holds no images of classes {shown} ({len(empty)} of {len(classes)} classes empty: "
                         "an interrupted generation? re-run it to finish the store)")
    if counts and max(counts) > IMBALANCE_WARN_RATIO * min(counts):
        hi, lo = max(range(len(counts)), key=counts.__getitem__), min(range(len(counts)), key=counts.__getitem__)
        warnings.warn(f"{what}: unequal images per class: {classes[hi]!r} has {counts[hi]}, {classes[lo]!r} has "
                      f"{counts[lo]} (more than {IMBALANCE_WARN_RATIO:g}x apart)", RuntimeWarning, stacklevel=2)
    return counts


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


class RunData:
    """The stores of a run, matched by class, and which real images it trains and tests on."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.real_train = open_store(cfg.real_train, "--real-train")
        self.real_test = open_store(cfg.real_test, "--real-test")
        self.classes = list(self.real_train.classes)
        if list(self.real_test.classes) != self.classes:
            raise ValueError(f"--real-test classes differ from --real-train classes ({len(self.real_test.classes)} "
                             f"vs {len(self.classes)}; they must be the same names in the same order)")
        self.synthetic = None
        if cfg.mode != "vanilla":
            self.synthetic = open_store(cfg.synthetic, "--synthetic")
            check_classes(self.classes, self.synthetic.classes)
            if cfg.synthetic_per_class is not None:
                self.synthetic = synthetic_prefix(self.synthetic, cfg.synthetic_per_class)
            check_class_counts(self.synthetic.classes, self.synthetic.labels, f"--synthetic store {str(cfg.synthetic)!r}")
        if cfg.shots is not None:
            self.train_indices = few_shot_split(self.real_train.labels, cfg.shots, cfg.split_seed, self.classes)
        else:
            self.train_indices = torch.arange(len(self.real_train))
        self.test_indices = torch.arange(len(self.real_test))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def sizes(self) -> dict[str, int | None]:
        """The stores' sizes (a resumed run must see the same)."""
        return {"real_train": len(self.real_train), "real_test": len(self.real_test),
                "synthetic": None if self.synthetic is None else len(self.synthetic)}

    def split_record(self) -> dict | None:
        """What split.json holds for a few-shot run (None otherwise)."""
        if self.cfg.shots is None:
            return None
        labels = self.real_train.labels[self.train_indices]
        return {
            "shots": self.cfg.shots, "split_seed": self.cfg.split_seed, "store": str(Path(self.cfg.real_train).resolve()),
            "indices": self.train_indices.tolist(),
            "per_class": {name: self.train_indices[labels == c].tolist() for c, name in enumerate(self.classes)},
        }

    def real_store(self, folder: Path, info: DistInfo) -> ImageStore:
        """The real training images the loader reads: the store itself, or the few-shot images
        as a store of their own in `folder` (written by rank 0)."""
        if self.cfg.shots is None:
            return self.real_train
        path = folder / "real_train_subset"
        if info.is_main:
            write_subset(self.real_train, self.train_indices, path)
        barrier(info)
        return open_subset(path, len(self.train_indices))
