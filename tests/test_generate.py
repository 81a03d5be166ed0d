"""Generation engine: images equal a stock diffusers StableDiffusionPipeline, seeds, resume
bookkeeping, style tokens, ONNX export, backends and every bad-input path. Tiny random SD,
32x32 images, few steps."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from bridgedfast.optional import MissingDependency, is_available
from bridgedfast.generate import Generator, build_scheduler, seed_for
from bridgedfast.testing import tiny_stable_diffusion

STEPS = 4
SIZE = 32
CLASSES = ["cat", "red_car"]


@pytest.fixture(scope="module")
def gen(tiny_sd):
    return Generator(tiny_sd, device="cpu")


@pytest.fixture(scope="module")
def stock(tiny_sd):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_sd))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def stock_image(stock, scheduler: str | None, prompt: str, seed: int, *, guidance_scale=7.5, negative_prompt=None,
                steps=STEPS, as_float=False) -> np.ndarray:
    """One image from the stock pipeline as the store keeps it: round(np * 255) as uint8
    (or diffusers' float output with `as_float`)."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler

    classes = {"dpmpp": DPMSolverMultistepScheduler, "euler-a": EulerAncestralDiscreteScheduler, "ddim": DDIMScheduler}
    original = stock.scheduler
    stock.scheduler = classes[scheduler].from_config(original.config)
    try:
        out = stock(prompt, num_inference_steps=steps, guidance_scale=guidance_scale, negative_prompt=negative_prompt,
                    height=SIZE, width=SIZE, generator=torch.Generator("cpu").manual_seed(seed), output_type="np")
    finally:
        stock.scheduler = original
    return out.images[0] if as_float else np.round(out.images[0] * 255).astype(np.uint8)


def read_store(path):
    from bridgedfast.data import ImageStore

    store = ImageStore(path)
    return store, [store.image(i).numpy().copy() for i in range(len(store))], [store.meta(i) for i in range(len(store))]


def max_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


# -- seeds ----------------------------------------------------------------------------------------
def test_seed_for_is_a_stable_hash():
    digest = hashlib.sha256(b"bridgedfast-generate:7:3:11").digest()
    assert seed_for(7, 3, 11) == int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)
    seeds = {seed_for(0, c, i) for c in range(20) for i in range(50)}
    assert len(seeds) == 1000
    assert seed_for(0, 1, 2) != seed_for(0, 2, 1) != seed_for(1, 1, 2)
    torch.Generator("cpu").manual_seed(max(seeds))  # in range for manual_seed
    with pytest.raises(ValueError, match="class_index"):
        seed_for(0, "1", 2)


# -- equality with stock diffusers ------------------------------------------------------------------
@pytest.mark.parametrize("batch_size,scheduler", [(1, "dpmpp"), (3, "dpmpp"), (3, "euler-a")])
def test_images_equal_stock_pipeline(tiny_sd, stock, tmp_path, batch_size, scheduler):
    g = Generator(tiny_sd, device="cpu", scheduler=scheduler)
    report = g.generate(CLASSES, 2, tmp_path / "out", steps=STEPS, height=SIZE, width=SIZE, seed=5,
                        batch_size=batch_size, progress=False)
    assert report.images == 4 and report.total == 4 and report.batch_size == batch_size
    store, images, metas = read_store(tmp_path / "out")
    assert store.classes == CLASSES
    assert [(m["class_index"], m["image_index"]) for m in metas] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert store.labels.tolist() == [0, 0, 1, 1]
    for img, meta in zip(images, metas):
        c, i = meta["class_index"], meta["image_index"]
        assert meta["seed"] == seed_for(5, c, i)
        assert meta["prompt"] == ["a photo of a cat", "a photo of a red car"][c]
        assert img.shape == (SIZE, SIZE, 3) and img.dtype == np.uint8
        ref = stock_image(stock, scheduler, meta["prompt"], meta["seed"])
        assert max_diff(img, ref) <= 2, (c, i)
    assert images[0].std() > 5  # a real image, not a constant


