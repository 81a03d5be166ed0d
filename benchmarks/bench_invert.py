"""Dataset style inversion steps/s: bridgedfast vs a plain diffusers-style textual-inversion loop.

  python benchmarks/bench_invert.py                      # CPU, the tiny model at 32 px
  python benchmarks/bench_invert.py --device cuda        # GPU, an SD1.5-sized model at 512 px
  python benchmarks/bench_invert.py --device cuda --model /path/to/stable-diffusion-v1-5

The peer, `PlainTextualInversion`, is a minimal re-implementation of the training step of
diffusers' examples/textual_inversion/textual_inversion.py: fp32 everywhere, the VAE encodes the
batch every step, the whole token-embedding matrix receives gradients and AdamW updates, then every
row but the new token's is restored from a copy. Its input pixels are preprocessed once and held
in memory (the script decodes and resizes images with PIL every step), so only model work is
timed. Both sides run the same model, batch, resolution, templates and random draws; with the
same draws they compute the same loss (the tests check that the two trajectories agree).
The sides take interleaved timing turns and each reports its best turn (and the median), so
that load from other processes on a shared machine does not favour whichever ran first.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import Result, compare, save  # noqa: E402

from bridgedfast.invert.images import open_images, preprocess  # noqa: E402
from bridgedfast.invert.train import DEFAULT_TEMPLATES, StyleTrainer, format_prompts, step_draws  # noqa: E402
from bridgedfast.sd import load_pipeline, model_fingerprint  # noqa: E402


class PlainTextualInversion:
    """diffusers' textual-inversion example, one training step at a time (see the module doc).

    It works on copies of the tokenizer and text encoder (the script loads its own), so the given
    pipeline is left as it was."""

    def __init__(
        self,
        pipe,
        source,
        *,
        token: str,
        init_word: str,
        lr: float,
        batch_size: int,
        resolution: int,
        seed: int,
        templates=DEFAULT_TEMPLATES,
        flip_p: float = 0.5,
        weight_decay: float = 1e-2,
        device: str | torch.device = "cpu",
    ) -> None:
        from diffusers import DDPMScheduler

        device = torch.device(device)
        self.device, self.seed, self.batch_size, self.flip_p = device, seed, batch_size, flip_p
        self.templates, self.source = list(templates), source
        self.tokenizer = copy.deepcopy(pipe.tokenizer)
        self.tokenizer.add_tokens(token)
        self.token_id = self.tokenizer.convert_tokens_to_ids(token)
        init_ids = self.tokenizer.encode(init_word, add_special_tokens=False)
        self.text_encoder = copy.deepcopy(pipe.text_encoder).float().to(device)
        # The script resizes to len(tokenizer); never shrink a matrix that is already larger
        # (a random-weight SD1.5-sized model with a small tokenizer), so the dense [V, D] work
        # stays that of the real 49408-row CLIP vocabulary.
        rows = self.text_encoder.get_input_embeddings().weight.shape[0]
        self.text_encoder.resize_token_embeddings(max(len(self.tokenizer), rows), mean_resizing=False)
        embeds = self.text_encoder.get_input_embeddings().weight.data
        embeds[self.token_id] = embeds[init_ids].mean(0)
        self.vae = pipe.vae.float().to(device)
        self.unet = pipe.unet.float().to(device)
        self.vae.requires_grad_(False)
        self.unet.requires_grad_(False)
        self.text_encoder.requires_grad_(True)  # as freshly loaded in the script
        text_model = getattr(self.text_encoder, "text_model", self.text_encoder)  # transformers < 5 nests it
        text_model.encoder.requires_grad_(False)
        text_model.final_layer_norm.requires_grad_(False)
        text_model.embeddings.position_embedding.requires_grad_(False)
        self.text_encoder.train()
        self.optimizer = torch.optim.AdamW(
            self.text_encoder.get_input_embeddings().parameters(), lr=lr, betas=(0.9, 0.999), weight_decay=weight_decay, eps=1e-8
        )
        self.orig_embeds_params = self.text_encoder.get_input_embeddings().weight.data.clone()
        self.index_no_updates = torch.ones(self.orig_embeds_params.shape[0], dtype=torch.bool, device=device)
        self.index_no_updates[self.token_id] = False
        self.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        prompts = format_prompts(self.templates, source.classes, token)
        self.prompt_ids = self.tokenizer(
            prompts, padding="max_length", truncation=True, max_length=self.tokenizer.model_max_length, return_tensors="pt"
        ).input_ids
        pixels = torch.stack([preprocess(source.image(i), resolution) for i in range(len(source))])
        self.pixels = {False: pixels, True: pixels.flip(-1)}
        self.labels = torch.tensor([source.label(i) for i in range(len(source))])
        factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.latent_shape = (self.vae.config.latent_channels, resolution // factor, resolution // factor)

    @property
    def embedding(self) -> torch.Tensor:
        return self.text_encoder.get_input_embeddings().weight[self.token_id].detach()

    def train_step(self, step: int) -> torch.Tensor:
        d = step_draws(
            self.seed,
            step,
            num_images=len(self.source),
            batch_size=self.batch_size,
            flip_p=self.flip_p,
            num_templates=len(self.templates),
            num_timesteps=self.scheduler.config.num_train_timesteps,
            latent_shape=self.latent_shape,
        )
        pixel_values = torch.stack([self.pixels[bool(f)][int(i)] for i, f in zip(d.images, d.flips)]).to(self.device)
        dist = self.vae.encode(pixel_values).latent_dist
        # == latent_dist.sample() with this step's eps
        latents = (dist.mean + dist.std * d.latent_eps.to(self.device)).detach() * self.vae.config.scaling_factor
        noise = d.noise.to(self.device)
        timesteps = d.timesteps.to(self.device)
        noisy_latents = self.scheduler.add_noise(latents, noise, timesteps)
        input_ids = self.prompt_ids[d.templates * len(self.source.classes) + self.labels[d.images]].to(self.device)
        encoder_hidden_states = self.text_encoder(input_ids)[0]
        model_pred = self.unet(noisy_latents, timesteps, encoder_hidden_states).sample
        if self.scheduler.config.prediction_type == "epsilon":
            target = noise
        else:
            target = self.scheduler.get_velocity(latents, noise, timesteps)
        loss = F.mse_loss(model_pred.float(), target.float(), reduction="mean")
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        with torch.no_grad():
            self.text_encoder.get_input_embeddings().weight[self.index_no_updates] = self.orig_embeds_params[self.index_no_updates]
        return loss.detach()


def ours_trainer(pipe, source, args, *, dtype=None, cache_root: Path):
    from bridgedfast.devices import resolve_training_dtype as auto_dtype

    device = torch.device(args.device)
    keys = [source.key(i) for i in range(len(source))]
    return StyleTrainer(
        pipe,
        source,
        token="<dataset-style>",
        init_word="photo",
        lr=2e-3,
        batch_size=args.batch,
        resolution=args.resolution,
        seed=0,
        templates=DEFAULT_TEMPLATES,
        flip_p=0.5,
        weight_decay=1e-2,
        device=device,
        dtype=dtype or auto_dtype("auto", device),
        cache_root=cache_root,
        fingerprint=model_fingerprint(pipe),
        content_keys=keys,
        gradient_checkpointing=args.gradient_checkpointing,
        compile=args.compile,
        progress=False,
    )


def stepper(trainer):
    counter = iter(range(10**9))
    return lambda: trainer.train_step(next(counter))


def build_case(args, tmp: Path):
    from bridgedfast.testing import image_folder, sd15_sized_stable_diffusion, tiny_stable_diffusion

    if args.model == "tiny":
        model = tiny_stable_diffusion(tmp / "tiny-sd")
    elif args.model == "sd15":
        model = sd15_sized_stable_diffusion(Path(args.model_cache).expanduser())
    else:
        model = args.model
    lo, hi = int(args.resolution * 0.75), int(args.resolution * 1.25)
    data = image_folder(tmp / "images", ["class_a", "class_b"], per_class=args.images // 2, size_range=(lo, hi))
    return model, open_images(data)


def interleaved_steps_per_second(contenders: dict, device: torch.device, *, rounds: int, round_time: float) -> dict:
    """{name: (best, median steps/s, process CPU-seconds per step in the best turn)}. The contenders take turns, `rounds` times, each running
    about `round_time` seconds per turn: on a shared machine a burst of load then hits every
    side alike, and the best turn is the least disturbed one."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    per_turn = {}
    for name, fn in contenders.items():
        fn(), fn()  # warm-up (and compilation, if any)
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        per_turn[name] = max(1, round(round_time / max(time.perf_counter() - t0, 1e-6)))
    seconds = {name: [] for name in contenders}
    cpu_seconds = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            sync()
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(per_turn[name]):
                fn()
            sync()
            seconds[name].append((time.perf_counter() - t0) / per_turn[name])
            cpu_seconds[name].append((time.process_time() - c0) / per_turn[name])
    return {name: (1.0 / min(ts), 1.0 / statistics.median(ts), min(cpu_seconds[name])) for name, ts in seconds.items()}


