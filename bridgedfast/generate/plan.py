"""Which image gets which seed, and how the (class, image) space is cut into batches and ranks.

The batch grid is fixed by the full work list and the batch size only, so a resumed or a
multi-rank run computes every image in exactly the same batch as one uninterrupted process.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..seeds import seed_for

Item = tuple[int, int]  # (class_index, image_index)

__all__ = ["Item", "GridBatch", "seed_for", "work_items", "grid", "pending", "rank_rounds"]


@dataclass(frozen=True)
class GridBatch:
    index: int              # position on the grid (global, 0-based)
    items: tuple[Item, ...]


def work_items(num_classes: int, per_class: int) -> list[Item]:
    """Canonical order: class-major, then image index."""
    return [(c, i) for c in range(num_classes) for i in range(per_class)]


def grid(items: list[Item], batch_size: int) -> list[GridBatch]:
    return [GridBatch(k, tuple(items[s : s + batch_size])) for k, s in enumerate(range(0, len(items), batch_size))]


def pending(batches: list[GridBatch], done: set[Item]) -> list[GridBatch]:
    """Grid batches with at least one image not yet committed (they are recomputed whole, so
    their images come out bit-for-bit as in an uninterrupted run; only missing ones are written)."""
    return [b for b in batches if any(item not in done for item in b.items)]


def rank_rounds(batches: list[GridBatch], world_size: int) -> list[list[GridBatch | None]]:
    """Round r gives rank k the batch r*world_size + k (None when the list has run out): in each
    round rank 0 receives consecutive grid batches, so it writes them in canonical order."""
    rounds = []
    for start in range(0, len(batches), world_size):
        chunk: list[GridBatch | None] = list(batches[start : start + world_size])
        rounds.append(chunk + [None] * (world_size - len(chunk)))
    return rounds