@pytest.mark.parametrize("guidance_scale,negative_prompt", [(4.0, "blurry picture"), (1.0, None)])
def test_negative_prompt_and_no_guidance_equal_stock(gen, stock, tmp_path, guidance_scale, negative_prompt):
    gen.generate(["cat"], 1, tmp_path / "out", steps=STEPS, height=SIZE, width=SIZE, guidance_scale=guidance_scale,
                 negative_prompt=negative_prompt, batch_size=2, progress=False)
    _, images, metas = read_store(tmp_path / "out")
    ref = stock_image(stock, "dpmpp", "a photo of a cat", seed_for(0, 0, 0), guidance_scale=guidance_scale,
                      negative_prompt=negative_prompt)
    assert max_diff(images[0], ref) <= 2
    assert metas[0]["negative_prompt"] == negative_prompt


def test_batching_never_changes_seeds(gen, tmp_path):
    imgs = {}
    for b in (1, 3):
        gen.generate(CLASSES, 2, tmp_path / f"b{b}", steps=2, height=SIZE, width=SIZE, batch_size=b, progress=False)
        _, imgs[b], metas = read_store(tmp_path / f"b{b}")
        assert [m["seed"] for m in metas] == [seed_for(0, c, i) for c in range(2) for i in range(2)]
    for b in (3,):
        assert all(max_diff(x, y) <= 1 for x, y in zip(imgs[1], imgs[b]))


