"""Generation controls for the studies: img2img against stock diffusers'
StableDiffusionImg2ImgPipeline (epsilon and v-prediction models, batch 1 and 3, two schedulers),
template lists and prompts files against hand-computed prompts, growing per_class, init_image,
and every bad input as one clear error with nothing written. Tiny random SD, 32x32 images."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from bridgedfast.data import ImageStore, ImageStoreWriter
from bridgedfast.generate import Generator, init_image, seed_for

STEPS = 4
SIZE = 32
CLASSES = ["cat", "red_car"]
SCHEDULERS = {"ddim": "DDIMScheduler", "euler-a": "EulerAncestralDiscreteScheduler"}


@pytest.fixture(scope="session")
def vpred_sd(tiny_sd, tmp_path_factory):
    """The tiny model with a v-prediction scheduler configuration."""
    folder = tmp_path_factory.getbasetemp() / "tiny-sd-vpred"
    if not folder.exists():
        shutil.copytree(tiny_sd, folder)
        path = folder / "scheduler" / "scheduler_config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "prediction_type": "v_prediction"}))
    return folder


@pytest.fixture(scope="module")
def gen(tiny_sd):
    return Generator(tiny_sd, device="cpu")


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """Init images of odd sizes: 2 of cat, 3 of red_car, plus a class generation does not use."""
    path = tmp_path_factory.mktemp("real") / "store"
    g = torch.Generator().manual_seed(0)
    with ImageStoreWriter(path, ["cat", "dog", "red_car"]) as w:
        for label, (h, w_) in [(0, (20, 40)), (1, (32, 32)), (2, (48, 30)), (0, (36, 36)), (2, (32, 32)), (2, (17, 50))]:
            w.add(torch.randint(0, 256, (h, w_, 3), generator=g, dtype=torch.uint8).numpy(), label)
    return path


def read_store(path):
    store = ImageStore(path)
    return [store.image(i).numpy().copy() for i in range(len(store))], [store.meta(i) for i in range(len(store))]


def max_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


# -- img2img equals stock diffusers -----------------------------------------------------------------
@pytest.mark.parametrize("model", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("batch_size,scheduler", [(1, "ddim"), (3, "euler-a"), (3, "ddim"), (1, "euler-a")])
def test_img2img_equals_stock_img2img_pipeline(tiny_sd, vpred_sd, real, tmp_path, model, batch_size, scheduler):
    import diffusers

    folder = tiny_sd if model == "epsilon" else vpred_sd
    g = Generator(folder, device="cpu", scheduler=scheduler)
    report = g.generate(CLASSES, 3, tmp_path / "out", steps=STEPS, height=SIZE, width=SIZE, seed=4, strength=0.6,
                        init_images=real, batch_size=batch_size, progress=False)
    assert report.images == 6
    images, metas = read_store(tmp_path / "out")
    # cat's images are store images 0 and 3, red_car's 2, 4 and 5: image i takes number i mod n of its class.
    assert [(m["class_index"], m["image_index"], m["init_index"]) for m in metas] == [
        (0, 0, 0), (0, 1, 3), (0, 2, 0), (1, 0, 2), (1, 1, 4), (1, 2, 5)]
    assert all(m["init_store"] == str(real.resolve()) and m["strength"] == 0.6 for m in metas)
    stock = diffusers.StableDiffusionImg2ImgPipeline.from_pretrained(str(folder))
    stock.scheduler = getattr(diffusers, SCHEDULERS[scheduler]).from_config(stock.scheduler.config)
    assert stock.scheduler.config.prediction_type == model
    stock.set_progress_bar_config(disable=True)
    store = ImageStore(real)
    picks = [0, 4] if batch_size == 1 else range(6)  # every image of the batched run, two of the other
    for k in picks:
        m = metas[k]
        assert m["seed"] == seed_for(4, m["class_index"], m["image_index"])
        out = stock(m["prompt"], image=init_image(store.image(m["init_index"]), SIZE, SIZE), strength=0.6,
                    num_inference_steps=STEPS, guidance_scale=7.5,
                    generator=torch.Generator("cpu").manual_seed(m["seed"]), output_type="np")
        ref = np.round(out.images[0] * 255).astype(np.uint8)
        assert max_diff(images[k], ref) <= 2, k
    assert max_diff(images[0], images[2]) > 10  # same init image, different seeds: different images


def test_img2img_from_a_folder_equals_from_its_store(gen, real, tmp_path):
    """A folder of class sub-folders is read in `pack`'s order: the same images as its store."""
    from PIL import Image

    store = ImageStore(real)
    for i in range(len(store)):
        folder = tmp_path / "photos" / store.classes[int(store.labels[i])]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(store.image(i).numpy()).save(folder / f"{i:02d}.png")
    args = dict(steps=2, height=SIZE, width=SIZE, strength=0.5, batch_size=3, progress=False)
    gen.generate(CLASSES, 2, tmp_path / "a", init_images=real, **args)
    gen.generate(CLASSES, 2, tmp_path / "b", init_images=tmp_path / "photos", **args)
    (a, ma), (b, mb) = read_store(tmp_path / "a"), read_store(tmp_path / "b")
    assert [m["init_index"] for m in ma] == [0, 3, 2, 4]  # store order: cat, dog, red_car, cat, red_car, red_car
    assert [m["init_index"] for m in mb] == [0, 1, 3, 4]  # folder order: class by class
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_init_image_resizes_to_cover_then_crops_the_centre():
    plain = np.full((32, 32, 3), 77, np.uint8)
    assert np.array_equal(np.asarray(init_image(plain, 32, 32)), plain)  # already the size: unchanged
    wide = np.zeros((16, 48, 3), np.uint8)
    wide[:, 16:32] = 255  # the middle third is white
    out = np.asarray(init_image(torch.from_numpy(wide), 32, 32))  # scaled x2 to 32x96, the centre 32x32 kept
    assert out.shape == (32, 32, 3) and init_image(wide, 32, 32).mode == "RGB"
    assert (out[:, 6:26] >= 250).all() and out.mean() > 240  # no black from the cropped-off thirds
    tall = np.asarray(init_image(np.full((100, 10, 3), 9, np.uint8), 24, 16))
    assert tall.shape == (24, 16, 3) and (tall == 9).all()
    with pytest.raises(ValueError, match="uint8"):
        init_image(np.zeros((8, 8), np.uint8), 8, 8)
    with pytest.raises(ValueError, match="height"):
        init_image(plain, 0, 8)


