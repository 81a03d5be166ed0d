"""Seeded few-shot splits and seed derivation."""
from __future__ import annotations

import hashlib
from typing import Sequence

import torch

__all__ = ["derive_seed", "few_shot_split"]


def derive_seed(*parts: object) -> int:
    """A 31-bit seed from the given parts (stable across runs, processes and platforms; small
    enough for any consumer's seed arithmetic, numpy's included)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:4], "little") & (2**31 - 1)


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