def test_store_size_and_jpeg(gen, stock, tmp_path):
    gen.generate(["cat"], 1, tmp_path / "small", steps=STEPS, height=SIZE, width=SIZE, store_size=(16, 24),
                 progress=False)
    _, images, metas = read_store(tmp_path / "small")
    assert images[0].shape == (16, 24, 3)
    # Hand reference: the stock image resized with antialiased bilinear on the 0-1 scale.
    x = torch.from_numpy(stock_image(stock, "dpmpp", metas[0]["prompt"], metas[0]["seed"], as_float=True))
    ref = torch.nn.functional.interpolate(x.permute(2, 0, 1)[None], size=(16, 24), mode="bilinear", antialias=True)
    ref = (ref.clamp(0, 1) * 255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
    assert max_diff(images[0], ref) <= 2

    gen.generate(["cat"], 1, tmp_path / "jpeg", steps=2, height=SIZE, width=SIZE, encoding="jpeg", progress=False)
    store, jpeg, _ = read_store(tmp_path / "jpeg")
    assert store.encoding == "jpeg" and jpeg[0].shape == (SIZE, SIZE, 3) and jpeg[0].dtype == np.uint8


# -- reports, manifest, resume bookkeeping ---------------------------------------------------------------
def test_report_manifest_and_rerun_is_a_no_op(gen, tmp_path):
    out = tmp_path / "out"
    report = gen.generate(CLASSES, 2, out, steps=2, height=SIZE, width=SIZE, batch_size=3, progress=False)
    d = report.as_dict()
    assert d["images"] == 4 and d["seconds"] > 0 and d["images/s"] > 0 and d["UNet it/s"] > 0
    # 2 grid batches x (2 DPM++ steps) UNet calls, each with both CFG halves in one call
    assert report["UNet it/s"] == report.unet_its
    manifest = json.loads((out / "generation.json").read_text())
    assert manifest["status"] == "complete" and manifest["batch_size"] == 3
    cfg = manifest["config"]
    assert cfg["model_fingerprint"] == gen.fingerprint and cfg["classes"] == CLASSES and cfg["steps"] == 2
    assert cfg["scheduler"]["class"] == "DPMSolverMultistepScheduler"
    before = read_store(out)[1]
    again = gen.generate(CLASSES, 2, out, steps=2, height=SIZE, width=SIZE, batch_size=3, progress=False)
    assert again.images == 0 and again.skipped == 4 and again.total == 4
    after = read_store(out)[1]
    assert len(after) == 4 and all((a == b).all() for a, b in zip(before, after))


@pytest.mark.parametrize("change,key", [
    ({"steps": 3}, "steps"), ({"seed": 1}, "seed"), ({"per_class": 1}, "per_class can only grow"),
    ({"guidance_scale": 5.0}, "guidance_scale"), ({"template": "a {}"}, "template"),
    ({"classes": ["cat", "dog"]}, "classes"), ({"height": 40}, "height"),
])
def test_changed_configuration_is_refused(gen, tmp_path, change, key):
    args = dict(classes=CLASSES, per_class=2, steps=2, height=SIZE, width=SIZE, seed=0)
    gen.generate(out=tmp_path / "out", batch_size=4, progress=False, **args)
    with pytest.raises(ValueError, match=key):
        gen.generate(out=tmp_path / "out", batch_size=4, progress=False, **{**args, **change})


def test_changed_jpeg_quality_is_refused(gen, tmp_path):
    """The JPEG quality decides the stored bytes: resuming with another one would mix qualities."""
    args = dict(classes=["cat"], per_class=2, steps=2, height=SIZE, width=SIZE, encoding="jpeg", progress=False)
    gen.generate(out=tmp_path / "out", quality=90, **args)
    gen.generate(out=tmp_path / "out", quality=90, **args)  # the same command: a no-op
    with pytest.raises(ValueError, match="quality"):
        gen.generate(out=tmp_path / "out", quality=50, **args)


def test_changed_scheduler_or_model_is_refused(tiny_sd, gen, tmp_path):
    gen.generate(["cat"], 1, tmp_path / "out", steps=2, height=SIZE, width=SIZE, progress=False)
    with pytest.raises(ValueError, match="scheduler.class"):
        Generator(tiny_sd, device="cpu", scheduler="ddim").generate(["cat"], 1, tmp_path / "out", steps=2, height=SIZE,
                                                                    width=SIZE, progress=False)
    other = tiny_stable_diffusion(tmp_path / "other-sd", seed=1)
    with pytest.raises(ValueError, match="model_fingerprint"):
        Generator(other, device="cpu").generate(["cat"], 1, tmp_path / "out", steps=2, height=SIZE, width=SIZE,
                                                progress=False)


def test_partial_output_resumes_with_the_same_images(gen, tmp_path):
    """A store holding only some images of the run (as a crash leaves it) is completed with
    exactly the images an uninterrupted run makes, none duplicated."""
    from bridgedfast.data import ImageStoreWriter

    full = tmp_path / "full"
    gen.generate(CLASSES, 3, full, steps=2, height=SIZE, width=SIZE, batch_size=4, progress=False)
    _, full_images, full_metas = read_store(full)
    part = tmp_path / "part"
    gen.generate(CLASSES, 3, part, steps=2, height=SIZE, width=SIZE, batch_size=4, progress=False)
    # Rebuild `part` keeping the first 5 images: one whole grid batch and part of the next.
    import shutil

    manifest = (part / "generation.json").read_text()
    shutil.rmtree(part)
    with ImageStoreWriter(part, CLASSES) as w:
        for k in range(5):
            w.add(full_images[k], full_metas[k]["class_index"], full_metas[k])
    (part / "generation.json").write_text(manifest)
    report = gen.generate(CLASSES, 3, part, steps=2, height=SIZE, width=SIZE, batch_size="auto", progress=False)
    assert report.skipped == 5 and report.images == 1 and report.batch_size == 4  # auto keeps the recorded grid
    _, images, metas = read_store(part)
    assert [(m["class_index"], m["image_index"]) for m in metas] == [(m["class_index"], m["image_index"]) for m in full_metas]
    assert all((a == b).all() for a, b in zip(images, full_images))


def test_auto_batch_on_cpu_and_out_of_memory_back_off(tiny_sd, stock, tmp_path, monkeypatch):
    g = Generator(tiny_sd, device="cpu")
    assert g.generate(["cat"], 3, tmp_path / "auto", steps=2, height=SIZE, width=SIZE, progress=False).batch_size == 3
    # Simulate a GPU running out of memory for any sub-batch larger than 1.
    real = g.renderer.denoise_decode
    sizes = []

    def fake(items, run, static_batch):
        sizes.append(len(items))
        if len(items) > 1:
            raise torch.OutOfMemoryError("simulated")
        return real(items, run, static_batch)

    monkeypatch.setattr(g.renderer, "denoise_decode", fake)
    with pytest.warns(UserWarning, match="out of GPU memory"):
        g.generate(CLASSES, 2, tmp_path / "oom", steps=STEPS, height=SIZE, width=SIZE, batch_size=4, progress=False)
    assert sizes[:3] == [4, 2, 1] and g.renderer.chunk == 1
    _, images, metas = read_store(tmp_path / "oom")
    assert len(images) == 4
    for img, m in zip(images, metas):
        assert max_diff(img, stock_image(stock, "dpmpp", m["prompt"], m["seed"])) <= 2


def test_static_shape_padding_keeps_images(tiny_sd, stock, tmp_path):
    """The compiled backends pad the last batch to the static batch with throw-away copies (and
    their own generators): the real images must not change. Exercised here with eager kernels."""
    g = Generator(tiny_sd, device="cpu", scheduler="euler-a")
    g.unet_runner.static_shapes = True
    g.generate(CLASSES, 2, tmp_path / "out", steps=STEPS, height=SIZE, width=SIZE, batch_size=3, progress=False)
    _, images, metas = read_store(tmp_path / "out")
    for img, m in zip(images, metas):
        assert max_diff(img, stock_image(stock, "euler-a", m["prompt"], m["seed"])) <= 2


# -- style token -------------------------------------------------------------------------------------------
def test_style_token_changes_the_prompt_embedding_and_loads(tiny_sd, stock, tmp_path):
    from safetensors.torch import save_file

    vector = torch.randn(1, 32, generator=torch.Generator().manual_seed(3))
    style_file = tmp_path / "style.safetensors"
    save_file({"<dataset-style>": vector}, str(style_file))
    g = Generator(tiny_sd, device="cpu")
    plain, _ = g.encode("a photo of a cat in the style of")
    g.generate(["cat"], 1, tmp_path / "out", style=style_file, steps=STEPS, height=SIZE, width=SIZE, progress=False)
    tok = g.pipe.tokenizer
    token_id = tok.convert_tokens_to_ids("<dataset-style>")
    assert torch.equal(g.pipe.text_encoder.get_input_embeddings().weight[token_id], vector[0])
    styled, _ = g.encode("a photo of a cat in the style of <dataset-style>")
    assert not torch.allclose(plain, styled)
    _, images, metas = read_store(tmp_path / "out")
    assert metas[0]["prompt"] == "a photo of a cat in the style of <dataset-style>"
    # Stock diffusers loading the same file reproduces the image.
    from diffusers import StableDiffusionPipeline

    ref_pipe = StableDiffusionPipeline.from_pretrained(str(tiny_sd))
    ref_pipe.set_progress_bar_config(disable=True)
    ref_pipe.load_textual_inversion(str(style_file))
    ref = stock_image(ref_pipe, "dpmpp", metas[0]["prompt"], metas[0]["seed"])
    assert max_diff(images[0], ref) <= 2
    # A {style} placeholder puts the token where the template says.
    g.generate(["cat"], 1, tmp_path / "out2", style=style_file, template="{style} photo of a {}", steps=2,
               height=SIZE, width=SIZE, progress=False)
    assert read_store(tmp_path / "out2")[2][0]["prompt"] == "<dataset-style> photo of a cat"


def test_style_file_from_invert_style_loads(tiny_sd, tmp_path):
    from bridgedfast.invert import invert_style
    from bridgedfast.testing import image_folder

    real = image_folder(tmp_path / "real", ["cat", "dog"], per_class=2)
    style = invert_style(str(tiny_sd), real, tmp_path / "style.safetensors", steps=2, resolution=SIZE, device="cpu",
                         progress=False, cache_dir=tmp_path / "cache")
    g = Generator(tiny_sd, device="cpu")
    g.generate(["cat"], 1, tmp_path / "out", style=style, steps=2, height=SIZE, width=SIZE, progress=False)
    _, _, metas = read_store(tmp_path / "out")
    assert metas[0]["prompt"] == "a photo of a cat in the style of <dataset-style>"
    assert "<dataset-style>" in g.pipe.tokenizer.get_vocab()


# -- ONNX export and the TensorRT boundary ------------------------------------------------------------------
def test_onnx_export_matches_pytorch_unet_on_onnxruntime(gen, tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from bridgedfast.generate.onnx_export import check_onnx_export, export_unet_onnx

    unet = gen.pipe.unet  # with fused q/k/v projections, as the engines export it
    path = export_unet_onnx(unet, tmp_path / "unet.onnx", latent_height=16, latent_width=16)
    check = check_onnx_export(unet, path, latent_height=16, latent_width=16, batches=(1, 3))
    assert check.ok and check.max_abs_error < 1e-3
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == "batch"
    g = torch.Generator().manual_seed(0)
    for b in (2, 5):  # batch sizes other than the export's example batch
        x, e = torch.randn(b, 4, 16, 16, generator=g), torch.randn(b, 77, 32, generator=g)
        t = torch.full((b,), 321.0)
        got = session.run(None, {"sample": x.numpy(), "timestep": t.numpy(), "encoder_hidden_states": e.numpy()})[0]
        with torch.no_grad():
            ref = unet(x, t, encoder_hidden_states=e, return_dict=False)[0]
        torch.testing.assert_close(torch.from_numpy(got), ref, atol=1e-4, rtol=1e-4)


def test_onnx_check_catches_a_wrong_export(gen, tmp_path):
    pytest.importorskip("onnxruntime")
    import copy

    from bridgedfast.generate.onnx_export import check_onnx_export, export_unet_onnx

    other = copy.deepcopy(gen.pipe.unet)
    with torch.no_grad():
        other.conv_out.bias.add_(0.5)
    path = export_unet_onnx(other, tmp_path / "unet.onnx", latent_height=8, latent_width=8)
    with pytest.raises(RuntimeError, match="does not match"):
        check_onnx_export(gen.pipe.unet, path, latent_height=8, latent_width=8, batches=(1,))


@pytest.mark.parametrize("backend", ["tensorrt", "compile"])
def test_compile_and_tensorrt_backends_never_pick_xformers_attention(monkeypatch, backend):
    """The tensorrt backend exports the UNet to ONNX from an fp32 CPU copy, the compile backend
    traces it with fullgraph=True, which xformers' attention breaks: with xformers installed on a
    GPU machine, 'auto' attention must still be SDPA for both, and asking for xformers is refused."""
    from bridgedfast import optional

    monkeypatch.setattr(optional, "is_available", lambda name: True)
    monkeypatch.setattr(optional, "require", lambda name, purpose="": None)
    gen = Generator.__new__(Generator)  # attention is resolved before any model is loaded
    gen.device = torch.device("cuda", 0)
    assert gen._resolve_attention("auto", "eager") == "xformers"
    assert gen._resolve_attention("auto", backend) == "sdpa"
    with pytest.raises(ValueError, match=f"with the {backend} backend"):
        gen._resolve_attention("xformers", backend)


@pytest.mark.skipif(is_available("tensorrt"), reason="tensorrt is installed")
def test_missing_tensorrt_says_how_to_install(tiny_sd):
    with pytest.raises(MissingDependency, match="pip install"):
        Generator(tiny_sd, backend="tensorrt", device="cpu")


def test_tensorrt_engine_key_covers_model_shapes_version_and_gpu():
    from bridgedfast.generate.backends.tensorrt import engine_key

    base = engine_key("abc", {"b": 8}, "10.3", "H100 sm90")
    assert base == engine_key("abc", {"b": 8}, "10.3", "H100 sm90")
    assert len({base, engine_key("abd", {"b": 8}, "10.3", "H100 sm90"), engine_key("abc", {"b": 16}, "10.3", "H100 sm90"),
                engine_key("abc", {"b": 8}, "10.4", "H100 sm90"), engine_key("abc", {"b": 8}, "10.3", "A100 sm80")}) == 5


@pytest.mark.cuda
@pytest.mark.skipif(not is_available("tensorrt"), reason="needs tensorrt")
def test_tensorrt_backend_close_to_eager_fp16(tiny_sd, tmp_path):
    ref = Generator(tiny_sd, device="cuda", dtype="fp16")
    trt = Generator(tiny_sd, device="cuda", dtype="fp16", backend="tensorrt", cache_dir=tmp_path / "cache")
    for g, name in ((ref, "eager"), (trt, "trt")):
        g.generate(CLASSES, 2, tmp_path / name, steps=STEPS, height=SIZE, width=SIZE, batch_size=3, progress=False)
    a, b = read_store(tmp_path / "eager")[1], read_store(tmp_path / "trt")[1]
    assert all(np.abs(x.astype(float) - y).mean() < 3 for x, y in zip(a, b))
    assert list((tmp_path / "cache" / "tensorrt").glob("unet-*.plan"))


@pytest.mark.cuda
def test_cuda_eager_equals_stock_on_the_same_gpu(tiny_sd, tmp_path):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_sd)).to("cuda")
    pipe.set_progress_bar_config(disable=True)
    for dtype, limit in (("fp32", 2), ("fp16", 6)):
        g = Generator(tiny_sd, device="cuda", dtype=dtype)
        g.generate(CLASSES, 2, tmp_path / dtype, steps=STEPS, height=SIZE, width=SIZE, batch_size=3, progress=False)
        _, images, metas = read_store(tmp_path / dtype)
        pipe.to(dtype=g.dtype)
        for img, m in zip(images, metas):
            assert max_diff(img, stock_image(pipe, "dpmpp", m["prompt"], m["seed"])) <= limit, dtype


