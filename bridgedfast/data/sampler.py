"""MixedSampler: which (store, image) pairs make up each batch of an epoch.

Three modes, all deterministic in (seed, epoch) and split disjointly across DDP ranks:
  * proportional (synthetic_fraction=None): one shuffle of the union of both stores, so each
    store contributes in proportion to its size and every image is seen once per epoch;
  * single store (fraction 0.0 = real only, 1.0 = synthetic only, or a store left out);
  * fixed fraction 0 < f < 1: every batch holds round(f * batch_size) synthetic images. An epoch
    is one pass over the real images; the synthetic stream runs through fresh shuffles of the
    synthetic store as often as the epoch needs.
Every rank computes the same global shuffle and takes a disjoint slice of it (the tail that does
not divide by world_size is dropped, a different one each epoch), so ranks never share an image
and always have the same number of batches.
"""
from __future__ import annotations

import math
from typing import Iterator

import numpy as np

from ..seeds import batch_seed, sampler_rng

__all__ = ["MixedSampler", "batch_seed"]

# Stream tags of the sampler's seed keys (batch_seed uses STREAM_BATCH = 4).
_UNION, _REAL, _SYNTHETIC, _POSITIONS = 0, 1, 2, 3


class MixedSampler:
    """Plans batches as (is_synthetic bool[B], index int64[B]) pairs; `len()` = batches per epoch."""

    def __init__(
        self,
        num_real: int,
        num_synthetic: int = 0,
        *,
        batch_size: int,
        synthetic_fraction: float | None = None,
        seed: int = 0,
        drop_last: bool = True,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size) with world_size >= 1, got rank={rank}, world_size={world_size}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if num_real < 0 or num_synthetic < 0:
            raise ValueError(f"store sizes must be >= 0, got {num_real} and {num_synthetic}")
        if synthetic_fraction is not None and not 0.0 <= synthetic_fraction <= 1.0:
            raise ValueError(f"synthetic_fraction must be None or in [0, 1], got {synthetic_fraction}")
        self.num_real, self.num_synthetic = int(num_real), int(num_synthetic)
        self.batch_size, self.seed, self.drop_last = batch_size, seed, drop_last
        self.rank, self.world_size, self.shuffle = rank, world_size, shuffle
        self.synthetic_fraction = synthetic_fraction
        self.epoch = 0
        self.synthetic_per_batch: int | None = None
        if synthetic_fraction is not None and 0.0 < synthetic_fraction < 1.0:
            k = self.synthetic_per_batch_for(synthetic_fraction, batch_size)
            if not 0 < k < batch_size:
                raise ValueError(
                    f"synthetic_fraction={synthetic_fraction} with batch_size={batch_size} gives {k} synthetic images "
                    "per batch; use 0.0 or 1.0 for a single store, or a larger batch"
                )
            if num_real < world_size or num_synthetic < world_size:
                raise ValueError(
                    f"a mixed batch needs at least world_size={world_size} real and synthetic images, "
                    f"got {num_real} real and {num_synthetic} synthetic"
                )
            self.synthetic_per_batch = k
        elif self._per_rank(self._union_size()) == 0:
            raise ValueError(
                f"nothing to sample: {self._union_size()} images for world_size={world_size} "
                f"(real={num_real}, synthetic={num_synthetic}, synthetic_fraction={synthetic_fraction})"
            )

    @staticmethod
    def synthetic_per_batch_for(fraction: float, batch_size: int) -> int:
        """Synthetic images in each batch of `batch_size` for a fixed fraction 0 < f < 1 (valid
        when 0 < result < batch_size)."""
        return round(fraction * batch_size)

    def set_epoch(self, epoch: int) -> None:
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def _union_size(self) -> int:
        f = self.synthetic_fraction
        return (self.num_real if f != 1.0 else 0) + (self.num_synthetic if f != 0.0 else 0)

    def _per_rank(self, n: int) -> int:
        return n // self.world_size

    def _rank_slice(self, n: int, *key: int) -> np.ndarray:
        """This rank's disjoint share of a shuffle of range(n), equal in size on every rank."""
        order = sampler_rng(self.seed, self.epoch, *key).permutation(n) if self.shuffle else np.arange(n)
        return order[: self._per_rank(n) * self.world_size][self.rank :: self.world_size]

    def __len__(self) -> int:
        if self.synthetic_per_batch is None:
            samples, per_batch = self._per_rank(self._union_size()), self.batch_size
        else:
            samples, per_batch = self._per_rank(self.num_real), self.batch_size - self.synthetic_per_batch
        return samples // per_batch if self.drop_last else math.ceil(samples / per_batch)

    def plan(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """This epoch's batches for this rank: (is_synthetic bool[B], index int64[B]) each."""
        if self.synthetic_per_batch is None:
            return self._plan_union()
        return self._plan_fixed(self.synthetic_per_batch)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return iter(self.plan())

    def _plan_union(self) -> list[tuple[np.ndarray, np.ndarray]]:
        f = self.synthetic_fraction
        n_real = self.num_real if f != 1.0 else 0
        n_syn = self.num_synthetic if f != 0.0 else 0
        ids = self._rank_slice(n_real + n_syn, _UNION)
        is_syn = ids >= n_real
        index = np.where(is_syn, ids - n_real, ids).astype(np.int64)
        b = self.batch_size
        return [(is_syn[s : s + b], index[s : s + b]) for s in range(0, len(self) * b, b)]

    def _synthetic_stream(self, need: int) -> np.ndarray:
        """This rank's first `need` synthetic indices: its disjoint slices of as many fresh
        shuffles of the synthetic store as it takes (all drawn at once: a tiny synthetic store
        may need thousands of passes per epoch)."""
        n, per = self.num_synthetic, self._per_rank(self.num_synthetic)
        cycles = -(-need // per)
        if self.shuffle:
            orders = sampler_rng(self.seed, self.epoch, _SYNTHETIC).random((cycles, n)).argsort(axis=1, kind="stable")
        else:
            orders = np.broadcast_to(np.arange(n), (cycles, n))
        return orders[:, : per * self.world_size][:, self.rank :: self.world_size].reshape(-1)[:need].astype(np.int64)

    def _plan_fixed(self, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        real_per_batch = self.batch_size - k
        real = self._rank_slice(self.num_real, _REAL).astype(np.int64)
        batches = len(self)
        real_counts = [min(real_per_batch, len(real) - i * real_per_batch) for i in range(batches)]
        syn_counts = [k if r == real_per_batch else round(r * k / real_per_batch) for r in real_counts]
        synthetic = self._synthetic_stream(sum(syn_counts))
        positions = sampler_rng(self.seed, self.epoch, _POSITIONS, self.rank)
        plan, r0, s0 = [], 0, 0
        for r, s in zip(real_counts, syn_counts):
            index = np.concatenate([real[r0 : r0 + r], synthetic[s0 : s0 + s]])
            is_syn = np.concatenate([np.zeros(r, bool), np.ones(s, bool)])
            # Interleave, so a partner-by-reversal (Mixup) is not always real x synthetic.
            order = positions.permutation(r + s) if self.shuffle else np.arange(r + s)
            plan.append((is_syn[order], index[order]))
            r0, s0 = r0 + r, s0 + s
        return plan
