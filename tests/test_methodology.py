"""`bridgedfast run`'s methodology (issue 13): style inversion sees only a few-shot run's own K
images per class, the style study (one plain store, one styled per shots value), the report's
compute table, synthetic-real gap (KID) and class faithfulness against direct computations, and
the claims-vs-measured sentences on hand-made numbers."""
from __future__ import annotations

import hashlib
import json

import pytest
import torch

from bridgedfast.data import ImageStore
from bridgedfast.experiment import parse_experiment, run_experiment
from bridgedfast.experiment.claims import claims
from bridgedfast.testing import image_folder


def _ran(log: list[str]) -> list[str]:
    return [line.split("] ", 1)[1].split(":")[0] for line in log if line.startswith(("[run]", "[redo]", "[resume]"))]


@pytest.fixture(scope="module")
def study(tmp_path_factory, tiny_sd):
    """One tiny style study: shots [2, all] x style [styled, plain] x (vanilla, bridged++), one seed;
    every style inversion's input recorded."""
    import bridgedfast.invert as invert

    root = tmp_path_factory.mktemp("methodology")
    image_folder(root / "real", {"ant": 6, "bee": 6, "cow": 6}, size_range=(28, 36), seed=1)
    image_folder(root / "test", {"ant": 2, "bee": 2, "cow": 2}, size_range=(28, 36), seed=2)
    raw = {
        "out": "out", "data": {"real": "real", "test": "test", "shots": [2, None]},
        "generation": {"model": str(tiny_sd), "per_class": 3, "steps": 1, "height": 32, "width": 32, "batch_size": 9,
                       "dtype": "fp32", "device": "cpu"},
        "style": {"enabled": [True, False], "steps": 1, "batch_size": 2, "resolution": 32, "device": "cpu"},
        "training": {"model": "test_resnet", "pretrained": "none", "modes": ["vanilla", "bridged++"], "seeds": [0],
                     "epochs": 1, "batch_size": 6, "image_size": 32, "lr": 0.05, "device": "cpu", "min_steps": 0},
        "report": {"samples_per_class": 1, "max_classes": 3, "judge_steps": 5},
    }
    inputs, real_invert = [], invert.invert_style

    def recording(model, data, out, **kw):
        inputs.append((str(data), str(out)))
        return real_invert(model, data, out, **kw)

    log: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(invert, "invert_style", recording)
        run_experiment(parse_experiment(raw, base=root), progress=False, log=log.append)
    return {"out": root / "out", "raw": raw, "root": root, "inversions": inputs, "log": log}


def test_few_shot_style_sees_only_the_runs_k_images_per_class(study):
    out = study["out"]
    by_out = {o: d for d, o in study["inversions"]}
    assert sorted(by_out) == sorted([str(out / "style" / "style.safetensors"),
                                     str(out / "style-2shot-split0" / "style.safetensors")])
    assert by_out[str(out / "style" / "style.safetensors")] == str(out / "data" / "real-train")
    few = ImageStore(by_out[str(out / "style-2shot-split0" / "style.safetensors")])
    assert torch.bincount(few.labels).tolist() == [2, 2, 2]  # exactly K per class, not the 6 of the full set
    split = json.loads((out / "train" / "vanilla-2shot-seed0" / "split.json").read_text())
    real = ImageStore(out / "data" / "real-train")
    assert [few.image(k).numpy().tobytes() for k in range(6)] == [
        real.image(i).numpy().tobytes() for i in split["indices"]]
    # The 2-shot runs train on the store generated with that token, the all-shots runs on the full set's.
    for shots, store, style in (("2shot", "synthetic-2shot-split0", "style-2shot-split0"),
                                ("all", "synthetic", "style")):
        res = json.loads((out / "train" / f"bridged++-{shots}-seed0" / "results.json").read_text())
        assert res["data"]["synthetic"] == str((out / store).resolve())
        recorded = json.loads((out / store / "generation.json").read_text())["config"]["style"]["sha256"]
        assert recorded == hashlib.sha256((out / style / "style.safetensors").read_bytes()).hexdigest()