@pytest.mark.cuda
def test_cuda_compile_close_to_eager(tiny_sd, tmp_path):
    """The compile backend with its default mode (reduce-overhead: CUDA graphs) on a GPU."""
    for backend in ("eager", "compile"):
        g = Generator(tiny_sd, device="cuda", dtype="fp32", backend=backend)
        g.generate(CLASSES, 2, tmp_path / backend, steps=STEPS, height=SIZE, width=SIZE, batch_size=3, progress=False)
    a, b = read_store(tmp_path / "eager")[1], read_store(tmp_path / "compile")[1]
    assert all(np.abs(x.astype(float) - y).mean() < 1.5 and max_diff(x, y) <= 8 for x, y in zip(a, b))


@pytest.mark.cuda
def test_cuda_auto_batch_fits_and_is_capped(tiny_sd):
    # The tiny model's batch of 16 needs a few MB: the cap is what limits it on any GPU.
    assert Generator(tiny_sd, device="cuda", max_auto_batch=16).auto_batch_size(SIZE, SIZE) == 16
    assert Generator(tiny_sd, device="cuda", max_auto_batch=5).auto_batch_size(SIZE, SIZE) == 5


def test_auto_batch_from_memory_figures():
    from bridgedfast.generate.render import fit_batch

    GB = 1 << 30
    tried = []

    def fits_up_to(limit):
        def run(b):
            tried.append(b)
            if b > limit:
                raise torch.OutOfMemoryError("simulated")
        return run

    # peak(1) = 4 GB, peak(2) = 5 GB: 1 GB per image over 3 GB fixed; 10 GB free -> 0.85 * 10 = 8.5 GB
    # budget: (8.5 - 3) // 1 = 5 images.
    assert fit_batch(4 * GB, 5 * GB, 10 * GB, 16, fits_up_to(99)) == 5 and tried == [5]
    assert fit_batch(4 * GB, 5 * GB, 10 * GB, 4, fits_up_to(99)) == 4  # the cap
    assert fit_batch(4 * GB, 5 * GB, 100 * GB, 16, fits_up_to(99)) == 16  # (85 - 3) // 1 = 82, capped
    tried.clear()
    assert fit_batch(4 * GB, 5 * GB, 10 * GB, 16, fits_up_to(2)) == 2 and tried == [5, 2]  # 5 OOMs: halved
    assert fit_batch(4 * GB, 5 * GB, 3 * GB, 16, fits_up_to(99)) == 1  # (2.55 - 3) < 1: never below 1
    # A peak that does not grow with the batch counts 1 byte per image: (0.85 * 8 GB - 4 GB + 1) // 1.
    assert fit_batch(4 * GB, 4 * GB, 8 * GB, 1 << 40, fits_up_to(1 << 40)) == int(0.85 * 8 * GB) - (4 * GB - 1)


