"""Volume studies without copies: a subset of a store read in place (StoreSubset) gives the loader
exactly the batches a copied subset store gives, and a training run's `synthetic_per_class`
trains on the images with image_index < N (what a generation of N per class makes)."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from bridgedfast.augment import TrainAugment
from bridgedfast.data import ImageStore, ImageStoreWriter, MixedLoader
from bridgedfast.data.subsets import StoreSubset, image_index_prefix, write_subset

CLASSES = ["a", "b", "c"]


def generated_like(path, per_class: int, encoding: str = "raw", order: str = "class-major"):
    """A store as a generation writes it (a grown one is not class-major: 'grown' puts images
    2.. of every class after images 0..1 of all classes)."""
    g = torch.Generator().manual_seed(1)
    items = [(c, i) for c in range(3) for i in range(per_class)]
    if order == "grown":
        items = [(c, i) for c in range(3) for i in range(2)] + [(c, i) for c in range(3) for i in range(2, per_class)]
    with ImageStoreWriter(path, CLASSES, encoding=encoding) as w:
        for c, i in items:
            h, wd = 20 + 3 * i, 24 + c
            w.add(torch.randint(0, 256, (h, wd, 3), generator=g, dtype=torch.uint8).numpy(), c,
                  {"class_index": c, "image_index": i, "seed": 10 * c + i})
    (path / "generation.json").write_text(json.dumps({"config": {"per_class": per_class}}))
    return ImageStore(path)


def test_image_index_prefix_by_hand(tmp_path):
    store = generated_like(tmp_path / "s", 4, order="grown")
    # Store order: (a0 a1 b0 b1 c0 c1) then (a2 a3 b2 b3 c2 c3); image_index < 3 keeps 0, 1 and 2 of each class.
    assert image_index_prefix(store, 3).tolist() == [0, 1, 2, 3, 4, 5, 6, 8, 10]
    assert image_index_prefix(store, 9).tolist() == list(range(12))
    with pytest.raises(ValueError, match="positive"):
        image_index_prefix(store, 0)
    with ImageStoreWriter(tmp_path / "plain", CLASSES) as w:
        w.add(np.zeros((4, 4, 3), np.uint8), 0)
    with pytest.raises(ValueError, match="no image_index"):
        image_index_prefix(ImageStore(tmp_path / "plain"), 1)


@pytest.mark.parametrize("encoding", ["raw", "jpeg"])
def test_subset_reads_like_a_copied_store(tmp_path, encoding):
    store = generated_like(tmp_path / "s", 4, encoding=encoding, order="grown")
    idx = image_index_prefix(store, 2)
    view = StoreSubset(store, idx)
    write_subset(store, idx, tmp_path / "copy")
    copy = ImageStore(tmp_path / "copy")
    assert len(view) == len(copy) == 6 and view.classes == CLASSES
    assert view.labels.tolist() == copy.labels.tolist() == [0, 0, 1, 1, 2, 2]
    for k, i in enumerate(idx.tolist()):
        assert torch.equal(view.image(k), store.image(i)) and view.meta(k) == store.meta(i)
    assert view.verify() == 6
    again = pickle.loads(pickle.dumps(view))  # worker processes reopen it by path and indices
    assert again.indices.tolist() == idx.tolist() and torch.equal(again.image(5), view.image(5))
    aug = TrainAugment(16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    for real, fraction in ((None, None), (copy, 0.5)):  # synthetic only, and mixed with a real store
        batches = []
        for syn in (view, copy):
            loader = MixedLoader(real, syn, batch_size=4, synthetic_fraction=fraction, augment=aug, seed=3, prefetch=0)
            batches.append([(x.clone(), y.clone(), s.clone()) for x, y, s in loader])
        assert len(batches[0]) == len(batches[1]) > 0
        for (x, y, s), (x2, y2, s2) in zip(*batches):
            assert torch.equal(x, x2) and torch.equal(y, y2) and torch.equal(s, s2)
    with pytest.raises(IndexError):
        StoreSubset(store, [12])


def _config(tmp_path, store_path, **kw):
    from bridgedfast.transfer import TrainConfig

    kw = {"mode": "bridged", **kw}
    return TrainConfig(model="test_resnet", real_train=str(store_path), real_test=str(store_path),
                       synthetic=str(store_path), out=str(tmp_path / "run"), pretrained="none", device="cpu", **kw)


def test_run_data_takes_the_prefix_in_place(tmp_path):
    from bridgedfast.transfer.data import RunData

    store = generated_like(tmp_path / "s", 4, order="grown")
    data = RunData(_config(tmp_path, store.path, synthetic_per_class=3).resolved())
    assert isinstance(data.synthetic, StoreSubset) and data.synthetic.base.path == store.path
    assert len(data.synthetic) == 9 and data.sizes()["synthetic"] == 9
    assert sorted(data.synthetic.meta(k)["image_index"] for k in range(9)) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert len(RunData(_config(tmp_path, store.path).resolved()).synthetic) == 12
    with pytest.raises(ValueError, match="generated with 4 images per class"):
        RunData(_config(tmp_path, store.path, synthetic_per_class=5).resolved())
    with pytest.raises(ValueError, match="not mode vanilla"):
        _config(tmp_path, store.path, synthetic_per_class=3, mode="vanilla").resolved()
    with pytest.raises(ValueError, match="synthetic-per-class must be a positive integer"):
        _config(tmp_path, store.path, synthetic_per_class=0).resolved()
