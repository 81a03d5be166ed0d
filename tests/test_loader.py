"""MixedLoader: batches equal the augmentation applied to the stored images of the sampled
indices; targets follow class names; deterministic; prefetching and caching change nothing."""
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bridgedfast.data import ImageStore, ImageStoreWriter, MixedLoader, MixedSampler, StoreCorruptError, batch_seed
from bridgedfast.packed import PackedImages
from conftest import DEVICES

SIZE = 12


class StandInAugment:
    """Until bridgedfast.augment.TrainAugment is merged: per image, a random crop box drawn on
    the host from the generator, bilinear resize to SIZE, random flip, /255 - on the device of
    the packed data, like the real augmentation."""

    def __call__(self, packed: PackedImages, generator: torch.Generator) -> torch.Tensor:
        out = []
        for i in range(len(packed)):
            img = packed.image(i)
            h, w = img.shape[:2]
            ch = int(torch.randint(max(1, h // 2), h + 1, (), generator=generator))
            cw = int(torch.randint(max(1, w // 2), w + 1, (), generator=generator))
            top = int(torch.randint(0, h - ch + 1, (), generator=generator))
            left = int(torch.randint(0, w - cw + 1, (), generator=generator))
            flip = bool(torch.rand((), generator=generator) < 0.5)
            x = img[top : top + ch, left : left + cw].permute(2, 0, 1)[None].float()
            x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)[0] / 255
            out.append(x.flip(-1) if flip else x)
        return torch.stack(out)


def make_image(i: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    h, w = 10 + i % 7, 9 + (3 * i) % 11
    yy, xx = np.mgrid[0:h, 0:w]
    return np.clip(np.stack([yy * 20, xx * 20, yy * xx], -1) + rng.integers(0, 60, 3), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("loader")
    with ImageStoreWriter(root / "real", ["ant", "bee", "cow"], shard_bytes=2000) as w:
        for i in range(30):
            w.add(make_image(i), i % 3)
    with ImageStoreWriter(root / "syn", ["cow", "ant"], encoding="jpeg") as w:  # a subset, other order
        for i in range(11):
            w.add(make_image(100 + i), i % 2, {"class_index": i % 2, "image_index": i})
    return ImageStore(root / "real"), ImageStore(root / "syn")


def expected_batches(loader: MixedLoader, real: ImageStore, syn: ImageStore | None, epoch: int):
    """The reference: the same augmentation applied to store.image(i) read one by one."""
    augment = StandInAugment()
    sampler = loader.sampler
    sampler.set_epoch(epoch)
    to_real = {name: k for k, name in enumerate(real.classes)}
    for b, (is_syn, index) in enumerate(sampler.plan()):
        images = [(syn if s else real).image(int(i)) for s, i in zip(is_syn, index)]
        targets = [to_real[(syn if s else real).classes[(syn if s else real).label(int(i))]] for s, i in zip(is_syn, index)]
        g = torch.Generator().manual_seed(batch_seed(loader.seed, epoch, loader.rank, b))
        yield augment(PackedImages.from_images(images), g), torch.tensor(targets), torch.from_numpy(is_syn)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(synthetic_fraction=None),
        dict(synthetic_fraction=0.25),
        dict(synthetic_fraction=1.0, epoch=1),
        dict(synthetic_fraction=0.5, cache_on_device=True, prefetch=0),
        dict(synthetic_fraction=None, rank=1, world_size=2, prefetch=3, workers=1),
        dict(synthetic_fraction=0.5, prefetch=1, workers=2, producers=3),
    ],
    ids=["proportional", "fixed", "synthetic-only", "cached", "rank1", "producers"],
)
def test_batches_equal_reference_augment_of_stored_images(stores, kwargs):
    real, syn = stores
    kwargs = dict(kwargs)
    epoch = kwargs.pop("epoch", 0)
    loader = MixedLoader(real, syn, batch_size=4, augment=StandInAugment(), seed=11, **kwargs)
    loader.set_epoch(epoch)
    got = list(loader)
    want = list(expected_batches(loader, real, syn, epoch))
    assert len(got) == len(want) == len(loader) > 0
    for (x, t, s), (ex, et, es) in zip(got, want):
        assert x.shape == (4, 3, SIZE, SIZE) and x.dtype == torch.float32
        assert t.dtype == torch.int64 and s.dtype == torch.bool
        torch.testing.assert_close(x, ex, rtol=0, atol=0)
        assert torch.equal(t, et) and torch.equal(s, es)


def test_real_only_and_synthetic_only_loaders(stores):
    real, syn = stores
    real_only = MixedLoader(real, None, batch_size=5, augment=StandInAugment(), drop_last=False)
    assert len(real_only) == 6
    assert not any(bool(s.any()) for _, _, s in real_only)
    syn_only = MixedLoader(None, syn, batch_size=5, augment=StandInAugment(), classes=real.classes, drop_last=False)
    batches = list(syn_only)
    assert all(bool(s.all()) for _, _, s in batches)
    targets = torch.cat([t for _, t, _ in batches])
    assert sorted(targets.tolist()) == sorted([2, 0] * 5 + [2])  # cow -> 2, ant -> 0 in the real class list
    # Without a class list a synthetic-only loader uses the synthetic store's own classes.
    own = MixedLoader(None, syn, batch_size=11, augment=StandInAugment())
    assert own.classes == ["cow", "ant"] and sorted(next(iter(own))[1].tolist()) == [0] * 6 + [1] * 5


def test_deterministic_and_independent_of_prefetch(stores):
    real, syn = stores
    runs = []
    for prefetch, workers, producers in ((0, 1, None), (3, 2, None), (3, 2, 1), (2, 4, 4)):
        loader = MixedLoader(real, syn, batch_size=6, synthetic_fraction=0.5, augment=StandInAugment(), seed=5,
                             prefetch=prefetch, workers=workers, producers=producers)
        assert loader.producers == (producers or (1 if prefetch == 0 else workers))
        loader.set_epoch(3)
        runs.append(list(loader))
    assert len({len(run) for run in runs}) == 1
    for run in runs[1:]:
        for (a, ta, sa), (b, tb, sb) in zip(runs[0], run):
            assert torch.equal(a, b) and torch.equal(ta, tb) and torch.equal(sa, sb)
    other = MixedLoader(real, syn, batch_size=6, synthetic_fraction=0.5, augment=StandInAugment(), seed=6)
    other.set_epoch(3)
    assert not torch.equal(next(iter(other))[0], runs[0][0][0])


def test_ranks_see_disjoint_images(stores):
    real, syn = stores
    seen = []
    for rank in range(2):
        loader = MixedLoader(real, syn, batch_size=4, augment=StandInAugment(), rank=rank, world_size=2, seed=1)
        plan = loader.sampler.plan()
        seen.append({(bool(s), int(i)) for is_syn, index in plan for s, i in zip(is_syn, index)})
        assert sum(len(i) for _, i in plan) == len(list(loader)) * 4
    assert not seen[0] & seen[1]


def test_errors_from_the_augment_surface_and_early_break_stops_the_thread(stores):
    real, syn = stores

    def broken(packed, generator):
        raise RuntimeError("augment exploded")

    with pytest.raises(RuntimeError, match="augment exploded"):
        list(MixedLoader(real, syn, batch_size=4, augment=broken))
    it = iter(MixedLoader(real, syn, batch_size=2, augment=StandInAugment(), prefetch=2, workers=3))
    assert len(it.threads) == 3
    next(it)
    it.close()
    assert not any(t.name == "bridgedfast-prefetch" for t in threading.enumerate())
    # With several producers, an error reaches the consumer at the batch that raised it, after
    # every batch before it.
    stand_in = StandInAugment()

    def fails_on_the_fifth(packed, generator):
        if generator.initial_seed() == batch_seed(0, 0, 0, 4):  # batch 4 of epoch 0 (seed 0, rank 0)
            raise RuntimeError("batch 4 exploded")
        return stand_in(packed, generator)

    got = []
    with pytest.raises(RuntimeError, match="batch 4 exploded"):
        for x, _, _ in MixedLoader(real, syn, batch_size=2, augment=fails_on_the_fifth, prefetch=2, workers=3):
            got.append(x)
    assert len(got) == 4
    assert not any(t.name == "bridgedfast-prefetch" for t in threading.enumerate())
    # A new pass ends an unfinished one (they would share the host buffers).
    loader = MixedLoader(real, syn, batch_size=2, augment=StandInAugment(), prefetch=2)
    first = iter(loader)
    next(first)
    assert len(list(loader)) == len(loader)
    with pytest.raises(StopIteration):
        next(first)


def test_loader_rejects_bad_arguments(stores, tmp_path):
    real, syn = stores
    aug = StandInAugment()
    with ImageStoreWriter(tmp_path / "other", ["ant", "yak"]) as w:
        w.add(make_image(0), 1)
    with pytest.raises(ValueError, match=r"classes \['yak'\] that are not among the target classes"):
        MixedLoader(real, tmp_path / "other", batch_size=2, augment=aug)
    with pytest.raises(ValueError, match="producers must be >= 1"):
        MixedLoader(real, syn, batch_size=2, augment=aug, producers=0)
    with pytest.raises(ValueError, match="1 unless prefetch > 0 on the CPU; got producers=2 with prefetch=0"):
        MixedLoader(real, syn, batch_size=2, augment=aug, producers=2, prefetch=0)
    with pytest.raises(ValueError, match="needs a real store, a synthetic store, or both"):
        MixedLoader(None, None, batch_size=2, augment=aug)
    with pytest.raises(ValueError, match="synthetic_fraction=0.5 needs a real store"):
        MixedLoader(None, syn, batch_size=2, augment=aug, synthetic_fraction=0.5)
    with pytest.raises(ValueError, match="synthetic_fraction=0.5 needs a synthetic store"):
        MixedLoader(real, None, batch_size=2, augment=aug, synthetic_fraction=0.5)
    with pytest.raises(ValueError, match="augment must be callable"):
        MixedLoader(real, syn, batch_size=2, augment=None)
    with pytest.raises(ValueError, match="cache_on_device must be"):
        MixedLoader(real, syn, batch_size=2, augment=aug, cache_on_device="yes")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        MixedLoader(tmp_path / "missing", None, batch_size=2, augment=aug)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            MixedLoader(real, syn, batch_size=2, augment=aug, device="cuda")


def test_store_damaged_after_open_is_an_error_not_garbage(tmp_path):
    with ImageStoreWriter(tmp_path / "s", ["a"]) as w:
        for i in range(4):
            w.add(make_image(i), 0)
    store = ImageStore(tmp_path / "s")
    last = store.records[-1]
    with open(tmp_path / "s" / "data-00000.bin", "r+b") as f:
        f.truncate(int(last["offset"]) + 1)
    for cache in (False, True):
        with pytest.raises(StoreCorruptError, match="image 3 is damaged: data-00000.bin is truncated"):
            loader = MixedLoader(ImageStore(tmp_path / "s"), None, batch_size=4, augment=StandInAugment(),
                                 cache_on_device=cache)
            next(iter(loader))


def test_jpeg_whose_index_claims_a_huge_size_is_refused_before_any_buffer_is_sized(tmp_path, monkeypatch):
    import zlib

    import bridgedfast.data.loader as loader_module
    from bridgedfast.data import format as fmt

    with ImageStoreWriter(tmp_path / "s", ["a"], encoding="jpeg") as w:
        for i in range(4):
            w.add(make_image(i), 0)
    # Record 2 re-signed to claim 60000x60000 (in range, checksums valid: the store opens).
    raw = bytearray((tmp_path / "s" / fmt.INDEX_FILE).read_bytes())
    records = np.frombuffer(raw, dtype=fmt.RECORD_DTYPE, offset=fmt.INDEX_HEADER_SIZE, count=4).copy()
    records[2]["height"] = records[2]["width"] = 60000
    records["record_crc"] = fmt.record_crcs(records)
    (tmp_path / "s" / fmt.INDEX_FILE).write_bytes(bytes(raw[: fmt.INDEX_HEADER_SIZE]) + records.tobytes())
    (tmp_path / "s" / fmt.COMMIT_FILE).write_bytes(fmt.encode_commit(fmt.Commit(4, zlib.crc32(records.tobytes()))))
    asked = []
    real_buffer = loader_module._HostBuffers.get
    monkeypatch.setattr(loader_module._HostBuffers, "get", lambda self, k, n: asked.append(n) or real_buffer(self, k, n))
    from bridgedfast.augment import TrainAugment

    for kw in (dict(), dict(cache_on_device=True), dict(jpeg_decode="reduced")):
        with pytest.raises(StoreCorruptError, match="image 2 is damaged: its JPEG header says .*the index says 60000x60000"):
            next(iter(MixedLoader(ImageStore(tmp_path / "s"), None, batch_size=4, augment=TrainAugment(8), **kw)))
    assert all(n < 10**5 for n in asked), asked  # never a buffer sized from the unchecked claim


def test_loader_on_a_checked_store_refuses_a_damaged_shard_when_it_is_made(tmp_path):
    with ImageStoreWriter(tmp_path / "s", ["a"]) as w:
        for i in range(4):
            w.add(make_image(i), 0)
    offset = int(ImageStore(tmp_path / "s").records[3]["offset"])
    with open(tmp_path / "s" / "data-00000.bin", "r+b") as f:
        f.seek(offset)
        f.write(bytes([f.read(1)[0] ^ 1]))
    next(iter(MixedLoader(ImageStore(tmp_path / "s"), None, batch_size=4, augment=StandInAugment())))  # unchecked
    with pytest.raises(StoreCorruptError, match=r"image 3 \(data-00000.bin .*pixel data checksum mismatch"):
        MixedLoader(ImageStore(tmp_path / "s", verify_reads=True), None, batch_size=4, augment=StandInAugment())


@pytest.mark.parametrize("contiguous_mapping", [True, False])
def test_gather_fallback_without_contiguous_mapping(stores, monkeypatch, contiguous_mapping):
    # Without the one-range mapping (other platforms), every batch goes through the gather op.
    import bridgedfast.data.loader as loader_module

    if not contiguous_mapping:
        monkeypatch.setattr(loader_module, "map_contiguous", lambda files: None)
    real, syn = stores
    loader = MixedLoader(real, syn, batch_size=4, augment=StandInAugment(), seed=4, synthetic_fraction=0.0)
    assert (loader._combined is not None) == contiguous_mapping
    for (x, t, s), (ex, et, es) in zip(loader, expected_batches(loader, real, syn, 0)):
        assert torch.equal(x, ex) and torch.equal(t, et) and torch.equal(s, es)


@pytest.mark.cuda
@pytest.mark.parametrize("cache", [False, True])
def test_cuda_loader_matches_cpu_loader(stores, cache):
    """The real fused augmentation on both devices: same crops and flips (drawn on the host
    from the batch generator), pixels within the kernels' float tolerance; nvJPEG decodes the
    synthetic store's JPEGs on the GPU."""
    from bridgedfast.augment import TrainAugment

    real, syn = stores
    augment = TrainAugment(16, scale=(0.3, 1.0), mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    kw = dict(batch_size=4, synthetic_fraction=0.5, augment=augment, seed=2)
    cpu = list(MixedLoader(real, syn, **kw))
    gpu = list(MixedLoader(real, syn, device="cuda", cache_on_device=cache, **kw))
    assert len(cpu) == len(gpu) > 0
    mean, std = torch.tensor([0.5, 0.4, 0.3])[:, None, None], torch.tensor([0.2, 0.25, 0.3])[:, None, None]
    for (a, ta, sa), (b, tb, sb) in zip(cpu, gpu):
        assert b.device.type == "cuda" and tb.device.type == "cuda" and b.shape == a.shape == (4, 3, 16, 16)
        assert torch.equal(tb.cpu(), ta) and torch.equal(sb.cpu(), sa) and sa.any() and not sa.all()
        b = b.cpu()
        # Raw images: the same bytes through the CPU and CUDA kernels.
        torch.testing.assert_close(b[~sa], a[~sa], atol=1e-4, rtol=0)
        # JPEGs: nvJPEG and libjpeg-turbo differ in IDCT and chroma upsampling, by under 2 levels on average.
        levels = lambda x: (x * std + mean) * 255  # noqa: E731
        assert (levels(b[sa]) - levels(a[sa])).abs().mean() < 2.0


def test_sampler_used_by_loader_is_the_documented_one(stores):
    real, syn = stores
    loader = MixedLoader(real, syn, batch_size=4, synthetic_fraction=0.25, augment=StandInAugment(), seed=9)
    ref = MixedSampler(len(real), len(syn), batch_size=4, synthetic_fraction=0.25, seed=9)
    for (a, ia), (b, ib) in zip(loader.sampler.plan(), ref.plan()):
        assert np.array_equal(a, b) and np.array_equal(ia, ib)


def test_batches_equal_train_augment_of_stored_images(stores):
    """With the real fused augmentation (bridgedfast.augment.TrainAugment)."""
    from bridgedfast.augment import TrainAugment

    real, syn = stores
    augment = TrainAugment(16, scale=(0.3, 1.0), mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    for kwargs in (dict(synthetic_fraction=0.0), dict(synthetic_fraction=0.5), dict(cache_on_device=True)):
        loader = MixedLoader(real, syn, batch_size=5, augment=augment, seed=21, **kwargs)
        loader.set_epoch(1)
        plan = loader.sampler.plan()
        for b, ((x, t, s), (is_syn, index)) in enumerate(zip(loader, plan)):
            images = [(syn if flag else real).image(int(i)) for flag, i in zip(is_syn, index)]
            g = torch.Generator().manual_seed(batch_seed(21, 1, 0, b))
            expected = augment(PackedImages.from_images(images), g)
            torch.testing.assert_close(x, expected, rtol=0, atol=1e-6)
            assert torch.equal(s, torch.from_numpy(is_syn))


def _expected_train_batches(loader, real, syn, augment, seed, epoch):
    for b, (is_syn, index) in enumerate(loader.sampler.plan()):
        images = [(syn if flag else real).image(int(i)) for flag, i in zip(is_syn, index)]
        g = torch.Generator().manual_seed(batch_seed(seed, epoch, 0, b))
        yield augment(PackedImages.from_images(images), g)


@pytest.mark.parametrize("prefetch", [0, 2])
def test_recycled_batches_that_are_kept_are_never_overwritten(stores, prefetch):
    from bridgedfast.augment import TrainAugment

    real, syn = stores
    augment = TrainAugment(16, scale=(0.3, 1.0))
    loader = MixedLoader(real, syn, batch_size=3, augment=augment, seed=7, prefetch=prefetch)
    assert loader._outputs is not None and loader._outputs.enabled
    expected = list(_expected_train_batches(loader, real, syn, augment, 7, 0))
    # Keep batches in every form a training loop might: the tensor, a view, a numpy array, the
    # storage object; drop the others.
    kept: dict[int, object] = {}
    for b, (x, _, _) in enumerate(loader):
        torch.testing.assert_close(x, expected[b], rtol=0, atol=1e-6)
        form = b % 5
        if form == 0:
            kept[b] = x
        elif form == 1:
            kept[b] = x[1:]
        elif form == 2:
            kept[b] = x.numpy()
        elif form == 3:
            kept[b] = (x.untyped_storage(), x.shape)
    assert len(expected) >= 10 and loader._outputs.reused > 0
    for b, value in kept.items():
        if b % 5 == 0:
            torch.testing.assert_close(value, expected[b], rtol=0, atol=1e-6)
        elif b % 5 == 1:
            torch.testing.assert_close(value, expected[b][1:], rtol=0, atol=1e-6)
        elif b % 5 == 2:
            torch.testing.assert_close(torch.from_numpy(value), expected[b], rtol=0, atol=1e-6)
        else:
            storage, shape = value
            x = torch.empty(0).set_(storage, 0, shape)
            torch.testing.assert_close(x, expected[b], rtol=0, atol=1e-6)
    # A second epoch while the first epoch's kept batches are alive leaves them intact too.
    loader.set_epoch(1)
    for _ in loader:
        pass
    torch.testing.assert_close(kept[0], expected[0], rtol=0, atol=1e-6)


def test_dropped_batches_buffers_are_reused(stores):
    from bridgedfast.augment import TrainAugment

    real, syn = stores
    augment = TrainAugment(16)
    loader = MixedLoader(real, syn, batch_size=4, augment=augment, seed=3, prefetch=0)
    expected = list(_expected_train_batches(loader, real, syn, augment, 3, 0))
    pointers = []
    for b, (x, _, _) in enumerate(loader):
        torch.testing.assert_close(x, expected[b], rtol=0, atol=1e-6)
        pointers.append(x.data_ptr())
    # Synchronous: batch b is made while the loop still holds batch b-1, so batch b reuses
    # batch b-2's buffer.
    assert len(pointers) >= 6
    assert all(pointers[b] == pointers[b - 2] for b in range(2, len(pointers)))
    assert loader._outputs.allocated == 2 and loader._outputs.reused == len(pointers) - 2
    # Opting out, or an augment that cannot write into a buffer, allocates every batch.
    own = TrainAugment(16)  # it would recycle its own outputs when called without out=
    fresh = MixedLoader(real, syn, batch_size=4, augment=own, seed=3, prefetch=0, recycle_outputs=False)
    assert fresh._outputs is None
    held = [x for x, _, _ in fresh]
    assert len({x.data_ptr() for x in held}) == len(held) and own._outputs.pool is None
    for x, e in zip(held, expected):
        torch.testing.assert_close(x, e, rtol=0, atol=1e-6)
    assert MixedLoader(real, syn, batch_size=4, augment=StandInAugment())._outputs is None
