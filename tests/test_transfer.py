"""The trainer's own logic, with in-memory stand-ins for the store, loader and augmentations
where a run is needed (every mode end to end with the real ones: test_transfer_e2e.py). The
stand-ins follow the DESIGN.md contracts: MixedLoader yields (images, targets, is_synthetic),
augment(images, generator)."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from bridgedfast.packed import PackedImages
from bridgedfast.transfer import StageConfig, TrainConfig, few_shot_split, train
from bridgedfast.transfer import data as tdata
from bridgedfast.transfer.checkpoint import optimizer_from_flat, optimizer_to_flat
from bridgedfast.schedules import lr_factor

MODEL = "test_resnet"
SIZE = 32


class FakeStore:
    def __init__(self, classes, images, labels):
        self.classes = list(classes)
        self._images = images
        self.labels = torch.as_tensor(labels, dtype=torch.int64)

    def __len__(self):
        return len(self._images)

    def image(self, i):
        return self._images[i]

    def meta(self, i):
        return {}


def make_store(classes, per_class, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    images, labels = [], []
    for c in range(len(classes)):
        for _ in range(per_class):
            h, w = (int(v) for v in torch.randint(20, 36, (2,), generator=g))
            base = torch.tensor([(c * 67) % 256, (c * 131 + 40) % 256, (c * 29 + 90) % 256], dtype=torch.float32) + shift
            img = base + 30 * torch.rand(h, w, 3, generator=g)
            images.append(img.clamp(0, 255).to(torch.uint8))
            labels.append(c)
    return FakeStore(classes, images, labels)


class FakeAugment:
    """Resize the whole image (bilinear), optional random flip, normalise."""

    def __init__(self, size, mean, std, flip=0.0):
        self.size, self.flip = size, flip
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)

    def __call__(self, images, generator):
        if isinstance(images, PackedImages):
            images = [images.image(i) for i in range(len(images))]
        out = torch.cat([F.interpolate(im.permute(2, 0, 1)[None].float(), size=(self.size, self.size), mode="bilinear",
                                       align_corners=False) for im in images])
        if self.flip and generator is not None:
            flips = torch.rand(len(images), generator=generator) < self.flip
            out[flips] = out[flips].flip(-1)
        return (out / 255 - self.mean) / self.std


class FakeLoader:
    """Contract stand-in: proportional or fixed synthetic share, global batches split across ranks."""

    def __init__(self, real, synthetic=None, *, batch_size, synthetic_fraction=None, augment, device, seed=0,
                 drop_last=True, rank=0, world_size=1, classes=None, **kw):
        self.real, self.synthetic, self.batch, self.fraction = real, synthetic, batch_size, synthetic_fraction
        self.augment, self.seed, self.rank, self.world = augment, seed, rank, world_size
        self.epoch = 0

    def _pool(self):
        if self.fraction == 1.0:
            return [(True, i) for i in range(len(self.synthetic))]
        pool = [(False, i) for i in range(len(self.real))]
        if self.synthetic is not None:
            pool += [(True, i) for i in range(len(self.synthetic))]
        return pool

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return len(self._pool()) // (self.batch * self.world)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        pool = self._pool()
        order = torch.randperm(len(pool), generator=g).tolist()
        for b in range(len(self)):
            chunk = order[b * self.batch * self.world:(b + 1) * self.batch * self.world][self.rank::self.world]
            picks = [pool[k] for k in chunk]
            images = [(self.synthetic if s else self.real).image(i) for s, i in picks]
            targets = torch.tensor([int((self.synthetic if s else self.real).labels[i]) for s, i in picks])
            yield self.augment(images, g), targets, torch.tensor([s for s, _ in picks])


class FakeMixup:
    """Deterministic Mixup: lam 0.7 with the reversed batch, smoothed soft targets (timm's convention)."""

    def __init__(self, num_classes, smoothing):
        self.num_classes, self.smoothing = num_classes, smoothing

    def __call__(self, x, target):
        off = self.smoothing / self.num_classes
        y = F.one_hot(target, self.num_classes).float() * (1 - self.smoothing) + off
        return 0.7 * x + 0.3 * x.flip(0), 0.7 * y + 0.3 * y.flip(0)


CLASSES = ["ant", "bee", "cat"]


@pytest.fixture
def fakes(monkeypatch):
    stores = {
        "real_train": make_store(CLASSES, 6, seed=1),
        "real_test": make_store(CLASSES, 3, seed=2),
        "synthetic": make_store(CLASSES, 8, seed=3, shift=10),
    }

    def open_store(path, what):
        key = str(path).rsplit("/", 1)[-1]
        if key not in stores:
            raise FileNotFoundError(f"{what} store {str(path)!r} does not exist")
        return stores[key]

    subsets = {}

    def write_subset(store, indices, path):
        subsets[str(path)] = FakeStore(store.classes, [store.image(int(i)) for i in indices], store.labels[indices])

    monkeypatch.setattr(tdata, "open_store", open_store)
    monkeypatch.setattr(tdata, "write_subset", write_subset)
    monkeypatch.setattr(tdata, "open_subset", lambda path, expected: subsets[str(path)])
    monkeypatch.setattr(tdata, "make_train_loader", lambda *a, workers=None, cache_on_device=False, **kw: FakeLoader(*a, **kw))
    monkeypatch.setattr(tdata, "make_train_augment",
                        lambda size, *, scale, ratio, hflip, mean, std, channels_last: FakeAugment(size, mean, std, hflip))
    monkeypatch.setattr(tdata, "make_eval_augment", lambda size, *, crop_pct, mean, std, channels_last: FakeAugment(size, mean, std))
    monkeypatch.setattr(tdata, "make_mixup", lambda stage, n, seed: FakeMixup(n, stage.label_smoothing))
    return stores


def config(tmp_path, mode="vanilla", **kw):
    base = dict(model=MODEL, real_train="real_train", real_test="real_test", out=str(tmp_path / "out"), mode=mode,
                synthetic=None if mode == "vanilla" else "synthetic", pretrained="none", epochs=1, batch_size=6,
                image_size=SIZE, device="cpu", progress=False, lr=0.05, min_steps=0)
    base.update(kw)
    return TrainConfig(**base)


# ---------------------------------------------------------------------------- pure logic


def test_few_shot_split_has_k_per_class_and_is_stable():
    labels = torch.tensor([0] * 10 + [1] * 7 + [2] * 5)[torch.randperm(22, generator=torch.Generator().manual_seed(0))]
    split = few_shot_split(labels, 4, seed=3)
    assert torch.bincount(labels[split], minlength=3).tolist() == [4, 4, 4]
    assert split.unique().numel() == 12 and torch.equal(split, split.sort().values)
    assert torch.equal(split, few_shot_split(labels.clone(), 4, seed=3))
    assert not torch.equal(split, few_shot_split(labels, 4, seed=4))
    # A class's pick depends only on its own images: appending a class leaves the others' alone.
    more = torch.cat([labels, torch.full((6,), 3)])
    assert torch.equal(few_shot_split(more, 4, seed=3)[:12], split)


def test_few_shot_split_errors_name_the_class():
    labels = torch.tensor([0, 0, 0, 1, 1])
    with pytest.raises(ValueError, match=r"shots 3 is larger than class 'bee', which has only 2"):
        few_shot_split(labels, 3, seed=0, classes=["ant", "bee"])
    with pytest.raises(ValueError, match="positive integer"):
        few_shot_split(labels, 0, seed=0)


def test_lr_schedule_warmup_then_cosine():
    total, warmup = 10, 2
    factors = [lr_factor(s, total, warmup) for s in range(total)]
    assert factors[:2] == [0.5, 1.0]
    expected = [0.5 * (1 + math.cos(math.pi * (s - warmup) / (total - warmup))) for s in range(warmup, total)]
    assert factors[2:] == pytest.approx(expected)
    assert lr_factor(9, 10, 0, min_ratio=0.1) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.9)))


