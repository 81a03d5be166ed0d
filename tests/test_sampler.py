"""MixedSampler: proportions, every image once per epoch, determinism, rank disjointness."""
from collections import Counter

import numpy as np
import pytest

from bridgedfast.data import MixedSampler


def pairs(plan):
    return [(bool(s), int(i)) for is_syn, index in plan for s, i in zip(is_syn, index)]


@pytest.mark.parametrize("n_real, n_syn", [(23, 17), (40, 0), (0, 9)])
def test_proportional_sees_every_image_once_per_epoch(n_real, n_syn):
    frac = None if n_real and n_syn else (0.0 if n_syn == 0 else 1.0)
    s = MixedSampler(n_real, n_syn, batch_size=5, synthetic_fraction=frac, drop_last=False, seed=3)
    seen = pairs(s.plan())
    assert sorted(seen) == sorted([(False, i) for i in range(n_real)] + [(True, i) for i in range(n_syn)])
    assert len(s) == -(-(n_real + n_syn) // 5) == len(s.plan())
    assert all(len(index) == 5 for _, index in s.plan()[:-1])


def test_proportional_share_matches_store_sizes():
    s = MixedSampler(3000, 1000, batch_size=100, seed=0)
    counts = [int(is_syn.sum()) for is_syn, _ in s.plan()]
    assert sum(counts) == 1000 and len(counts) == 40
    assert 15 < np.mean(counts[:20]) < 35  # ~25% of each batch, varying from batch to batch
    assert len(set(counts)) > 1


def test_single_store_modes_ignore_the_other_store():
    real_only = pairs(MixedSampler(10, 7, batch_size=5, synthetic_fraction=0.0).plan())
    syn_only = pairs(MixedSampler(10, 7, batch_size=5, synthetic_fraction=1.0, drop_last=False).plan())
    assert sorted(real_only) == [(False, i) for i in range(10)]
    assert sorted(syn_only) == [(True, i) for i in range(7)]


def test_fixed_fraction_holds_in_every_batch():
    s = MixedSampler(50, 8, batch_size=8, synthetic_fraction=0.25, seed=1)
    plan = s.plan()
    assert len(s) == len(plan) == 50 // 6
    assert all(int(is_syn.sum()) == 2 and len(is_syn) == 8 for is_syn, _ in plan)
    seen = pairs(plan)
    real = [i for syn, i in seen if not syn]
    syn = [i for syn, i in seen if syn]
    assert len(set(real)) == len(real) == 48  # one pass over the real store, no repeats
    # 16 synthetic draws from 8 images: two full shuffles, each image exactly twice
    assert Counter(syn) == {i: 2 for i in range(8)}
    assert any(is_syn[0] for is_syn, _ in plan) and any(not is_syn[0] for is_syn, _ in plan)  # interleaved


def test_fixed_fraction_last_partial_batch_keeps_the_ratio():
    s = MixedSampler(14, 20, batch_size=8, synthetic_fraction=0.25, drop_last=False)
    plan = s.plan()
    assert [len(i) for _, i in plan] == [8, 8, 3]  # 6+2, 6+2, then 2 real + round(2*2/6)=1 synthetic
    assert [int(m.sum()) for m, _ in plan] == [2, 2, 1]


def test_deterministic_per_seed_and_epoch():
    def run(seed, epoch):
        s = MixedSampler(30, 12, batch_size=4, synthetic_fraction=0.5, seed=seed)
        s.set_epoch(epoch)
        return pairs(s.plan())

    assert run(0, 0) == run(0, 0)
    assert run(0, 0) != run(1, 0)
    assert run(0, 0) != run(0, 1)
    assert run(5, 2) == run(5, 2)


@pytest.mark.parametrize("frac", [None, 0.25, 1.0])
def test_ranks_are_disjoint_and_equal_length(frac):
    world = 3
    plans = []
    for rank in range(world):
        s = MixedSampler(50, 22, batch_size=4, synthetic_fraction=frac, rank=rank, world_size=world, seed=7)
        s.set_epoch(2)
        plans.append(s.plan())
    assert len({len(p) for p in plans}) == 1
    per_rank = [pairs(p) for p in plans]
    if frac == 0.25:  # synthetic images may repeat across cycles, but never across ranks
        for store in (False, True):
            sets = [{i for s, i in r if s == store} for r in per_rank]
            assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    else:
        everything = [x for r in per_rank for x in r]
        assert len(everything) == len(set(everything))
        if frac is None:
            assert len(everything) == (72 // world) // 4 * 4 * world


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(batch_size=0), "batch_size must be >= 1"),
        (dict(batch_size=4, rank=2, world_size=2), "rank must be in"),
        (dict(batch_size=4, synthetic_fraction=1.5), r"synthetic_fraction must be None or in \[0, 1\]"),
        (dict(batch_size=4, synthetic_fraction=0.1), "gives 0 synthetic images per batch"),
        (dict(batch_size=4, seed=-1), "seed must be >= 0"),
    ],
)
def test_sampler_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MixedSampler(10, 10, **kwargs)


def test_sampler_rejects_empty_selection():
    with pytest.raises(ValueError, match="nothing to sample"):
        MixedSampler(0, 5, batch_size=2, synthetic_fraction=0.0)
    with pytest.raises(ValueError, match="needs at least world_size"):
        MixedSampler(10, 0, batch_size=4, synthetic_fraction=0.5)