def test_style_study_one_plain_store_for_all_shots_and_one_styled_per_shots(study):
    out, log = study["out"], study["log"]
    assert sorted(s for s in _ran(log) if s.startswith(("generate", "style"))) == [
        "generate", "generate-2shot-split0", "generate-plain", "style", "style-2shot-split0"]
    plain = ImageStore(out / "synthetic-plain")
    assert len(plain) == 9 and "<dataset-style>" not in plain.meta(0)["prompt"]
    assert "<dataset-style>" in ImageStore(out / "synthetic").meta(0)["prompt"]
    assert sorted(p.name for p in (out / "train").iterdir()) == sorted(
        f"{m}-{k}-seed0{v}" for k in ("2shot", "all") for m, v in
        (("vanilla", ""), ("bridged++", ""), ("bridged++", "-plain")))
    for shots in ("2shot", "all"):
        res = json.loads((out / "train" / f"bridged++-{shots}-seed0-plain" / "results.json").read_text())
        assert res["data"]["synthetic"] == str((out / "synthetic-plain").resolve())
    report = (out / "report.md").read_text()
    assert "| bridged++ (styled) | 2 |" in report and "| bridged++ (plain) | 2 |" in report
    assert "| bridged++ (styled) | all |" in report and "| vanilla | all |" in report


def test_report_compute_table_kid_and_faithfulness_equal_direct_computations(study):
    from safetensors.torch import load_file

    from bridgedfast.metrics import class_faithfulness, kid, penultimate_features
    from bridgedfast.seeds import derive_seed
    from bridgedfast.transfer.models import create_model

    out = study["out"]
    report = (out / "report.md").read_text()
    # bridged++, all shots: stage 1 = 9 synthetic images // 6 = 1 step, stage 2 = 18 real // 6 = 3 steps.
    assert "| bridged++ (styled) | all | 1 | 1 | 3 | 4 | 18 | 6 | 24 |" in report
    assert "| vanilla | 2 | 1 | - | 1 | 1 | 6 | 0 | 6 |" in report
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed("init", 0))
        pretrained = create_model("test_resnet", 3, "none", 32)
    real = penultimate_features(pretrained, out / "data" / "real-train", image_size=32)
    # Class faithfulness: the judge, trained on the real training images only (3 of 18 held out).
    judge = json.loads((out / "judge" / "judge.json").read_text())
    assert judge["train_images"] == 15 and judge["val_images"] == 3 and judge["steps"] == 5
    classifier = create_model("test_resnet", 3, "none", 32)
    classifier.load_state_dict(load_file(str(out / "judge" / "model.safetensors")))
    assert f"its own top-1 on the 3 held-out real images: {100 * judge['val_accuracy']:.2f} %" in report
    for name, step in (("synthetic", "kid"), ("synthetic-plain", "kid-plain"),
                       ("synthetic-2shot-split0", "kid-2shot-split0")):
        mean, std = kid(real, penultimate_features(pretrained, out / name, image_size=32), seed=0)
        cached = json.loads((out / ".steps" / f"{step}.done.json").read_text())["result"]
        assert cached["mean"] == pytest.approx(mean, rel=1e-9, abs=1e-12)
        assert cached["std"] == pytest.approx(std, rel=1e-9)
        acc = class_faithfulness(classifier, out / name, ["ant", "bee", "cow"], image_size=32)
        assert f"| {name} | " in report and (f"{mean:.4g} ± {std:.2g} | 18 / 9 | {100 * acc:.2f} % of 9 | "
                                             f"{100 * judge['val_accuracy']:.2f} % of 3 |") in report
    assert "## The paper's claims vs measured here" in report and "DSI narrows the synthetic-real gap" in report


def test_rerun_is_a_no_op_measurements_included(study):
    log: list[str] = []
    run_experiment(parse_experiment(study["raw"], base=study["root"]), progress=False, log=log.append)
    assert _ran(log) == []


# ------------------------------------------------------------------------------ claims on hand-made numbers
GAP = {"stores": [
    {"name": "synthetic", "styled": True, "style_shots": None, "kid": {"mean": 0.10, "std": 0.01}},
    {"name": "synthetic-1shot-split0", "styled": True, "style_shots": 1, "kid": {"mean": 0.20, "std": 0.02}},
    {"name": "synthetic-plain", "styled": False, "style_shots": None, "kid": {"mean": 0.30, "std": 0.03}},
]}