def run_case(args, model, source, tmp: Path) -> list[dict]:
    from bridgedfast.devices import resolve_training_dtype as auto_dtype

    device = torch.device(args.device)
    weight_dtype = auto_dtype(args.dtype, device)
    pipe = load_pipeline(model, torch_dtype=weight_dtype).to(device)
    if device.type == "cuda":
        pipe.unet.to(memory_format=torch.channels_last)
    pipe32 = pipe if weight_dtype == torch.float32 else load_pipeline(model, torch_dtype=torch.float32).to(device)
    with contextlib.ExitStack() as stack:
        ours = stack.enter_context(ours_trainer(pipe, source, args, dtype=weight_dtype, cache_root=tmp / "cache"))
        ours_name = f"bridgedfast ({str(ours.dtype).removeprefix('torch.')}, cached latents, one-row token)"
        contenders = {ours_name: stepper(ours)}
        if pipe32 is not pipe:
            ablation = stack.enter_context(ours_trainer(pipe32, source, args, dtype=torch.float32, cache_root=tmp / "cache"))
            contenders["ablation: bridgedfast in fp32"] = stepper(ablation)
        # The plain loop trains copies of the tokenizer and text encoder; it only freezes pipe32's modules.
        plain = PlainTextualInversion(
            pipe32, source, token="<dataset-style>", init_word="photo", lr=2e-3, batch_size=args.batch, resolution=args.resolution, seed=0, device=device
        )
        contenders["plain diffusers-style loop (fp32, VAE every step)"] = stepper(plain)
        rates = interleaved_steps_per_second(contenders, device, rounds=args.rounds, round_time=args.round_time)
    results = [
        Result(name, best, unit="steps/s", extra=f"median {median:.2f} steps/s, {cpu:.3f} CPU-s/step")
        for name, (best, median, cpu) in rates.items()
    ]
    title = f"style inversion steps/s (best of {args.rounds} interleaved turns), {args.model} model, batch {args.batch} at {args.resolution} px"
    return compare(title, results[0], results[:0:-1], args.device)


