"""Subsets of image stores: the seeded few-shot pick of K images per class, a stratified
train/test split of a store, and the copies of a subset that a loader reads.

The seeds are frozen (stored run folders reproduce their splits from them)."""
from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Sequence

import torch

from ..seeds import derive_seed
from .format import ENCODING_NAMES, HEADER_FILE
from .store import ImageStore, ImageStoreWriter

__all__ = ["few_shot_split", "split_store", "is_store", "write_subset", "open_subset", "StoreSubset",
           "image_index_prefix"]


def few_shot_split(labels: torch.Tensor, k: int, seed: int, classes: Sequence[str] | None = None) -> torch.Tensor:
    """Indices (int64, sorted) of exactly `k` images per class, drawn with a seeded generator.

    Each class draws from its own generator seeded by (seed, class index), so a class's pick
    depends only on the seed and that class's images. `classes` names the classes in errors
    and fixes their number (default max(labels) + 1)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"shots must be a positive integer, got {k!r}")
    labels = torch.as_tensor(labels).to("cpu", torch.int64)
    if labels.dim() != 1 or labels.numel() == 0:
        raise ValueError(f"few_shot_split: labels must be a non-empty 1-D tensor, got shape {tuple(labels.shape)}")
    num_classes = len(classes) if classes is not None else int(labels.max()) + 1
    counts = torch.bincount(labels, minlength=num_classes)
    chosen = []
    for c in range(num_classes):
        name = classes[c] if classes is not None else str(c)
        if int(counts[c]) < k:
            raise ValueError(f"shots {k} is larger than class {name!r}, which has only {int(counts[c])} images")
        members = torch.nonzero(labels == c).flatten()
        g = torch.Generator().manual_seed(derive_seed("few-shot", seed, c))
        chosen.append(members[torch.randperm(members.numel(), generator=g)[:k]])
    return torch.cat(chosen).sort().values


def is_store(path: str | Path) -> bool:
    """Whether `path` is an image store folder (it holds a store header)."""
    return (Path(path) / HEADER_FILE).is_file()


def split_store(src: ImageStore, train_out: Path, test_out: Path, *, test_fraction: float, seed: int) -> None:
    """Copies a store's images (encoded bytes, no re-encoding) into a stratified train/test pair.

    Each output is written under a temporary name and renamed when complete, so one that exists
    is a finished split of an earlier, interrupted call with the same arguments: it is kept."""
    labels = src.labels
    g = torch.Generator().manual_seed(seed)
    test_idx: list[int] = []
    train_idx: list[int] = []
    for c, name in enumerate(src.classes):
        idx = torch.nonzero(labels == c).flatten()
        if len(idx) < 2:
            raise ValueError(f"class {name!r} has {len(idx)} image(s): at least 2 are needed to hold some out for testing")
        idx = idx[torch.randperm(len(idx), generator=g)].tolist()
        n_test = min(len(idx) - 1, max(1, round(len(idx) * test_fraction)))
        test_idx += sorted(idx[:n_test])
        train_idx += sorted(idx[n_test:])
    records = src.records
    for out, indices in ((train_out, train_idx), (test_out, test_idx)):
        if out.exists():
            if len(ImageStore(out)) != len(indices):
                raise ValueError(f"{out} holds {len(ImageStore(out))} images, the split {len(indices)}: delete it to redo the split")
            continue
        tmp = out.with_name(out.name + ".partial")
        if tmp.exists():
            shutil.rmtree(tmp)
        with ImageStoreWriter(tmp, src.classes) as writer:
            for i in indices:
                r = records[i]
                writer.add_encoded(
                    src.encoded(i).numpy().tobytes(), int(r["height"]), int(r["width"]), int(r["label"]),
                    src.meta(i) or None, encoding=ENCODING_NAMES[int(r["encoding"])],
                )
        tmp.rename(out)


def write_subset(store: ImageStore, indices: torch.Tensor, path: Path) -> None:
    """Copies store images `indices` (in order) into a new store at `path`; resumes a partial copy."""
    with ImageStoreWriter(path, list(store.classes)) as writer:
        for i in indices.tolist()[len(writer):]:
            writer.add(store.image(i), int(store.labels[i]), {"source_index": i})


def open_subset(path: Path, expected: int) -> ImageStore:
    """The store `write_subset` wrote, checked to hold `expected` images."""
    store = ImageStore(path)
    if len(store) != expected:
        raise ValueError(f"{path} holds {len(store)} images, the few-shot split {expected}; delete it to rebuild")
    return store


class StoreSubset(ImageStore):
    """Images `indices` (in that order) of an open store, read in place: the same memory maps,
    no copy. Everything that reads a store (`image`, `meta`, `labels`, a MixedLoader) reads the
    subset as if it were a store of its own; `base` is the whole store."""

    def __init__(self, store: ImageStore, indices: Sequence[int] | torch.Tensor) -> None:
        idx = torch.as_tensor(indices, dtype=torch.int64).flatten()
        n = len(store)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
            raise IndexError(f"subset indices must lie in [0, {n}) for {store.path}")
        self.base, self.indices = store, idx
        self.path, self.classes, self.encoding = store.path, list(store.classes), store.encoding
        self._records = store.records[idx.numpy()]
        self._count = len(self._records)
        self._shards, self._shard_need, self._meta = store._shards, store._shard_need, store._meta
        self.labels = store.labels[idx]
        # Checked reads as the base store's (verify_reads): the subset's own images, shard by shard.
        self.verify_reads, self._verify_lock = store.verify_reads, threading.Lock()
        self._verified = [False] * len(self._shards)

    def __getstate__(self) -> dict:
        return {"path": str(self.path), "indices": self.indices.tolist(), "verify_reads": self.verify_reads}

    def __setstate__(self, state: dict) -> None:
        self.__init__(ImageStore(state["path"], verify_reads=state.get("verify_reads", False)), state["indices"])

    def refresh(self) -> "StoreSubset":
        return self

    def __repr__(self) -> str:
        return f"StoreSubset({str(self.path)!r}, images={len(self)} of {len(self.base)})"


def image_index_prefix(store: ImageStore, per_class: int) -> torch.Tensor:
    """Indices (sorted) of the images whose metadata says `image_index` < per_class: the images
    a generation of `per_class` images per class makes (image (c, i)'s seed does not depend on
    per_class), taken from a larger one. ValueError for images without an image_index."""
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per_class must be a positive integer, got {per_class!r}")
    keep = []
    for i in range(len(store)):
        index = store.meta(i).get("image_index")
        if not isinstance(index, int):
            raise ValueError(f"{store.path}: image {i} has no image_index in its metadata: a prefix of images per class "
                             "needs a store written by `bridgedfast generate`")
        if index < per_class:
            keep.append(i)
    return torch.tensor(keep, dtype=torch.int64)