def test_last_progress_line_is_printed_once(gen, tmp_path, capsys):
    gen.generate(CLASSES, 1, tmp_path / "out", steps=1, height=SIZE, width=SIZE, batch_size=1, progress=True)
    err = capsys.readouterr().err
    states = [line for line in err.replace("\r", "\n").split("\n") if line.startswith("generate:")]
    # (how often tqdm redraws an intermediate state depends on timing: only the final line is checked)
    finals = [line for line in states if "| 2/2 [" in line]
    assert len(finals) == 1 and "UNet" in finals[0], states


def test_a_dtype_change_keeps_the_model_fingerprint(tiny_sd, gen, tmp_path):
    from bridgedfast.sd import load_pipeline, model_fingerprint

    fp32 = model_fingerprint(load_pipeline(tiny_sd))
    assert fp32 == gen.fingerprint
    for dtype in (torch.float16, torch.bfloat16):
        pipe = load_pipeline(tiny_sd, torch_dtype=dtype)
        assert model_fingerprint(pipe) == fp32, dtype
        with torch.no_grad():
            pipe.unet.conv_in.bias.add_(1.0)  # changed in memory: no longer the folder's weights
        assert model_fingerprint(pipe) != fp32, dtype
    # A folder that also holds fp16 variants of the weights (x.fp16.safetensors) keeps it too.
    import shutil

    from safetensors.torch import load_file, save_file

    variant = tmp_path / "with-variants"
    shutil.copytree(tiny_sd, variant)
    for file in variant.glob("*/*.safetensors"):
        save_file({k: v.half() for k, v in load_file(str(file)).items()}, str(file.with_name(f"{file.stem}.fp16.safetensors")))
    assert model_fingerprint(load_pipeline(variant, torch_dtype=torch.float16)) == fp32
    # A re-run in another precision is refused for its dtype, not reported as another model.
    gen.generate(["cat"], 1, tmp_path / "out", steps=1, height=SIZE, width=SIZE, progress=False)
    with pytest.raises(ValueError, match="dtype") as info:
        Generator(tiny_sd, device="cpu", dtype="bf16").generate(["cat"], 1, tmp_path / "out", steps=1, height=SIZE,
                                                                width=SIZE, progress=False)
    assert "model_fingerprint" not in str(info.value)


