"""`bridgedfast filter`: the kept set equals what stock transformers CLIP (or a trained classifier,
scored through torchvision's eval transforms) ranks best per class, bytes and metadata copied,
resume after kill -9, and every bad input as one line with nothing written. Tiny CLIP built
locally, tiny stores."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bridgedfast.cli import main
from bridgedfast.data import ImageStore, ImageStoreWriter
from bridgedfast.filter import filter_store, kept_indices
from bridgedfast.testing import tiny_clip

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["cat", "red_car"]


@pytest.fixture(scope="session")
def clip(tmp_path_factory):
    return tiny_clip(tmp_path_factory.getbasetemp() / "tiny-clip")


def make_synthetic(path: Path, per_class: int = 5, encoding: str = "raw", seed: int = 0) -> Path:
    """A store laid out as `bridgedfast generate` writes one: class-major, with image metadata."""
    g = torch.Generator().manual_seed(seed)
    with ImageStoreWriter(path, CLASSES, encoding=encoding) as w:
        for c in range(len(CLASSES)):
            for i in range(per_class):
                size = (24 + 4 * i, 32) if i % 2 else (32, 28)
                img = torch.randint(0, 256, (*size, 3), generator=g, dtype=torch.uint8).numpy()
                w.add(img, c, {"class_index": c, "image_index": i, "seed": 100 * c + i, "prompt": f"p{c}{i}"})
    (path / "generation.json").write_text(json.dumps({"config": {"per_class": per_class}}))
    return path


@pytest.fixture
def synthetic(tmp_path):
    return make_synthetic(tmp_path / "synthetic")


def stock_clip_scores(folder: Path, store: ImageStore, template: str = "a photo of a {}") -> np.ndarray:
    """Each image's similarity to its class prompt, straight from transformers' CLIPModel."""
    from transformers import CLIPModel, CLIPProcessor

    model, processor = CLIPModel.from_pretrained(str(folder)).eval(), CLIPProcessor.from_pretrained(str(folder))
    prompts = [template.format(c.replace("_", " ")) for c in store.classes]
    images = [store.image(i).numpy() for i in range(len(store))]
    with torch.inference_mode():
        out = model(**processor(text=prompts, images=images, padding=True, return_tensors="pt"))
        cosine = out.logits_per_image / model.logit_scale.exp()
    return cosine[torch.arange(len(store)), store.labels].numpy()


def read(path):
    store = ImageStore(path)
    return store, [store.encoded(i).numpy().tobytes() for i in range(len(store))], [store.meta(i) for i in range(len(store))]


def test_kept_indices_by_hand():
    scores = np.array([0.1, 0.9, 0.5, 0.5, 0.3, 7.0, -1.0, 2.0], np.float32)
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    # class 0: round(0.5 x 5) = 3 (half up) best: 0.9, then the tie 0.5/0.5 (both); class 1: round(1.5) = 2.
    assert kept_indices(scores, labels, 0.5).tolist() == [1, 2, 3, 5, 7]
    # keep 0.4: class 0 round(2.0) = 2 (the earlier 0.5 wins the tie), class 1 round(1.2) = 1
    assert kept_indices(scores, labels, 0.4).tolist() == [1, 2, 5]
    assert kept_indices(scores, labels, 0.01).tolist() == [1, 5]  # at least one per class
    assert kept_indices(scores, labels, 1.0).tolist() == list(range(8))


@pytest.mark.parametrize("encoding", ["raw", "jpeg"])
def test_clip_filter_keeps_what_stock_clip_ranks_best(clip, tmp_path, encoding):
    src_path = make_synthetic(tmp_path / "synthetic", encoding=encoding)
    report = filter_store(src_path, tmp_path / "kept", keep=0.6, by="clip", clip_model=clip, batch_size=3,
                          device="cpu", progress=False)
    src = ImageStore(src_path)
    ref = stock_clip_scores(clip, src)
    expected = [int(i) for c in range(2) for i in sorted(np.flatnonzero(src.labels.numpy() == c)[
        np.argsort(-ref[src.labels.numpy() == c], kind="stable")[:3]])]
    assert report.kept == 6 and report.images == 10 and report.per_class == {"cat": [3, 5], "red_car": [3, 5]}
    out, data, metas = read(tmp_path / "kept")
    assert out.classes == CLASSES and out.encoding == src.encoding
    assert [m["seed"] for m in metas] == [src.meta(i)["seed"] for i in sorted(expected)]
    for k, i in enumerate(sorted(expected)):
        assert data[k] == src.encoded(i).numpy().tobytes()
        assert {key: v for key, v in metas[k].items() if key != "filter_score"} == src.meta(i)
        assert metas[k]["filter_score"] == pytest.approx(float(ref[i]), abs=1e-5)
    manifest = json.loads((tmp_path / "kept" / "filter.json").read_text())
    assert manifest["status"] == "complete" and manifest["scored"] == 10 and manifest["source_per_class"] == 5
    again = filter_store(src_path, tmp_path / "kept", keep=0.6, by="clip", clip_model=clip, device="cpu", progress=False)
    assert again.scored == 0 and len(ImageStore(tmp_path / "kept")) == 6


def test_score_template_changes_the_prompts(clip, synthetic, tmp_path):
    filter_store(synthetic, tmp_path / "kept", keep=0.5, clip_model=clip, score_template="a rendering of a {}",
                 device="cpu", progress=False)
    ref = stock_clip_scores(clip, ImageStore(synthetic), "a rendering of a {}")
    _, _, metas = read(tmp_path / "kept")
    src = ImageStore(synthetic)
    by_seed = {src.meta(i)["seed"]: ref[i] for i in range(len(src))}
    assert all(m["filter_score"] == pytest.approx(float(by_seed[m["seed"]]), abs=1e-5) for m in metas)


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory):
    """A tiny classifier trained for one epoch on real images of the two classes."""
    from bridgedfast.data import pack
    from bridgedfast.testing import image_folder
    from bridgedfast.transfer import TrainConfig, train

    root = tmp_path_factory.mktemp("classifier")
    real = pack(image_folder(root / "real", {"cat": 8, "red_car": 8}, size_range=(30, 40)), root / "store",
                progress=False)
    out = root / "run"
    train(TrainConfig(model="test_resnet", real_train=str(real.path), real_test=str(real.path), out=str(out),
                      mode="vanilla", pretrained="none", epochs=1, min_steps=0, batch_size=8, image_size=32, device="cpu",
                      progress=False))
    return out


def stock_classifier_scores(run: Path, store: ImageStore) -> np.ndarray:
    """Own-class probabilities with timm and torchvision's resize + centre crop + normalize."""
    import timm
    from safetensors.torch import load_file
    from torchvision.transforms import v2

    res = json.loads((run / "results.json").read_text())
    d = res["data"]
    model = timm.create_model(res["model"], num_classes=res["num_classes"])
    model.load_state_dict(load_file(str(run / "model.safetensors")))
    model.eval()
    size = d["image_size"]
    tf = v2.Compose([v2.Resize(int(size / d["eval_crop_pct"]), antialias=True), v2.CenterCrop(size),
                     v2.ToDtype(torch.float32, scale=True), v2.Normalize(d["mean"], d["std"])])
    x = torch.stack([tf(store.image(i).permute(2, 0, 1)) for i in range(len(store))])
    with torch.inference_mode():
        probs = model(x).softmax(-1)
    columns = torch.tensor([res["classes"].index(c) for c in store.classes])[store.labels]
    return probs[torch.arange(len(store)), columns].numpy()