def test_claims_that_hold():
    top1 = {("vanilla", 1, None): [0.40, 0.42], ("vanilla", None, None): [0.90, 0.92],
            ("mixed", 1, "styled"): [0.30, 0.34], ("mixed", None, "styled"): [0.80, 0.82],
            ("bridged++", 1, "styled"): [0.60, 0.62], ("bridged++", None, "styled"): [0.91, 0.93],
            ("bridged++", 1, "plain"): [0.50, 0.52], ("bridged++", None, "plain"): [0.91, 0.93]}
    text = claims(top1, GAP)
    assert len(text) == 5 and all(": holds" in t for t in text), text
    assert text[0] == ("Mixed training is below vanilla fine-tuning: holds (1-shot: mixed 32.00 ± 2.83 % (n=2) vs "
                       "vanilla 41.00 ± 1.41 % (n=2); all: mixed 81.00 ± 1.41 % (n=2) vs vanilla 91.00 ± 1.41 % (n=2))")
    assert "+20.00 points at 1-shot and +1.00 points at all" in text[2]
    assert "styled synthetic (all) 0.1 ± 0.01; synthetic-1shot-split0 (1-shot) 0.2 ± 0.02 vs plain 0.3" in text[3]


def test_claims_that_do_not_hold_and_unmeasured_ones():
    top1 = {("vanilla", 1, None): [0.40], ("vanilla", None, None): [0.90],
            ("mixed", 1, None): [0.45], ("mixed", None, None): [0.85],      # above vanilla at 1 shot
            ("bridged++", 1, None): [0.41], ("bridged++", None, None): [0.95]}  # gains most with all images
    text = claims(top1, {"stores": [GAP["stores"][0]]})
    assert text[0].startswith("Mixed training is below vanilla fine-tuning: holds at all; does not hold here at 1-shot "
                              "(1-shot: mixed 45.00")  # a claim that holds at some shots values only says where
    assert text[1].startswith("Bridged transfer++ is above vanilla fine-tuning: holds")
    assert text[2] == ("Bridged transfer++ gains most at few shots: does not hold here: the gain over vanilla is "
                       "+1.00 points at 1-shot and +5.00 points at all")
    assert "not measured here" in text[3] and len(text) == 4
    # Losing less at few shots than with all images is no gain (the demo's world once read "holds" there).
    losses = {("vanilla", 1, None): [0.40], ("vanilla", None, None): [0.90],
              ("bridged++", 1, None): [0.399], ("bridged++", None, None): [0.85]}
    assert claims(losses, {"stores": []})[2] == ("Bridged transfer++ gains most at few shots: does not hold here: the "
                                                "gain over vanilla is -0.10 points at 1-shot and -5.00 points at all")
    worse = dict(GAP, stores=[dict(GAP["stores"][0], kid={"mean": 0.5, "std": 0.1}), GAP["stores"][2]])
    styled = {("vanilla", 1, None): [0.40], ("bridged++", 1, "styled"): [0.3], ("bridged++", 1, "plain"): [0.4]}
    text = claims(styled, worse)
    assert text[0].startswith("Mixed training is below vanilla fine-tuning: not measured here")
    assert text[3].startswith("DSI narrows the synthetic-real gap (styled KID < plain KID): does not hold here")
    assert text[4].startswith("Styled bridged++ >= plain bridged++: does not hold here: 1-shot: styled 30.00")


def test_style_enabled_listed_twice_is_refused(tmp_path):
    from bridgedfast.experiment import ExperimentError

    (tmp_path / "real" / "a").mkdir(parents=True)
    raw = {"data": {"real": "real", "test": "real"}, "generation": {"model": "org/some-model"},
           "style": {"enabled": [True, True]}, "training": {"modes": ["vanilla", "bridged"]}}
    with pytest.raises(ExperimentError, match=r"style.enabled lists a value twice: \[True, True\]"):
        parse_experiment(raw, base=tmp_path)