# pytest-benchmark entry points (CPU, tiny model)
def _tiny_args(**kw):
    return argparse.Namespace(device="cpu", batch=4, resolution=32, images=8, dtype="auto", gradient_checkpointing=False, compile=False, **kw)


def test_invert_step_ours(benchmark, tmp_path):
    args = _tiny_args(model="tiny")
    model, source = build_case(args, tmp_path)
    pipe = load_pipeline(model)
    with ours_trainer(pipe, source, args, cache_root=tmp_path / "cache") as trainer:
        benchmark(stepper(trainer))


def test_invert_step_plain(benchmark, tmp_path):
    args = _tiny_args(model="tiny")
    model, source = build_case(args, tmp_path)
    plain = PlainTextualInversion(
        load_pipeline(model), source, token="<dataset-style>", init_word="photo", lr=2e-3, batch_size=4, resolution=32, seed=0
    )
    benchmark(stepper(plain))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default=None, help="tiny | sd15 (SD1.5-sized, random weights) | a diffusers folder (default: tiny on CPU, sd15 on GPU)")
    ap.add_argument("--model-cache", default="~/.cache/bridgedfast/sd15-sized", help="where the SD1.5-sized model is built once")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--resolution", type=int, default=None, help="default: 32 for the tiny model, else 512")
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timing turns per side")
    ap.add_argument("--round-time", type=float, default=2.0, help="seconds per turn")
    ap.add_argument("--dtype", default="auto", help="our dtype: auto (bf16 on GPU, fp32 on CPU), fp32, fp16, bf16")
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--compile", action="store_true", help="torch.compile our UNet")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of a few seconds, not for quoting")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.round_time, args.images, args.batch = 1, 0.5, 4, 2
        args.model = args.model or "tiny"
    torch.set_num_threads(args.threads)
    on_gpu = args.device.startswith("cuda")
    args.model = args.model or ("sd15" if on_gpu else "tiny")
    args.resolution = args.resolution or (32 if args.model == "tiny" else 512)
    with tempfile.TemporaryDirectory() as tmp:
        model, source = build_case(args, Path(tmp))
        rows = run_case(args, model, source, Path(tmp))
    print("saved", save("invert", rows, args.device))


if __name__ == "__main__":
    main()