def test_img2img_manifest_keys_the_init_images_by_content(gen, real, tmp_path):
    args = dict(steps=2, height=SIZE, width=SIZE, batch_size=4, progress=False)
    gen.generate(["cat"], 1, tmp_path / "out", init_images=real, **args)
    cfg = json.loads((tmp_path / "out" / "generation.json").read_text())["config"]
    assert cfg["strength"] == 0.75 and len(cfg["init_images"]["fingerprint"]) == 64
    moved = tmp_path / "moved"
    shutil.copytree(real, moved)
    assert gen.generate(["cat"], 1, tmp_path / "out", init_images=moved, **args).images == 0  # same images: resumes
    with pytest.raises(ValueError, match="strength"):
        gen.generate(["cat"], 1, tmp_path / "out", init_images=real, strength=0.5, **args)
    with pytest.raises(ValueError, match="init_images"):
        gen.generate(["cat"], 1, tmp_path / "out", **args)


# -- prompts --------------------------------------------------------------------------------------------
def test_template_list_gives_image_i_template_i_mod_t(gen, tiny_sd, tmp_path):
    templates = ["a photo of a {}", "a drawing of a {}"]
    gen.generate(CLASSES, 3, tmp_path / "out", template=templates, steps=2, height=SIZE, width=SIZE, batch_size=3,
                 progress=False)
    images, metas = read_store(tmp_path / "out")
    assert [m["prompt"] for m in metas] == ["a photo of a cat", "a drawing of a cat", "a photo of a cat",
                                            "a photo of a red car", "a drawing of a red car", "a photo of a red car"]
    assert json.loads((tmp_path / "out" / "generation.json").read_text())["config"]["template"] == templates
    # Image (1, 1) is the image a one-template run with its prompt makes for the same seed.
    gen.generate(CLASSES, 2, tmp_path / "single", template="a drawing of a {}", steps=2, height=SIZE, width=SIZE,
                 batch_size=3, progress=False)
    single, single_metas = read_store(tmp_path / "single")
    assert single_metas[3]["prompt"] == "a drawing of a red car"
    assert max_diff(images[4], single[3]) <= 1
    assert max_diff(images[3], images[4]) > 0


def test_a_single_template_in_a_list_keys_as_the_template(gen, tmp_path):
    args = dict(steps=2, height=SIZE, width=SIZE, progress=False)
    gen.generate(["cat"], 1, tmp_path / "out", template="a photo of a {}", **args)
    assert gen.generate(["cat"], 1, tmp_path / "out", template=["a photo of a {}"], **args).images == 0


