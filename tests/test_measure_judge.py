"""The class-faithfulness judge (`experiment.measure.train_judge`): it trains on the real training
images only (a held-out fifth of each class measures it), it recognises held-out real digits and
not noise, and `bridgedfast run` caches it as one step whose accuracy the report shows."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bridgedfast.data import ImageStore, ImageStoreWriter
from bridgedfast.data.pack import pack
from bridgedfast.experiment.measure import split_validation, train_judge
from bridgedfast.metrics import class_faithfulness
from bridgedfast.testing import digits_dataset


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """30 real training digits per class, 10 held-out test digits per class, and a store of noise."""
    root = tmp_path_factory.mktemp("judge")
    train, test = digits_dataset(root / "digits", size=32, per_class=40)
    real, held = pack(train, root / "train", progress=False), pack(test, root / "test", progress=False)
    rng = np.random.default_rng(0)
    with ImageStoreWriter(root / "noise", list(real.classes)) as w:
        for i in range(100):
            w.add(torch.from_numpy(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)), i % 10)
    return {"train": real, "test": held, "noise": ImageStore(root / "noise")}


def _world_classifier() -> tuple[str, str]:
    from bridgedfast.world import WEIGHTS

    card = json.loads((WEIGHTS / "classifier" / "classifier.json").read_text())
    return card["timm_model"], str(WEIGHTS / "classifier" / card["weights"])


def test_validation_split_is_a_seeded_fifth_of_each_class():
    labels = torch.tensor([0] * 10 + [1] * 5 + [2] * 1)
    train, val = split_validation(labels, 0.2, seed=3)
    assert sorted(train.tolist() + val.tolist()) == list(range(16))  # disjoint and complete
    assert torch.bincount(labels[val], minlength=3).tolist() == [2, 1, 0]  # a one-image class keeps its image
    again = split_validation(labels, 0.2, seed=3)
    assert torch.equal(train, again[0]) and torch.equal(val, again[1])
    assert not torch.equal(val, split_validation(labels, 0.2, seed=4)[1])


class _RecordingStore(ImageStore):
    """Records every image index read."""

    def __init__(self, path):
        super().__init__(path)
        self.reads: list[int] = []

    def image(self, i):
        self.reads.append(int(i))
        return super().image(i)


def test_judge_trains_on_the_train_share_only_and_reports_its_held_out_accuracy(digits):
    torch.set_num_threads(1)
    store = _RecordingStore(digits["train"].path)
    model_name, weights = _world_classifier()
    model, record = train_judge(model_name, weights, store, steps=12, batch_size=8, image_size=32)
    train_idx, val_idx = split_validation(store.labels, 0.2, seed=0)
    n_val = len(val_idx)
    assert record["train_images"] == len(train_idx) == 240 and record["val_images"] == n_val == 60
    # Training reads only training images; the held-out fifth is read once, at the end, to score the judge.
    assert set(store.reads[:-n_val]) <= set(train_idx.tolist()) and len(store.reads[:-n_val]) == 12 * 8
    assert sorted(store.reads[-n_val:]) == val_idx.tolist()
    assert record["val_accuracy"] == class_faithfulness(model, digits["train"], digits["train"].classes,
                                                        image_size=32, indices=val_idx)
    with pytest.raises(ValueError, match="at least one training step"):
        train_judge(model_name, weights, store, steps=0, image_size=32)


def test_judge_recognises_held_out_real_digits_and_not_noise(digits):
    torch.set_num_threads(1)
    model_name, weights = _world_classifier()
    model, record = train_judge(model_name, weights, digits["train"], steps=80, image_size=32)
    classes = digits["train"].classes
    real = class_faithfulness(model, digits["test"], classes, image_size=32)
    noise = class_faithfulness(model, digits["noise"], classes, image_size=32)
    assert record["val_accuracy"] >= 0.85 and real >= 0.85, (record["val_accuracy"], real)
    assert noise <= 0.25, noise  # chance: 0.1
