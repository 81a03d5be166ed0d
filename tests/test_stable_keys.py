"""Values that stored outputs depend on: seeds, experiment step keys and the configurations a
run, a style checkpoint and a generation output record. A store, checkpoint, latent cache,
generation output or run folder resumes only while these stay bit-for-bit what they were when it
was written, so they are pinned in `stable_keys.json` (computed by the code of 2026-11-25, before
the package was restructured). A change here is a format break: it needs a version bump and a
migration, not a new pin."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bridgedfast.data import MixedSampler, batch_seed
from bridgedfast.generate import seed_for
from bridgedfast.testing import image_folder

PINS = json.loads((Path(__file__).parent / "stable_keys.json").read_text())


def test_seed_formulas():
    from bridgedfast.invert.train import seeded_generator, step_draws
    from bridgedfast.transfer import derive_seed, few_shot_split, head_reset_seed

    assert [seed_for(0, 0, 0), seed_for(7, 3, 11), seed_for(2**40, 99, 12345)] == PINS["seed_for"]
    assert [derive_seed("init", 0), derive_seed("loader", 3, "stage2"), derive_seed("dropout", 1, 0, 2, 0),
            derive_seed("mixup", 1, 1, 0, 1), derive_seed("init-head", 5), derive_seed("few-shot", 3, 1)] == PINS["derive_seed"]
    assert head_reset_seed(5) == PINS["head_reset_seed"]
    assert torch.randint(1 << 30, (3,), generator=seeded_generator(0, "step", 5)).tolist() == PINS["seeded_generator"]
    d = step_draws(1, 3, num_images=5, batch_size=2, flip_p=0.5, num_templates=12, num_timesteps=1000, latent_shape=(4, 2, 2))
    assert [d.images.tolist(), d.flips.tolist(), d.templates.tolist(), d.timesteps.tolist()] == PINS["step_draws"][:4]
    assert [round(float(d.latent_eps.sum()), 6), round(float(d.noise.sum()), 6)] == PINS["step_draws"][4:]
    assert [batch_seed(0, 1, 2, 3), batch_seed(11, 0, 0, 0)] == PINS["batch_seed"]
    labels = torch.tensor([0] * 5 + [1] * 6 + [2] * 4)
    assert few_shot_split(labels, 3, seed=3).tolist() == PINS["few_shot"]


def test_sampler_plan_and_split_permutation():
    s = MixedSampler(10, 7, batch_size=4, synthetic_fraction=0.5, seed=2, world_size=2, rank=1)
    s.set_epoch(1)
    assert [[a.tolist(), b.tolist()] for a, b in s.plan()] == PINS["sampler"]
    assert torch.randperm(6, generator=torch.Generator().manual_seed(4)).tolist() == PINS["split_perm"]


EXPERIMENT = {
    "out": "out", "data": {"real": "real", "test": "test", "shots": [None, 2]},
    "generation": {"model": "org/some-model", "per_class": 10, "steps": 5, "store_size": 64},
    "style": {"steps": 7},
    "training": {"model": "resnet18", "modes": ["vanilla", "mixed", "bridged++"], "seeds": [0, 1], "epochs": 2,
                 "synthetic_fraction": 0.25, "options": {"stage1": {"mixup_alpha": 0.5}, "hflip": 0.25}},
}


def test_experiment_step_keys(tmp_path, monkeypatch):
    """Every step's key for a fixed experiment file: a changed key reruns the step (and all that
    depends on it) in every stored experiment folder."""
    from bridgedfast.experiment import parse_experiment
    from bridgedfast.experiment import runner
    from bridgedfast.experiment.steps import content_key

    for name in ("real/a", "test/a"):
        (tmp_path / name).mkdir(parents=True)
    exp = parse_experiment(EXPERIMENT, base=tmp_path)
    monkeypatch.setattr(runner, "input_fingerprint", lambda path: "f" * 16)
    r = runner.ExperimentRunner(exp, progress=False, log=lambda _: None)
    keys = {}

    def run(name, payload, outputs, fn, **kwargs):  # records the key instead of running the step
        text = json.dumps(payload, sort_keys=True, default=str).replace(str(tmp_path), "TMP")  # machine-free paths
        keys[name] = content_key(json.loads(text))
        return keys[name], {"train_images": 1, "test_images": 1, "classes": ["a"]}

    monkeypatch.setattr(r.steps, "run", run)
    data_key, train, test = r.prepare_real()
    studies = runner.Studies(r)
    stores = studies.make_stores(train, data_key)
    r.samples_without_style(train, data_key, stores)
    studies.train_all(data_key, train, test)
    # Since the few-shot leakage fix (issue 13), a few-shot run's synthetic store comes from a style
    # learnt on its own K-shot split: those runs (and their new subset, style and generate steps)
    # have keys of their own; every other step keeps the key pinned before the fix.
    changed = PINS["experiment_keys_few_shot_style"]
    assert keys == {**PINS["experiment_keys"], **changed}
    assert set(changed) - set(PINS["experiment_keys"]) == {"subset-2shot-split0", "style-2shot-split0",
                                                           "generate-2shot-split0"}


def test_recorded_training_configuration(tmp_path):
    """What a run folder's config.json holds: a resumed run is compared against it."""
    from bridgedfast.transfer import StageConfig, TrainConfig
    from bridgedfast.transfer.run_folder import recorded_config

    cfg = TrainConfig(model="resnet18", real_train=str(tmp_path / "a"), real_test=str(tmp_path / "b"), out=str(tmp_path / "o"),
                      mode="bridged++", synthetic=str(tmp_path / "s"), shots=4, epochs=3,
                      stage1=StageConfig(mixup_alpha=0.4, optimizer="adamw"), stage2=StageConfig(lr=0.02, warmup_epochs=0.5),
                      hflip=0.3)
    recorded = recorded_config(cfg.resolved())
    assert json.loads(json.dumps(recorded).replace(str(tmp_path), "TMP")) == PINS["train_recorded"]


def test_style_checkpoint_and_generation_configurations(tiny_sd, tmp_path):
    """The configuration a style checkpoint records (a resumed inversion is compared against it)
    and the one a generation output records (a re-run against the same OUT is compared)."""
    from safetensors import safe_open

    from bridgedfast.generate import Generator
    from bridgedfast.invert import invert_style

    images = image_folder(tmp_path / "imgs", {"cat": 2, "dog": 2}, size_range=(36, 40))
    style = invert_style(tiny_sd, images, tmp_path / "st" / "style.safetensors", steps=2, batch_size=2, resolution=32,
                         device="cpu", progress=False, checkpoint_every=1, lr_schedule="cosine")
    with safe_open(str(tmp_path / "st" / "style.ckpt.safetensors"), framework="pt") as f:
        assert json.loads(f.metadata()["bridgedfast_checkpoint"])["config"] == PINS["invert_checkpoint_config"]
    Generator(tiny_sd, device="cpu").generate(
        ["cat", "a_dog"], 1, tmp_path / "gen", steps=1, height=32, width=32, seed=3, style=style, encoding="jpeg",
        quality=80, store_size=(16, 24), negative_prompt="blurry", progress=False)
    config = json.loads((tmp_path / "gen" / "generation.json").read_text())["config"]
    config["scheduler"] = config["scheduler"]["class"]
    config["style"]["sha256"] = "<sha256 of the style file>"  # the trained bytes: not a configuration
    assert config == PINS["generation_config"]