# -- bad inputs ------------------------------------------------------------------------------------------------
def test_bad_model_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        Generator(tmp_path / "does-not-exist", device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        Generator(tmp_path / "empty", device="cpu")


@pytest.mark.parametrize("kwargs,match", [
    ({"scheduler": "warp-drive"}, "unknown scheduler 'warp-drive'"),
    ({"backend": "onnx"}, "unknown backend 'onnx'"),
    ({"attention": "flash"}, "unknown attention 'flash'"),
    ({"dtype": "fp8"}, "unknown dtype 'fp8'"),
    ({"device": "tpu"}, "unknown device 'tpu'"),
])
def test_bad_generator_options(tiny_sd, kwargs, match):
    with pytest.raises(ValueError, match=match):
        Generator(tiny_sd, **{"device": "cpu", **kwargs})


@pytest.mark.parametrize("kwargs,match", [
    ({"classes": []}, "class list is empty"),
    ({"classes": "cat"}, "list of names"),
    ({"classes": ["cat", "cat"]}, "appears twice"),
    ({"per_class": 0}, "per_class must be a positive integer, got 0"),
    ({"per_class": -2}, "per_class must be a positive integer, got -2"),
    ({"steps": 0}, "steps"),
    ({"height": 36}, "multiples of 8"),
    ({"seed": -1}, "seed"),
    ({"guidance_scale": float("nan")}, "guidance_scale"),
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": "big"}, "batch_size"),
    ({"encoding": "png"}, "unknown encoding 'png'"),
    ({"template": "a photo"}, "template 'a photo'"),
    ({"template": "{style} {}"}, "no style file"),
    ({"store_size": (0, 8)}, "store_size"),
    ({"style": "missing.safetensors"}, "missing.safetensors"),
])
def test_bad_generate_arguments_write_nothing(gen, tmp_path, kwargs, match):
    args = {"classes": ["cat"], "per_class": 1, "steps": 2, "height": SIZE, "width": SIZE, "progress": False, **kwargs}
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        gen.generate(out=tmp_path / "out", **args)
    assert not (tmp_path / "out").exists()


def test_out_that_is_not_a_generation_is_refused(gen, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds no bridgedfast generation"):
        gen.generate(["cat"], 1, tmp_path / "busy", steps=2, height=SIZE, width=SIZE, progress=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        gen.generate(["cat"], 1, tmp_path / "file", steps=2, height=SIZE, width=SIZE, progress=False)


def test_style_file_errors(gen, tmp_path):
    (tmp_path / "style.bin").write_bytes(b"\0" * 8)
    with pytest.raises(ValueError, match="must be a .safetensors"):
        gen.generate(["cat"], 1, tmp_path / "out", style=tmp_path / "style.bin", steps=2, height=SIZE, width=SIZE)
    from safetensors.torch import save_file

    save_file({"<wide>": torch.zeros(1, 99)}, str(tmp_path / "wide.safetensors"))
    with pytest.raises(ValueError, match="does not fit this model"):
        gen.generate(["cat"], 1, tmp_path / "out", style=tmp_path / "wide.safetensors", steps=2, height=SIZE, width=SIZE)
    assert not (tmp_path / "out").exists()


def test_schedulers_by_name_build_from_the_model_config(gen):
    from bridgedfast.generate import SCHEDULERS

    for name in SCHEDULERS:
        s = build_scheduler(name, gen.pipe.scheduler)
        assert type(s).__name__ == SCHEDULERS[name][0]
        assert s.config.beta_schedule == gen.pipe.scheduler.config.beta_schedule
    assert type(build_scheduler("DDIMScheduler", gen.pipe.scheduler)).__name__ == "DDIMScheduler"
    assert build_scheduler(None, gen.pipe.scheduler) is gen.pipe.scheduler
