"""Dataset style inversion on the tiny Stable Diffusion (CPU), checked against stock diffusers."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bridgedfast.invert import StyleTextEncoder, invert_style, load_style, read_style, save_style
from bridgedfast.invert.images import open_images, preprocess
from bridgedfast.invert.train import DEFAULT_TEMPLATES, StyleTrainer, init_embedding
from bridgedfast.testing import image_folder

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "<tiny-style>"
FAST = dict(resolution=32, progress=False)  # the tiny model's native size


@pytest.fixture(scope="session")
def images(tmp_path_factory) -> Path:
    return image_folder(tmp_path_factory.mktemp("images") / "real", ["cat", "dog_breed"], per_class=4)


def stock_pipeline(folder: Path):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(str(folder), safety_checker=None, requires_safety_checker=False)


def copy_images(src: Path, dst: Path) -> Path:
    for f in sorted(src.rglob("*.png")):
        (dst / f.parent.name).mkdir(parents=True, exist_ok=True)
        (dst / f.parent.name / f.name).write_bytes(f.read_bytes())
    return dst


def report(out: Path) -> dict:
    return json.loads(out.with_name(f"{out.stem}.report.json").read_text())


@pytest.fixture(scope="session")
def trained(tiny_sd, images, tmp_path_factory):
    """One training run on a pipeline object (to check nothing in it changed)."""
    pipe = stock_pipeline(tiny_sd)
    out = tmp_path_factory.mktemp("trained") / "style.safetensors"
    invert_style(pipe, images, out, token=TOKEN, steps=12, lr=5e-3, seed=3, **FAST)
    return pipe, out


def eval_loss(tiny_sd: Path, images: Path, style: Path) -> float:
    """Noise-prediction MSE of a stock pipeline with `style` loaded, on a fixed set of latents
    (stock VAE posterior means), noise and timesteps."""
    from diffusers import DDPMScheduler

    pipe = stock_pipeline(tiny_sd)
    pipe.load_textual_inversion(str(style), token=TOKEN)
    source = open_images(images)
    g = torch.Generator().manual_seed(1234)
    pixels = torch.stack([preprocess(source.image(i), 32) for i in range(len(source))])
    with torch.no_grad():
        latents = (pipe.vae.encode(pixels).latent_dist.mean * pipe.vae.config.scaling_factor).repeat(8, 1, 1, 1)
        noise = torch.randn(latents.shape, generator=g)
        timesteps = torch.randint(0, 1000, (latents.shape[0],), generator=g)
        noisy = DDPMScheduler.from_config(pipe.scheduler.config).add_noise(latents, noise, timesteps)
        embeds, _ = pipe.encode_prompt(f"a photo in the style of {TOKEN}", "cpu", latents.shape[0], False)
        return F.mse_loss(pipe.unet(noisy, timesteps, embeds).sample, noise).item()


def test_loss_on_fixed_eval_set_falls(trained, tiny_sd, images, tmp_path):
    _, out = trained
    start = save_style(tmp_path / "init.safetensors", TOKEN, init_embedding(stock_pipeline(tiny_sd), "photo"))
    before, after = eval_loss(tiny_sd, images, start), eval_loss(tiny_sd, images, out)
    # A random tiny UNet listens little to its prompt, so the gain is small but deterministic.
    assert after < before - 1e-4, (before, after)
    losses = report(out)["losses"]
    assert len(losses) == 12 and all(torch.isfinite(torch.tensor(losses)))
    assert out.with_name("style.loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_only_the_new_token_row_changes(trained, tiny_sd):
    pipe, out = trained
    fresh = stock_pipeline(tiny_sd)
    # The pipeline handed to invert_style is bit-for-bit what it was, tokenizer included.
    for name in ("unet", "vae", "text_encoder"):
        for (key, a), (_, b) in zip(getattr(pipe, name).state_dict().items(), getattr(fresh, name).state_dict().items()):
            assert torch.equal(a, b), f"{name}.{key} changed"
    assert len(pipe.tokenizer) == len(fresh.tokenizer)
    assert all(p.requires_grad for p in pipe.unet.parameters())  # flags restored

    # Stock loading of the result: every weight identical to the base model except the new row.
    styled = stock_pipeline(tiny_sd)
    styled.load_textual_inversion(str(out), token=TOKEN)
    token_id = styled.tokenizer.convert_tokens_to_ids(TOKEN)
    assert token_id == len(fresh.tokenizer)
    for name in ("unet", "vae"):
        for (key, a), (_, b) in zip(getattr(styled, name).state_dict().items(), getattr(fresh, name).state_dict().items()):
            assert torch.equal(a, b), f"{name}.{key} differs"
    base, new = fresh.text_encoder.state_dict(), styled.text_encoder.state_dict()
    emb_key = next(k for k in new if k.endswith("token_embedding.weight"))
    for key in base:
        if key != emb_key:
            assert torch.equal(base[key], new[key]), key
    assert torch.equal(new[emb_key][:token_id], base[emb_key])
    file_token, vector = read_style(out)
    assert file_token == TOKEN and torch.equal(new[emb_key][token_id], vector)
    assert not torch.equal(vector, init_embedding(fresh, "photo"))


def test_file_is_a_diffusers_embedding_and_prompt_embeddings_match(trained, tiny_sd):
    from safetensors import safe_open

    _, out = trained
    with safe_open(str(out), framework="pt") as f:
        assert list(f.keys()) == [TOKEN]
        assert f.get_tensor(TOKEN).shape == (1, 32) and f.get_tensor(TOKEN).dtype == torch.float32
        assert json.loads(f.metadata()["bridgedfast"])["token"] == TOKEN

    prompts = [f"a photo of a cat in the style of {TOKEN}", f"{TOKEN}", "a photo of a dog"]
    styled = stock_pipeline(tiny_sd)
    styled.load_textual_inversion(str(out))  # the token comes from the file
    with torch.no_grad():
        stock, _ = styled.encode_prompt(prompts, "cpu", 1, False)
        ours = StyleTextEncoder(stock_pipeline(tiny_sd), TOKEN, read_style(out)[1])
        mine = ours(ours.tokenize(prompts))
    assert torch.equal(stock, mine)

    # load_style: stock loading, returns the token, idempotent, refuses a clash.
    pipe = stock_pipeline(tiny_sd)
    assert load_style(pipe, out) == TOKEN and load_style(pipe, out) == TOKEN
    clash = save_style(out.with_name("other.safetensors"), TOKEN, torch.zeros(32))
    with pytest.raises(ValueError, match="already in the pipeline"):
        load_style(pipe, clash)


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_invert", ROOT / "benchmarks" / "bench_invert.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_steps_match_a_plain_diffusers_textual_inversion_loop(tiny_sd, images, tmp_path):
    """Same draws -> same loss and embedding as diffusers' example loop (VAE every step, whole
    matrix trained then restored), so the speed-ups change nothing but speed."""
    from bridgedfast.sd import load_pipeline, model_fingerprint

    bench = load_bench()
    source = open_images(images)
    kw = dict(token=TOKEN, init_word="photo", lr=1e-2, batch_size=4, resolution=32, seed=5, templates=DEFAULT_TEMPLATES, flip_p=0.5, weight_decay=1e-2)
    pipe = load_pipeline(tiny_sd)
    keys = [source.key(i) for i in range(len(source))]
    with StyleTrainer(
        pipe, source, device=torch.device("cpu"), dtype=torch.float32, cache_root=tmp_path, fingerprint=model_fingerprint(pipe), content_keys=keys, progress=False, **kw
    ) as ours:
        ours_losses = [float(ours.train_step(k)) for k in range(3)]
        ours_vector = ours.vector.detach().clone()
    plain = bench.PlainTextualInversion(load_pipeline(tiny_sd), source, **kw)
    plain_losses = [float(plain.train_step(k)) for k in range(3)]
    assert ours_losses == pytest.approx(plain_losses, rel=1e-5, abs=1e-6)
    torch.testing.assert_close(ours_vector, plain.embedding, rtol=0, atol=1e-5)
    assert not torch.allclose(ours_vector, init_embedding(pipe, "photo"))


def test_latent_cache_hit_and_invalidation(tiny_sd, images, tmp_path):
    data = copy_images(images, tmp_path / "data")
    pipe = stock_pipeline(tiny_sd)
    calls = []
    encode = pipe.vae.encode
    pipe.vae.encode = lambda x, *a, **k: (calls.append(x.shape[0]), encode(x, *a, **k))[1]
    out = tmp_path / "out" / "s.safetensors"
    n = 8 * 2  # images x orientations

    invert_style(pipe, data, out, token=TOKEN, steps=1, encode_batch_size=6, **FAST)
    assert report(out)["latent_cache"] | {"folder": None} == {"encoded": n, "reused": 0, "folder": None}
    assert sum(calls) == n  # and none while training

    calls.clear()
    invert_style(pipe, data, out, token=TOKEN, steps=1, resume=False, **FAST)
    assert report(out)["latent_cache"]["encoded"] == 0 and calls == []

    changed = sorted((data / "cat").glob("*.png"))[1]
    from PIL import Image

    Image.new("RGB", (20, 30), (250, 10, 10)).save(changed)
    invert_style(pipe, data, out, token=TOKEN, steps=1, resume=False, **FAST)
    stats = report(out)["latent_cache"]
    assert (stats["encoded"], stats["reused"]) == (2, n - 2) and sum(calls) == 2

    with torch.no_grad():
        for p in pipe.vae.parameters():
            p.mul_(1.01)  # a different model: a different cache
    invert_style(pipe, data, out, token=TOKEN, steps=1, resume=False, **FAST)
    assert report(out)["latent_cache"]["encoded"] == n
    assert len(list((out.parent / "bridgedfast-latents").iterdir())) == 2


class Interrupt(Exception):
    pass


def test_resume_continues_to_the_uninterrupted_result(tiny_sd, images, tmp_path):
    pipe = stock_pipeline(tiny_sd)
    kw = dict(token=TOKEN, steps=6, lr=5e-3, batch_size=2, checkpoint_every=2, cache_dir=tmp_path / "cache", **FAST)
    whole = invert_style(pipe, images, tmp_path / "whole.safetensors", **kw)

    def stop_at_5(step: int, loss: float) -> None:
        if step == 5:
            raise Interrupt

    out = tmp_path / "resumed.safetensors"
    with pytest.raises(Interrupt):
        invert_style(pipe, images, out, callback=stop_at_5, **kw)
    assert not out.exists()  # never a half-written output
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    invert_style(pipe, images, out, **kw)  # the same call again
    assert report(out)["resumed_from_step"] == 4 and report(out)["steps_trained_this_run"] == 2
    assert torch.equal(read_style(out)[1], read_style(whole)[1])
    assert report(out)["losses"] == report(whole)["losses"]

    # A constant schedule may be extended; a changed setting is refused with its name.
    longer = invert_style(pipe, images, out, **(kw | {"steps": 7}))
    assert report(longer)["resumed_from_step"] == 6
    with pytest.raises(ValueError, match="different configuration.*lr"):
        invert_style(pipe, images, out, **(kw | {"lr": 1e-3}))


@pytest.mark.parametrize(
    "change, error, match",
    [
        ({"token": "photo"}, ValueError, "already in the tokenizer's vocabulary"),
        ({"token": "a b"}, ValueError, "without spaces"),
        ({"data": "missing"}, FileNotFoundError, "does not exist"),
        ({"data": "empty"}, ValueError, "no images found"),
        ({"model": "missing"}, FileNotFoundError, "does not exist"),
        ({"out": "style.pt"}, ValueError, "must be a .safetensors file"),
        ({"init_word": ""}, ValueError, "init word"),
        ({"resolution": 33}, ValueError, "multiple of"),
        ({"steps": 0}, ValueError, "steps must be a positive integer"),
        ({"templates": ["a photo of {class}"]}, ValueError, "must contain"),
        ({"resume": "nowhere.safetensors"}, FileNotFoundError, "to resume from does not exist"),
        ({"dtype": "fp64"}, ValueError, "unknown dtype"),
        ({"out": "folder.safetensors"}, ValueError, "is a folder"),
        ({"flip_p": 1.5}, ValueError, "flip_p must be in"),
        ({"lr": -1.0}, ValueError, "lr must be a positive number"),
        ({"lr_schedule": "linear"}, ValueError, "unknown lr_schedule"),
        ({"warmup_steps": -1}, ValueError, "warmup_steps must be"),
        ({"weight_decay": -0.1}, ValueError, "weight_decay must be"),
        ({"seed": "x"}, ValueError, "seed must be an integer"),
        ({"batch_size": 0}, ValueError, "batch_size must be a positive integer"),
    ],
)
def test_bad_input_gives_a_clear_error(tiny_sd, images, tmp_path, change, error, match):
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    (tmp_path / "folder.safetensors").mkdir()
    args = {"model": tiny_sd, "data": images, "out": tmp_path / "style.safetensors"}
    paths = {k: tmp_path / k for k in ("missing", "empty", "style.pt", "folder.safetensors")}
    for key, value in change.items():
        args[key] = paths.get(value, value) if isinstance(value, str) else value
    model, data, out = args.pop("model"), args.pop("data"), args.pop("out")
    with pytest.raises(error, match=match):
        invert_style(model, data, out, **{"steps": 1, "token": TOKEN, **FAST, **args})
    assert not (tmp_path / "style.safetensors").exists()


def test_damaged_image_or_checkpoint_is_named(tiny_sd, images, tmp_path):
    pipe = stock_pipeline(tiny_sd)
    data = copy_images(images, tmp_path / "data")
    (data / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image .*broken.png"):
        invert_style(pipe, data, tmp_path / "a.safetensors", token=TOKEN, steps=1, **FAST)
    (tmp_path / "b.ckpt.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="b.ckpt.safetensors.* is not a bridgedfast style checkpoint"):
        invert_style(pipe, images, tmp_path / "b.safetensors", token=TOKEN, steps=1, **FAST)
    assert not (tmp_path / "a.safetensors").exists() and not (tmp_path / "b.safetensors").exists()


def test_an_existing_added_token_is_refused(tiny_sd, images, trained, tmp_path):
    pipe = stock_pipeline(tiny_sd)
    pipe.load_textual_inversion(str(trained[1]), token=TOKEN)
    with pytest.raises(ValueError, match=f"token '{TOKEN}' is already in the tokenizer's vocabulary"):
        invert_style(pipe, images, tmp_path / "s.safetensors", token=TOKEN, steps=1, **FAST)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "bridgedfast", "invert", *args], capture_output=True, text=True, env=env, timeout=300)


def test_cli_writes_a_loadable_file(tiny_sd, images, tmp_path):
    out = tmp_path / "cli" / "style.safetensors"
    proc = run_cli("--model", str(tiny_sd), "--data", str(images), "--out", str(out), "--steps", "1", "--resolution", "32", "--token", TOKEN, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert read_style(out)[0] == TOKEN and f"wrote {out}" in proc.stdout
    assert out.with_name("style.ckpt.safetensors").is_file() and out.with_name("style.loss.png").is_file()


def test_cli_bad_input_exits_2_with_one_line(tiny_sd, tmp_path):
    out = tmp_path / "style.safetensors"
    proc = run_cli("--model", str(tiny_sd), "--data", str(tmp_path / "nope"), "--out", str(out), "--resolution", "32")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("bridgedfast invert: error:") and "nope" in lines[-1] and "Traceback" not in proc.stderr
    assert not out.exists()


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_cuda_mixed_precision_run(tiny_sd, images, tmp_path, dtype):
    out = invert_style(tiny_sd, images, tmp_path / "s.safetensors", token=TOKEN, steps=4, device="cuda", dtype=dtype, **FAST)
    assert torch.isfinite(torch.tensor(report(out)["losses"])).all()
    pipe = stock_pipeline(tiny_sd)
    pipe.load_textual_inversion(str(out), token=TOKEN)
    assert torch.isfinite(read_style(out)[1]).all()


@pytest.mark.cuda
def test_cuda_fp32_step_matches_cpu(tiny_sd, images, tmp_path):
    from bridgedfast.sd import load_pipeline

    source = open_images(images)
    kw = dict(token=TOKEN, init_word="photo", lr=1e-3, batch_size=4, resolution=32, seed=0, templates=DEFAULT_TEMPLATES, flip_p=0.5,
              weight_decay=0.0, dtype=torch.float32, cache_root=tmp_path, fingerprint="f",
              content_keys=[source.key(i) for i in range(len(source))], progress=False)
    losses, grads = [], []
    for device in ("cpu", "cuda"):
        with StyleTrainer(load_pipeline(tiny_sd), source, device=torch.device(device), **kw) as trainer:
            loss = trainer.loss(trainer.draws(0))
            loss.backward()
            losses.append(float(loss))
            grads.append(trainer.vector.grad.cpu())
    assert losses[1] == pytest.approx(losses[0], rel=1e-3)  # cuDNN may use TF32 for fp32 convolutions
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=5e-3 * float(grads[0].abs().max()))


@pytest.mark.cuda
@pytest.mark.parametrize("option", ["compile", "gradient_checkpointing"])
def test_cuda_options(tiny_sd, images, tmp_path, option):
    out = invert_style(tiny_sd, images, tmp_path / "s.safetensors", token=TOKEN, steps=3, device="cuda", **{option: True}, **FAST)
    assert torch.isfinite(read_style(out)[1]).all() and torch.isfinite(torch.tensor(report(out)["losses"])).all()


def test_gradient_checkpointing_changes_nothing_but_memory(tiny_sd, images, tmp_path):
    from bridgedfast.sd import load_pipeline

    pipe, source = load_pipeline(tiny_sd), open_images(images)
    kw = dict(token=TOKEN, init_word="photo", lr=1e-3, batch_size=4, resolution=32, seed=0, templates=DEFAULT_TEMPLATES, flip_p=0.5,
              weight_decay=0.0, device=torch.device("cpu"), dtype=torch.float32, cache_root=tmp_path, fingerprint="f",
              content_keys=[source.key(i) for i in range(len(source))], progress=False)
    grads = []
    for checkpointing in (False, True):
        with StyleTrainer(pipe, source, gradient_checkpointing=checkpointing, **kw) as trainer:
            assert pipe.unet.is_gradient_checkpointing == checkpointing
            trainer.loss(trainer.draws(0)).backward()
            grads.append(trainer.vector.grad.clone())
        assert not pipe.unet.is_gradient_checkpointing  # restored
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-9)
    assert grads[0].abs().sum() > 0


def test_image_store_input_equals_folder_input(tiny_sd, images, tmp_path):
    data = pytest.importorskip("bridgedfast.data")
    source = open_images(images)
    with data.ImageStoreWriter(tmp_path / "store", source.classes) as writer:
        for i in range(len(source)):
            writer.add(source.image(i), source.label(i))
    kw = dict(token=TOKEN, steps=1, lr=5e-3, cache_dir=tmp_path / "c", **FAST)
    pipe = stock_pipeline(tiny_sd)
    from_folder = invert_style(pipe, images, tmp_path / "folder.safetensors", **kw)
    from_store = invert_style(pipe, data.ImageStore(tmp_path / "store"), tmp_path / "store.safetensors", **kw)
    from_path = invert_style(pipe, tmp_path / "store", tmp_path / "path.safetensors", **kw)
    assert torch.equal(read_style(from_folder)[1], read_style(from_store)[1])
    assert torch.equal(read_style(from_store)[1], read_style(from_path)[1])
    assert report(from_path)["latent_cache"]["encoded"] == 0  # the store's entries, cached by the run before
    with data.ImageStoreWriter(tmp_path / "empty", source.classes):
        pass
    with pytest.raises(ValueError, match="holds no images"):
        invert_style(pipe, tmp_path / "empty", tmp_path / "empty.safetensors", **kw)


def test_bf16_mixed_precision_path_on_cpu(tiny_sd, images, tmp_path):
    """The GPU recipe (frozen models loaded in bf16, autocast, fp32 token) on the CPU."""
    kw = dict(token=TOKEN, steps=1, lr=5e-3, cache_dir=tmp_path / "c", **FAST)
    bf16 = invert_style(tiny_sd, images, tmp_path / "bf16.safetensors", dtype="bf16", **kw)
    fp32 = invert_style(tiny_sd, images, tmp_path / "fp32.safetensors", dtype="fp32", **kw)
    assert report(bf16)["config"]["dtype"] == "bfloat16"
    assert report(bf16)["losses"] == pytest.approx(report(fp32)["losses"], rel=0.05)
    vector = read_style(bf16)[1]
    assert vector.dtype == torch.float32 and torch.isfinite(vector).all()
    assert len(list((tmp_path / "c").iterdir())) == 2  # bf16 latents are cached apart from fp32 ones


class _MeanStdVAE(torch.nn.Module):
    """A stand-in VAE encoder: posterior mean = 2x2 average of the pixels, std = 0.1 + mean^2;
    counts the images it encodes."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.encoded = 0

    def encode(self, x):
        from types import SimpleNamespace

        self.encoded += len(x)
        mean = torch.nn.functional.avg_pool2d(x, 2) * self.scale
        return SimpleNamespace(latent_dist=SimpleNamespace(mean=mean, std=0.1 + mean * mean))