def _style_file(path):
    from safetensors.torch import save_file

    save_file({"<sty>": torch.randn(1, 32, generator=torch.Generator().manual_seed(0))}, str(path))
    return path


def test_prompts_file_gives_image_i_prompt_i_mod_n_and_places_the_style(gen, tmp_path):
    prompts = tmp_path / "prompts.yaml"
    prompts.write_text("red_car: ['a red car, {style}, at night']\ncat:\n  - a cat on a sofa\n  - a sleeping cat\n")
    gen.generate(CLASSES, 3, tmp_path / "out", prompts=prompts, style=_style_file(tmp_path / "s.safetensors"), steps=2,
                 height=SIZE, width=SIZE, batch_size=4, progress=False)
    _, metas = read_store(tmp_path / "out")
    assert [m["prompt"] for m in metas] == [
        "a cat on a sofa in the style of <sty>", "a sleeping cat in the style of <sty>",
        "a cat on a sofa in the style of <sty>", "a red car, <sty>, at night", "a red car, <sty>, at night",
        "a red car, <sty>, at night"]
    cfg = json.loads((tmp_path / "out" / "generation.json").read_text())["config"]
    assert len(cfg["prompts"]["sha256"]) == 64
    as_json = tmp_path / "prompts.json"  # the same prompts as JSON: the same output, resumed
    as_json.write_text(json.dumps({"cat": ["a cat on a sofa", "a sleeping cat"], "red_car": ["a red car, {style}, at night"]}))
    again = gen.generate(CLASSES, 3, tmp_path / "out", prompts=as_json, style=tmp_path / "s.safetensors", steps=2,
                         height=SIZE, width=SIZE, progress=False)
    assert again.images == 0 and again.skipped == 6
    as_json.write_text(json.dumps({"cat": ["a cat"], "red_car": ["a red car, {style}, at night"]}))
    with pytest.raises(ValueError, match="prompts.sha256"):
        gen.generate(CLASSES, 3, tmp_path / "out", prompts=as_json, style=tmp_path / "s.safetensors", steps=2,
                     height=SIZE, width=SIZE, progress=False)


@pytest.mark.parametrize("text,match", [
    ("cat: [a cat]\nred_car: [a car]\nbus: [a bus]\n", "unknown classes 'bus'"),
    ("cat: [a cat]\n", "no prompts for classes 'red_car'"),
    ("cat: []\nred_car: [a car]\n", "class 'cat' must have a non-empty list"),
    ("cat: [a cat, 3]\nred_car: [a car]\n", "class 'cat' must have a non-empty list"),
    ("- a cat\n", "must map class names to lists of prompts"),
    ("cat: [unclosed\n", "not valid YAML or JSON"),
    ("cat: ['{style} cat']\nred_car: [a car]\n", "no style file was given"),
])
def test_bad_prompts_files_are_refused_and_write_nothing(gen, tmp_path, text, match):
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(ValueError, match=match):
        gen.generate(CLASSES, 1, tmp_path / "out", prompts=tmp_path / "p.yaml", steps=2, height=SIZE, width=SIZE)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kwargs,match", [
    ({"prompts": "missing.yaml"}, "prompts file 'missing.yaml' does not exist"),
    ({"prompts": "p.yaml", "template": "a {}"}, "either template"),
    ({"template": ["a photo of a {}", "a photo"]}, r"template\[1\] 'a photo'"),
    ({"template": []}, "template"),
    ({"strength": 0.5}, "give init_images"),
    ({"init_images": "REAL", "strength": 0.2}, "leaves no denoising step"),
    ({"init_images": "REAL", "strength": 1.5}, "strength must be in"),
    ({"init_images": "REAL", "classes": ["cat", "horse"]}, "no image of classes 'horse'"),
    ({"init_images": "nowhere"}, "init images 'nowhere' do not exist"),
])
def test_bad_study_arguments_write_nothing(gen, real, tmp_path, kwargs, match):
    (tmp_path / "p.yaml").write_text("cat: [a cat]\n")
    kwargs = {k: (str(real) if v == "REAL" else str(tmp_path / v) if k == "prompts" and v == "p.yaml" else v)
              for k, v in kwargs.items()}
    args = {"classes": ["cat"], "per_class": 1, "steps": 2, "height": SIZE, "width": SIZE, "progress": False, **kwargs}
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        gen.generate(out=tmp_path / "out", **args)
    assert not (tmp_path / "out").exists()