def test_optimizer_state_roundtrip_through_flat_form():
    model = torch.nn.Linear(3, 2)
    for opt in (torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), torch.optim.AdamW(model.parameters())):
        model(torch.randn(4, 3)).sum().backward()
        opt.step()
        tensors, meta = optimizer_to_flat(opt.state_dict())
        restored = optimizer_from_flat(tensors, json.loads(json.dumps(meta)))
        ref = opt.state_dict()
        assert restored["param_groups"] == ref["param_groups"]
        for pid, entries in ref["state"].items():
            for k, v in entries.items():
                assert torch.equal(torch.as_tensor(restored["state"][pid][k]), torch.as_tensor(v))


@pytest.mark.parametrize("name, match", [
    ("../outside.safetensors", "model_file must be a file name inside the run folder, got '../outside.safetensors'"),
    ("{outside}", "model_file must be a file name inside the run folder"),  # an absolute path
    ("sub/model-s1-e1.safetensors", "model_file must be a file name inside the run folder"),
    ("state.json", "model_file must be a file name inside the run folder"),
    ("model-s9-e9.safetensors", "names model_file 'model-s9-e9.safetensors', which is not a file in"),
    (7, "model_file must be a file name inside the run folder, got 7"),
])
def test_checkpoint_file_names_from_state_json_are_checked_before_use(tmp_path, name, match):
    from safetensors.torch import save_file

    from bridgedfast.transfer.checkpoint import load_checkpoint, save_checkpoint

    folder = tmp_path / "run" / "checkpoint"
    save_checkpoint(folder, model_state={"w": torch.ones(2)}, optimizer_state=None, state={"stage": 1, "epoch": 1})
    assert torch.equal(load_checkpoint(folder)[1]["w"], torch.ones(2))
    outside = tmp_path / "run" / "outside.safetensors"  # a readable file the name would reach
    save_file({"w": torch.zeros(2)}, str(outside))
    (folder / "sub").mkdir()
    save_file({"w": torch.zeros(2)}, str(folder / "sub" / "model-s1-e1.safetensors"))
    state = json.loads((folder / "state.json").read_text())
    state["model_file"] = name.format(outside=outside) if isinstance(name, str) else name
    (folder / "state.json").write_text(json.dumps(state))
    with pytest.raises(ValueError, match=match):
        load_checkpoint(folder)


