"""Every seed the package derives, in one place.

Each formula is frozen: stored outputs (generated images, style checkpoints, run folders,
loader epochs) are reproduced and resumed from them, so none may change (tests/test_stable_keys.py
pins their values). They differ because each was fitted to its consumer:
- `seed_for`: generation, one 63-bit seed per (class, image), fed to `torch.Generator("cpu")`
  exactly as a stock diffusers call would be given it;
- `seeded_generator`: style inversion, an independent CPU generator per (seed, purpose, step...);
- `derive_seed`: training, 31-bit seeds (small enough for numpy and any consumer's arithmetic);
- `batch_seed` / `sampler_rng`: the loader, numpy `SeedSequence` streams per (seed, epoch, ...).
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import torch

__all__ = ["seed_for", "seeded_generator", "derive_seed", "head_reset_seed", "batch_seed", "sampler_rng", "STREAM_BATCH"]

# Stream tags of the loader's SeedSequence keys (the sampler's own streams use 0..3).
STREAM_BATCH = 4


def seed_for(seed: int, class_index: int, image_index: int) -> int:
    """The seed of image `image_index` of class `class_index`: a stable 63-bit hash (sha256),
    the same on every machine and Python version, fed to `torch.Generator("cpu").manual_seed`."""
    for name, value in (("seed", seed), ("class_index", class_index), ("image_index", image_index)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{name} must be an int, got {value!r}")
    digest = hashlib.sha256(f"bridgedfast-generate:{seed}:{class_index}:{image_index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def seeded_generator(seed: int, *parts: Any) -> torch.Generator:
    """A CPU generator seeded from a hash of (seed, *parts): independent streams per purpose."""
    digest = hashlib.sha256(json.dumps([int(seed), *parts]).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def derive_seed(*parts: object) -> int:
    """A 31-bit seed from the given parts (stable across runs, processes and platforms; small
    enough for any consumer's seed arithmetic, numpy's included)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:4], "little") & (2**31 - 1)


def head_reset_seed(seed: int) -> int:
    """The seed `reset_classifier` draws the bridged++ head from before stage 2."""
    return derive_seed("head-reset", seed)


def sampler_rng(*key: int) -> np.random.Generator:
    """The loader's numpy generator for a key such as (seed, epoch, stream[, rank])."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(list(key))))


def batch_seed(seed: int, epoch: int, rank: int, batch: int) -> int:
    """The seed of batch `batch`'s augmentation generator: a function of these four numbers only,
    so prefetching, worker counts and timing never change a batch."""
    state = np.random.SeedSequence([seed, epoch, rank, batch, STREAM_BATCH]).generate_state(1, np.uint64)[0]
    return int(state >> np.uint64(1))