def test_classifier_filter_keeps_what_the_classifier_ranks_best(classifier_run, synthetic, tmp_path):
    report = filter_store(synthetic, tmp_path / "kept", keep=0.4, by="classifier", classifier=classifier_run,
                          batch_size=4, device="cpu", progress=False)
    src = ImageStore(synthetic)
    ref = stock_classifier_scores(classifier_run, src)
    labels = src.labels.numpy()
    expected = kept_indices(ref, labels, 0.4)
    for c in range(2):  # the kept/dropped boundary is far above the two pipelines' rounding differences
        own = np.sort(ref[labels == c])[::-1]
        assert own[1] - own[2] > 1e-4, own
    _, _, metas = read(tmp_path / "kept")
    assert report.kept == 4 and [m["seed"] for m in metas] == [src.meta(int(i))["seed"] for i in expected]
    assert all(m["filter_score"] == pytest.approx(float(ref[int(i)]), abs=1e-4)
               for m, i in zip(metas, expected))


# -- CLI: resume after kill -9, one-line errors ----------------------------------------------------------
def run_cli(argv: list[str], env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env_extra or {})}
    head = [str(ROOT / "tests" / "crashpoints.py")] if env_extra else ["-m", "bridgedfast"]
    return subprocess.run([sys.executable, *head, *argv], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_resume_after_kill_9_equals_the_uninterrupted_filter(clip, synthetic, tmp_path):
    args = lambda out: ["filter", str(synthetic), "--out", str(out), "--keep", "0.6", "--clip-model", str(clip),
                        "--batch-size", "3", "--device", "cpu", "--no-progress"]  # noqa: E731
    reference = run_cli(args(tmp_path / "ref") + ["--json"])
    assert reference.returncode == 0, reference.stderr
    killed = run_cli(args(tmp_path / "out"), {"BRIDGEDFAST_TEST_KILL_AFTER_SCORED": "2"})
    assert killed.returncode == -9, killed.stderr
    assert json.loads((tmp_path / "out" / "filter.json").read_text())["scored"] == 6
    resumed = run_cli(args(tmp_path / "out") + ["--json"])
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["scored"] == 4
    assert read(tmp_path / "out")[1:] == read(tmp_path / "ref")[1:]
    assert (tmp_path / "out" / "filter-scores.f32").read_bytes() == (tmp_path / "ref" / "filter-scores.f32").read_bytes()


@pytest.mark.parametrize("change,message", [
    ({"synthetic": "/nonexistent/store"}, "'/nonexistent/store' does not exist"),
    ({"--clip-model": None}, "needs a CLIP model folder"),
    ({"--clip-model": "NOT_CLIP"}, "is not a transformers CLIP folder"),
    ({"--by": "classifier"}, "needs a trained run"),
    ({"--by": "classifier", "--classifier": "/nonexistent/run"}, "'/nonexistent/run' does not exist"),
    ({"--keep": "0"}, "--keep must be in (0, 1], got 0.0"),
    ({"--keep": "1.5"}, "--keep must be in (0, 1], got 1.5"),
    ({"--score-template": "a photo"}, "--score-template 'a photo' must contain"),
    ({"--out": "SYNTHETIC"}, "is the synthetic store itself"),
])
def test_cli_errors_are_one_line_exit_2_and_write_nothing(clip, synthetic, tmp_path, capsys, change, message):
    (tmp_path / "not-clip").mkdir()
    values = {"synthetic": str(synthetic), "--out": str(tmp_path / "kept"), "--clip-model": str(clip)}
    values.update({k: {"NOT_CLIP": str(tmp_path / "not-clip"), "SYNTHETIC": str(synthetic)}.get(v, v)
                   for k, v in change.items()})
    argv = ["filter", values.pop("synthetic"), "--device", "cpu", "--no-progress"]
    for key, value in values.items():
        if value is not None:
            argv += [key, value]
    before = sorted(p.name for p in synthetic.iterdir())
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bridgedfast filter: error:") and message in err[0], err
    assert not (tmp_path / "kept").exists()
    assert sorted(p.name for p in synthetic.iterdir()) == before


def test_a_changed_configuration_is_refused(clip, synthetic, tmp_path, capsys):
    argv = ["filter", str(synthetic), "--out", str(tmp_path / "kept"), "--clip-model", str(clip), "--device", "cpu",
            "--no-progress"]
    assert main(argv + ["--keep", "0.6"]) == 0
    assert main(argv + ["--keep", "0.4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "different configuration" in err and "keep (existing 0.6, now 0.4)" in err