def test_latent_cache_shard_with_fewer_rows_than_keys_is_a_miss(tmp_path):
    from safetensors.torch import save_file

    from bridgedfast.invert.latents import encode_latents

    class Source:
        def image(self, i):
            return torch.full((6, 8, 3), 40 * i, dtype=torch.uint8)

    keys = ["k0", "k1", "k2"]
    vae = _MeanStdVAE()
    kw = dict(resolution=4, flips=False, folder=tmp_path / "cache", batch_size=8, progress=False)
    mean, std, stats = encode_latents(vae, Source(), keys, **kw)
    assert stats.encoded == 3 and vae.encoded == 3
    # Hand computation: a constant image 40*i maps to 40*i/127.5 - 1 everywhere.
    assert torch.allclose(mean[:, 0, 0, 0], torch.tensor([-1.0, 40 / 127.5 - 1, 80 / 127.5 - 1]))
    (shard,) = (tmp_path / "cache").glob("shard-*.safetensors")
    # The same shard cut to 2 rows while its metadata still lists 3 keys (a damaged or hand-made file).
    save_file({"mean": mean[:2].contiguous(), "std": std[:2].contiguous()}, str(shard),
              metadata={"keys": json.dumps(["k0:0", "k1:0", "k2:0"])})
    with pytest.warns(UserWarning, match="ignoring unreadable latent cache shard .*3 keys but mean \\(2, 3, 2, 2\\)"):
        again, again_std, stats = encode_latents(vae, Source(), keys, **kw)
    assert stats.encoded == 3 and stats.reused == 0 and vae.encoded == 6
    assert torch.equal(again, mean) and torch.equal(again_std, std)
