"""`bridgedfast run`'s studies on tiny inputs: a volume sweep generates once and trains on
class-wise prefixes, adding a volume reruns only what it must, a guidance sweep makes one store
per value, img2img from the run's own few-shot images, filtering, the report's study sections,
and the YAML checks of the new keys."""
from __future__ import annotations

import json

import pytest
import yaml

from bridgedfast.cli import main as cli_main
from bridgedfast.data import ImageStore
from bridgedfast.experiment import parse_experiment, run_experiment
from bridgedfast.testing import image_folder, tiny_clip, tiny_stable_diffusion


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    image_folder(root / "real", {"ant": 6, "bee": 6, "cow": 6}, size_range=(28, 36), seed=1)
    image_folder(root / "test", {"ant": 2, "bee": 2, "cow": 2}, size_range=(28, 36), seed=2)
    tiny_stable_diffusion(root / "sd", image_size=32)
    tiny_clip(root / "clip")
    return root


def experiment(inputs, out: str, **generation) -> dict:
    return {
        "out": out,
        "data": {"real": str(inputs / "real"), "test": str(inputs / "test")},
        "generation": {"model": str(inputs / "sd"), "steps": 2, "height": 32, "width": 32, "batch_size": 4,
                       "dtype": "fp32", "device": "cpu", **generation},
        "style": {"enabled": False},
        "training": {"model": "test_resnet", "pretrained": "none", "modes": ["vanilla", "bridged"], "seeds": [0, 1],
                     "epochs": 1, "batch_size": 6, "image_size": 32, "lr": 0.05, "device": "cpu", "min_steps": 0},
        "report": {"samples_per_class": 2, "max_classes": 3, "judge_steps": 5},
    }


def run(raw: dict, base) -> list[str]:
    log: list[str] = []
    run_experiment(parse_experiment(raw, base=base), progress=False, log=log.append)
    return log


def ran(log: list[str]) -> list[str]:
    return [line.split("] ", 1)[1].split(":")[0] for line in log if line.startswith(("[run]", "[redo]", "[resume]"))]


def test_volume_sweep_generates_once_and_adding_a_volume_reruns_only_what_it_must(inputs, tmp_path):
    raw = experiment(inputs, "out", per_class=[2, 3, 4])
    log = run(raw, tmp_path)
    out = tmp_path / "out"
    assert [s for s in ran(log) if s.startswith("generate")] == ["generate"]
    store = ImageStore(out / "synthetic")
    assert len(store) == 12 and json.loads((out / ".steps" / "generate.done.json").read_text())["result"]["total"] == 12
    for v in (2, 3, 4):
        for seed in (0, 1):
            res = json.loads((out / "train" / f"bridged-all-seed{seed}-v{v}" / "results.json").read_text())
            assert res["data"]["synthetic_images"] == 3 * v and res["config"]["synthetic_per_class"] == v
            assert res["data"]["synthetic"] == str((out / "synthetic").resolve())
    assert sorted(p.name for p in (out / "train").iterdir()) == sorted(
        ["vanilla-all-seed0", "vanilla-all-seed1"] + [f"bridged-all-seed{s}-v{v}" for s in (0, 1) for v in (2, 3, 4)])
    report = (out / "report.md").read_text()
    assert "## Volume study" in report and "](volume.png)" in report and (out / "volume.png").is_file()
    top1 = [json.loads((out / "train" / f"bridged-all-seed{s}-v3" / "results.json").read_text())["test_top1"]
            for s in (0, 1)]
    mean = sum(top1) / 2
    std = (sum((t - mean) ** 2 for t in top1)) ** 0.5  # sample std of two values: |a - b| / sqrt(2)
    assert f"| bridged | all | 3 | 2 | {100 * mean:.2f} ± {100 * std:.2f} | 9 images, " in report
    assert "| vanilla | all | 0 (real only) | 2 |" in report
    assert "| bridged | all | v3 |" in report  # the results table names each group's study point
    images = [store.image(i).numpy().tobytes() for i in range(12)]

    raw["generation"]["per_class"] = [2, 3, 4, 5]
    log = run(raw, tmp_path)
    # The grown store is measured again (KID, class faithfulness: they read its images).
    assert ran(log) == ["generate", "train-bridged-all-seed0-v5", "train-bridged-all-seed1-v5", "kid", "faithfulness"]
    store = ImageStore(out / "synthetic")
    assert len(store) == 15 and [store.image(i).numpy().tobytes() for i in range(12)] == images
    assert "| bridged | all | 5 | 2 |" in (out / "report.md").read_text()

    raw["generation"]["per_class"] = [3, 4]
    assert ran(run(raw, tmp_path)) == []  # every point already trained: nothing to do