def test_config_defaults_are_resolved_and_documented():
    cfg = TrainConfig(model=MODEL, real_train="a", real_test="b", out="o", mode="bridged++", synthetic="s").resolved()
    s1, s2 = cfg.stage1, cfg.stage2
    assert (s1.optimizer, s1.lr, s1.head_lr, s1.weight_decay, s1.label_smoothing) == ("sgd", 0.01, 0.1, 1e-4, 0.1)
    assert (s1.mixup_alpha, s1.cutmix_alpha) == (0.8, 1.0) and s1.mixup_enabled
    assert not s2.mixup_enabled and s2.epochs == 10 and s2.batch_size == 64
    adamw = TrainConfig(model=MODEL, real_train="a", real_test="b", out="o", mode="vanilla",
                        stage2=StageConfig(optimizer="adamw")).resolved().stage2
    assert (adamw.lr, adamw.head_lr, adamw.weight_decay) == (1e-4, 1e-3, 0.05)
    bridged = TrainConfig(model=MODEL, real_train="a", real_test="b", out="o", mode="bridged", synthetic="s").resolved()
    assert not bridged.stage1.mixup_enabled


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(mode="bridged", synthetic=None), "needs a synthetic store"),
        (dict(mode="mixed", synthetic=None), "needs a synthetic store"),
        (dict(mode="bridged+"), "unknown mode 'bridged\\+'"),
        (dict(shots=0), "shots must be a positive integer"),
        (dict(epochs=0), "epochs must be a positive integer"),
        (dict(mode="bridged++", synthetic="s", batch_size=7), "even batch size"),
        (dict(synthetic_fraction=0.5), "mixed only"),
        (dict(mode="mixed", synthetic="s", synthetic_fraction=1.5), r"synthetic-fraction must be in \(0, 1\)"),
        (dict(stage2=StageConfig(optimizer="lion")), "unknown stage2 optimizer 'lion'"),
        (dict(amp="fp8"), "unknown amp 'fp8'"),
    ],
)
def test_bad_config_values_are_clear_errors(kw, match):
    base = dict(model=MODEL, real_train="a", real_test="b", out="o", mode="vanilla")
    base.update(kw)
    with pytest.raises(ValueError, match=match):
        TrainConfig(**base).resolved()


# ---------------------------------------------------------------------------- the trainer with stand-ins


def test_a_loader_breaking_the_stage_contract_is_caught(fakes, tmp_path, monkeypatch):
    monkeypatch.setattr(FakeLoader, "_pool", lambda self: [(False, i) for i in range(len(self.real))])
    with pytest.raises(RuntimeError, match="gave 18 real images to the synthetic-only stage1"):
        train(config(tmp_path, "bridged"))


class Killed(Exception):
    pass