# -- growing per_class ---------------------------------------------------------------------------------------
def test_per_class_grows_an_existing_output_and_never_shrinks(gen, tmp_path):
    args = dict(steps=2, height=SIZE, width=SIZE, batch_size=3, progress=False)
    gen.generate(CLASSES, 2, tmp_path / "grown", **args)
    report = gen.generate(CLASSES, 3, tmp_path / "grown", **args)
    assert report.skipped == 4 and report.images == 2 and report.total == 6
    gen.generate(CLASSES, 3, tmp_path / "fresh", **args)
    grown, gm = read_store(tmp_path / "grown")
    fresh, fm = read_store(tmp_path / "fresh")
    by_item = {(m["class_index"], m["image_index"]): (img, m) for img, m in zip(fresh, fm)}
    assert sorted((m["class_index"], m["image_index"]) for m in gm) == sorted(by_item)
    for img, m in zip(grown, gm):
        ref, ref_meta = by_item[(m["class_index"], m["image_index"])]
        assert m == ref_meta and max_diff(img, ref) <= 1
    manifest = json.loads((tmp_path / "grown" / "generation.json").read_text())
    assert manifest["config"]["per_class"] == 3 and manifest["status"] == "complete"
    with pytest.raises(ValueError, match="per_class can only grow"):
        gen.generate(CLASSES, 2, tmp_path / "grown", **args)


# -- the command line ------------------------------------------------------------------------------------------
def cli(argv: list[str], env_extra: dict | None = None):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", **(env_extra or {})}
    head = [str(root / "tests" / "crashpoints.py")] if env_extra else ["-m", "bridgedfast"]
    return subprocess.run([sys.executable, *head, *argv], env=env, capture_output=True, text=True, timeout=300, cwd=root)


def img2img_args(model, real, out, *extra) -> list[str]:
    return ["generate", "--model", str(model), "--classes", "cat,red_car", "--per-class", "3", "--out", str(out),
            "--steps", "4", "--height", "32", "--width", "32", "--batch-size", "2", "--device", "cpu", "--no-progress",
            "--init-images", str(real), "--strength", "0.5", "--template", "a photo of a {}",
            "--template", "a drawing of a {}", *extra]


def test_img2img_resume_after_kill_9_gives_the_uninterrupted_result(tiny_sd, real, tmp_path):
    reference = cli(img2img_args(tiny_sd, real, tmp_path / "ref"))
    assert reference.returncode == 0, reference.stderr
    killed = cli(img2img_args(tiny_sd, real, tmp_path / "out"), {"BRIDGEDFAST_TEST_KILL_AFTER_BATCHES": "1"})
    assert killed.returncode == -9, killed.stderr
    assert 0 < len(ImageStore(tmp_path / "out")) < 6
    resumed = cli(img2img_args(tiny_sd, real, tmp_path / "out", "--json"))
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["skipped"] == 2
    (images, metas), (ref_images, ref_metas) = read_store(tmp_path / "out"), read_store(tmp_path / "ref")
    assert metas == ref_metas and all(np.array_equal(a, b) for a, b in zip(images, ref_images))
    assert [m["prompt"] for m in metas[:3]] == ["a photo of a cat", "a drawing of a cat", "a photo of a cat"]
    assert [m["init_index"] for m in metas] == [0, 3, 0, 2, 4, 5]


@pytest.mark.parametrize("change,message", [
    (["--strength", "0.5"], "strength applies to img2img only"),
    (["--init-images", "/nonexistent/real"], "init images '/nonexistent/real' do not exist"),
    (["--prompts", "/nonexistent/p.yaml"], "prompts file '/nonexistent/p.yaml' does not exist"),
    (["--template", "a {}", "--template", "no slot"], "template[1] 'no slot' must contain"),
])
def test_cli_study_errors_are_one_line_exit_2_and_write_nothing(tiny_sd, tmp_path, capsys, change, message):
    from bridgedfast.cli import main

    argv = ["generate", "--model", str(tiny_sd), "--classes", "cat", "--per-class", "1", "--out", str(tmp_path / "out"),
            "--steps", "2", "--height", "32", "--width", "32", "--device", "cpu", "--no-progress", *change]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("bridgedfast generate: error:") and message in err[-1], err
    assert sum("error" in line for line in err) == 1
    assert not (tmp_path / "out").exists()


def test_cli_help_documents_the_study_options(capsys):
    from bridgedfast.cli import main

    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for needle in ("--template", "(default: a photo of a {})", "i mod T", "--prompts FILE", "--init-images",
                   "STORE_OR_FOLDER", "--strength", "0.75"):
        assert needle in text, needle