def test_guidance_sweep_makes_one_store_per_value(inputs, tmp_path):
    (tmp_path / "prompts.json").write_text(json.dumps({"ant": ["an ant", "ants"], "bee": ["a bee"], "cow": ["a cow"]}))
    raw = experiment(inputs, "out", per_class=2, guidance_scale=[1.0, 7.5], prompts="prompts.json")
    raw["training"].update(modes=["bridged"], seeds=[0])
    log = run(raw, tmp_path)
    out = tmp_path / "out"
    assert sorted(s for s in ran(log) if s.startswith("generate")) == ["generate-g1", "generate-g7.5"]
    for g in (1.0, 7.5):
        store = ImageStore(out / f"synthetic-g{g:g}")
        assert len(store) == 6 and {store.meta(i)["guidance_scale"] for i in range(6)} == {g}
        assert [store.meta(i)["prompt"] for i in range(6)] == ["an ant", "ants", "a bee", "a bee", "a cow", "a cow"]
        res = json.loads((out / "train" / f"bridged-all-seed0-g{g:g}" / "results.json").read_text())
        assert res["data"]["synthetic"] == str((out / f"synthetic-g{g:g}").resolve())
    report = (out / "report.md").read_text()
    assert "## Guidance study" in report and (out / "guidance.png").is_file() and "## Volume study" not in report
    assert "| bridged | all | 1 | 1 |" in report and "| bridged | all | 7.5 | 1 |" in report


def test_img2img_from_the_runs_own_few_shot_images_and_filtering(inputs, tmp_path):
    raw = experiment(inputs, "out", per_class=3, init="real", strength=0.5)
    raw["data"]["shots"] = [2]
    raw["training"].update(modes=["bridged"], seeds=[0])
    raw["filter"] = {"enabled": True, "keep": 0.5, "clip_model": str(inputs / "clip"), "device": "cpu"}
    run(raw, tmp_path)
    out = tmp_path / "out"
    subset = ImageStore(out / "data" / "real-train-2shot-split0")
    assert len(subset) == 6
    split = json.loads((out / "train" / "bridged-2shot-seed0" / "split.json").read_text())
    real = ImageStore(out / "data" / "real-train")
    # The init images are the training run's own two images per class, in store order.
    assert [subset.image(k).numpy().tobytes() for k in range(6)] == [real.image(i).numpy().tobytes()
                                                                      for i in split["indices"]]
    generated = ImageStore(out / "synthetic-2shot-split0")
    metas = [generated.meta(i) for i in range(len(generated))]
    assert [(m["class_index"], m["image_index"], m["init_index"]) for m in metas] == [
        (c, i, 2 * c + i % 2) for c in range(3) for i in range(3)]
    assert all(m["init_store"] == str(subset.path.resolve()) and m["strength"] == 0.5 for m in metas)
    kept = ImageStore(out / "synthetic-2shot-split0-filtered")
    assert len(kept) == 6 and all("filter_score" in kept.meta(i) for i in range(6))  # round(0.5 x 3) = 2 per class
    res = json.loads((out / "train" / "bridged-2shot-seed0" / "results.json").read_text())
    assert res["data"]["synthetic"] == str(kept.path.resolve()) and res["data"]["synthetic_images"] == 6


@pytest.mark.parametrize("mutate, message", [
    (lambda g, f: g.update(per_class=[10, 0]), "generation.per_class[1] must be positive"),
    (lambda g, f: g.update(per_class=[10, 10]), "generation.per_class lists a value twice"),
    (lambda g, f: g.update(guidance_scale=[7.5, "high"]), "generation.guidance_scale[1] must be a number"),
    (lambda g, f: g.update(guidance_scale=[]), "generation.guidance_scale must be a number or a non-empty list"),
    (lambda g, f: g.update(init="fake"), "unknown generation.init 'fake'"),
    (lambda g, f: g.update(strength=0.5), "generation.strength applies to img2img only"),
    (lambda g, f: g.update(prompts="missing.yaml"), "generation.prompts: 'missing.yaml' does not exist"),
    (lambda g, f: g.update(template=["a {}", "a photo"]), "generation.template[1] 'a photo' must contain"),
    (lambda g, f: f.update(enabled=True), "filter.clip_model is required with filter.by: clip"),
    (lambda g, f: f.update(enabled=True, by="classifier", classifier="nope"), "filter.classifier: 'nope' does not exist"),
    (lambda g, f: f.update(keep=0), "filter.keep must be in (0, 1]"),
    (lambda g, f: f.update(kepp=0.5), "unknown key 'filter.kepp' (did you mean 'keep'?)"),
])
def test_bad_study_keys_are_refused_before_any_work(tmp_path, capsys, mutate, message):
    (tmp_path / "real" / "a").mkdir(parents=True)
    raw = {"out": "out", "data": {"real": "real", "test": "real"}, "generation": {"model": "org/some-model"},
           "filter": {}, "training": {"modes": ["vanilla", "bridged"]}}
    mutate(raw["generation"], raw["filter"])
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(raw))
    assert cli_main(["run", str(tmp_path / "experiment.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out").exists()