def test_resume_after_an_interruption_mid_stage2_gives_identical_weights(fakes, tmp_path, monkeypatch):
    # In process, the interruption raises at an optimiser step (the real kill -9: test_transfer_e2e.py).
    from safetensors.torch import load_file

    kw = dict(epochs=2, stage1=StageConfig(epochs=2), hflip=0.5)
    full = train(config(tmp_path / "full", "bridged++", **kw))

    def kill(step):
        if step == 14:  # stage 1 has 2 x 4 steps, stage 2 2 x 3: mid stage-2 epoch 2
            raise Killed

    with pytest.raises(Killed):
        train(config(tmp_path / "cut", "bridged++", **kw), on_step=kill)
    state = json.loads((tmp_path / "cut/out/checkpoint/state.json").read_text())
    assert (state["stage"], state["epoch"]) == (1, 1)
    resumed = train(config(tmp_path / "cut", "bridged++", **kw))
    a, b = load_file(str(tmp_path / "full/out/model.safetensors")), load_file(str(tmp_path / "cut/out/model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for r1, r2 in zip(full["history"], resumed["history"]):
        assert r1["train_loss"] == r2["train_loss"] and r1["test_top1"] == r2["test_top1"]


def test_out_folder_with_foreign_files_is_refused(fakes, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds no training run"):
        train(config(tmp_path, "vanilla"))


@pytest.mark.parametrize(
    "kw, error, match",
    [
        (dict(model="resnet_does_not_exist"), ValueError, "unknown timm model 'resnet_does_not_exist'"),
        (dict(shots=7), ValueError, "shots 7 is larger than class 'ant', which has only 6"),
        (dict(mode="bridged", synthetic="nowhere"), FileNotFoundError, "--synthetic store 'nowhere' does not exist"),
        (dict(real_test="missing"), FileNotFoundError, "--real-test store 'missing' does not exist"),
        (dict(pretrained="/no/such/weights.safetensors"), FileNotFoundError, "pretrained weights '/no/such/weights.safetensors' not found"),
        (dict(batch_size=30), ValueError, "batch size 30 is larger than its 18 real training images"),
    ],
)
def test_bad_options_fail_before_writing_anything(fakes, tmp_path, kw, error, match):
    with pytest.raises(error, match=match):
        train(config(tmp_path, **kw))
    assert not (tmp_path / "out" / "results.json").exists()


# ---------------------------------------------------------------------------- synthetic classes must hold images


def test_check_class_counts_counts_and_names_empty_classes():
    labels = torch.tensor([0, 0, 2, 2, 2, 0])
    with pytest.raises(ValueError, match=r"holds no images of classes 'bee' \(1 of 3 classes empty"):
        tdata.check_class_counts(["ant", "bee", "cat"], labels)
    assert tdata.check_class_counts(["ant", "bee"], torch.tensor([1, 0, 1, 1])) == [1, 3]


def test_check_class_counts_warns_on_strongly_unequal_counts():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tdata.check_class_counts(["a", "b"], torch.tensor([0] * 4 + [1] * 16)) == [4, 16]  # exactly 4x: fine
    with pytest.warns(RuntimeWarning, match=r"'b' has 17, 'a' has 4 \(more than 4x apart\)"):
        tdata.check_class_counts(["a", "b"], torch.tensor([0] * 4 + [1] * 17))


@pytest.mark.parametrize("mode", ["mixed", "bridged", "bridged++"])
def test_a_synthetic_store_with_an_empty_class_is_refused_before_training(fakes, tmp_path, mode):
    # an interrupted class-major generation: the classes are in the header, 'cat' has no image yet
    syn = fakes["synthetic"]
    keep = [i for i in range(len(syn)) if int(syn.labels[i]) != 2]
    fakes["synthetic"] = FakeStore(CLASSES, [syn.image(i) for i in keep], syn.labels[keep])
    with pytest.raises(ValueError, match=r"--synthetic store 'synthetic' holds no images of classes 'cat'"):
        train(config(tmp_path, mode))
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------- a minimum of optimiser steps per stage
def test_min_steps_raises_a_short_stages_epochs_and_results_record_the_steps(fakes, tmp_path):
    """1 shot x 3 classes at batch 2 (drop_last): 1 step per epoch, so min_steps 4 gives the stage
    ceil(4 / 1) = 4 epochs, tested (and checkpointed) every 4 epochs: as often as the requested
    single epoch."""
    steps = []
    res = train(config(tmp_path, "vanilla", shots=1, batch_size=2, min_steps=4), on_step=steps.append)
    (s2,) = res["stages"]
    assert (s2["epochs_requested"], s2["epochs"], s2["steps_per_epoch"], s2["steps"]) == (1, 4, 1, 4)
    assert s2["min_steps"] == 4 and s2["stride"] == 4
    assert steps == [1, 2, 3, 4]  # the optimiser steps actually taken
    rows = [h for h in res["history"] if h["stage"] == "stage2"]
    assert [h["images"] for h in rows] == [2] * 4
    assert [h["test_top1"] is None for h in rows] == [True] * 3 + [False]
    assert res["config"]["stage2"]["epochs"] == 1  # the requested schedule is what the run folder is keyed by


def test_apply_min_steps_hand_computed():
    from bridgedfast.transfer.trainer import apply_min_steps

    assert TrainConfig.options()["min_steps"].default == 100
    s = StageConfig(epochs=3)
    assert apply_min_steps(s, 7, 100) == {"epochs_requested": 3, "epochs": 15, "steps_per_epoch": 7, "steps": 105,
                                          "min_steps": 100, "stride": 5}  # ceil(100 / 7) = 15 epochs
    assert s.epochs == 15
    s = StageConfig(epochs=3, steps_per_epoch=40)  # 120 steps >= 100: unchanged
    assert apply_min_steps(s, 7, 100)["epochs"] == 3 and s.epochs == 3
    s = StageConfig(epochs=2)
    assert apply_min_steps(s, 1, 0) == {"epochs_requested": 2, "epochs": 2, "steps_per_epoch": 1, "steps": 2,
                                        "min_steps": 0, "stride": 1}
