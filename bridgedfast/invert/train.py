"""Dataset style inversion: textual inversion of ONE new token from all real training images.

The loss is the stock latent-diffusion noise-prediction loss of diffusers' textual-inversion
example; what makes it fast is what it does not do:
- the VAE never runs during training: the images' latent posteriors are encoded once and
  cached on disk (`latents.py`);
- only one [D] vector is trained: the frozen embedding matrix is never written (the token's
  row is substituted in the embedding lookup), so there is no dense [V, D] gradient, no
  optimizer state for V rows and no restore copy after each step;
- frozen UNet / text encoder run in bf16 (fp16 + grad scaling where bf16 is missing) on GPU,
  SDPA attention, optional gradient checkpointing and torch.compile.

Every random choice of step k (images, flips, templates, timesteps, posterior sample, noise)
is drawn from generators seeded with (seed, k), so a resumed run replays exactly the draws an
uninterrupted one makes; checkpoints hold the embedding, AdamW's moments and the loss history.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..devices import resolve_device, resolve_training_dtype
from ..files import atomic_write, atomic_write_json
from ..sd import load_pipeline, model_fingerprint
from ..seeds import seeded_generator
from ..style import save_style
from .images import ImageSource, open_images
from .latents import LatentStats, cache_folder, encode_latents

DEFAULT_TEMPLATES: tuple[str, ...] = (
    # class-agnostic: the style alone
    "a photo in the style of {token}",
    "a picture in the style of {token}",
    "an image in the style of {token}",
    "a rendering in the style of {token}",
    "a cropped photo in the style of {token}",
    "a close-up photo in the style of {token}",
    # class-aware: the style of this dataset's objects (as generation prompts will use it)
    "a photo of a {class} in the style of {token}",
    "a {class} photo in the style of {token}",
    "a picture of a {class} in the style of {token}",
    "a close-up photo of a {class} in the style of {token}",
    "a cropped photo of a {class} in the style of {token}",
    "a rendering of a {class} in the style of {token}",
)

LR_SCHEDULES = ("constant", "cosine")
CHECKPOINT_VERSION = 1


# ----------------------------------------------------------------------------- random draws
@functools.lru_cache(maxsize=4)
def _epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    return torch.randperm(n, generator=seeded_generator(seed, "epoch", epoch))


@dataclass
class StepDraws:
    images: torch.Tensor      # int64 [B]: image indices (each epoch a fresh permutation)
    flips: torch.Tensor       # bool [B]
    templates: torch.Tensor   # int64 [B]
    timesteps: torch.Tensor   # int64 [B]
    latent_eps: torch.Tensor  # float32 [B, C, h, w]: posterior sample = mean + std * eps
    noise: torch.Tensor       # float32 [B, C, h, w]


def step_draws(
    seed: int,
    step: int,
    *,
    num_images: int,
    batch_size: int,
    flip_p: float,
    num_templates: int,
    num_timesteps: int,
    latent_shape: Sequence[int],
) -> StepDraws:
    """The random choices of training step `step`, a pure function of (seed, step). Drawn on the
    CPU so that CPU and GPU runs (and the benchmark's plain loop) see the same ones."""
    positions = range(step * batch_size, (step + 1) * batch_size)
    images = torch.tensor([int(_epoch_order(seed, p // num_images, num_images)[p % num_images]) for p in positions])
    g = seeded_generator(seed, "step", step)
    flips = torch.rand(batch_size, generator=g) < flip_p
    templates = torch.randint(num_templates, (batch_size,), generator=g)
    timesteps = torch.randint(num_timesteps, (batch_size,), generator=g)
    latent_eps = torch.randn((batch_size, *latent_shape), generator=g)
    noise = torch.randn((batch_size, *latent_shape), generator=g)
    return StepDraws(images, flips, templates, timesteps, latent_eps, noise)


def lr_factor(step: int, steps: int, schedule: str, warmup_steps: int) -> float:
    """Multiplier of the base learning rate at `step` (0-based): linear warm-up, then constant or cosine."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "cosine":
        progress = (step - warmup_steps) / max(1, steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return 1.0


# ----------------------------------------------------------------------------- text side
class _StyleTokenEmbedding(torch.nn.Module):
    """The frozen token embedding with one row (token_id) taken from `vector` instead."""

    def __init__(self, base: torch.nn.Embedding, token_id: int, vector: torch.Tensor) -> None:
        super().__init__()
        self.base = base
        self.token_id = token_id
        self.vector = vector

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = F.embedding(ids.clamp(max=self.base.num_embeddings - 1), self.base.weight)
        return torch.where((ids == self.token_id).unsqueeze(-1), self.vector.to(rows.dtype), rows)


def check_token(tokenizer: Any, token: str) -> None:
    """ValueError unless `token` is a new, whitespace-free string the tokenizer does not know."""
    if not isinstance(token, str) or not token or any(c.isspace() for c in token):
        raise ValueError(f"token {token!r} must be a non-empty string without spaces, e.g. '<dataset-style>'")
    # A token the tokenizer already reads as one id (a word, a sub-word, an added token) would
    # take that id's meaning over in every prompt.
    existing = tokenizer(token, add_special_tokens=False)["input_ids"]
    if token in tokenizer.get_vocab() or len(existing) == 1:
        raise ValueError(
            f"token {token!r} is already in the tokenizer's vocabulary: choose a new one, e.g. '<{token.strip('<>')}-style>'"
        )


class StyleTextEncoder:
    """The pipeline's tokenizer and text encoder plus one new token whose embedding is `vector`.

    The pipeline is not modified: the tokenizer is a copy, and the token's row is substituted in
    the embedding lookup only during each call. `encoder(encoder.tokenize(prompts))` equals
    `pipe.encode_prompt(prompts, ...)` of a stock pipeline that loaded the saved style file."""

    def __init__(self, pipe: Any, token: str, vector: torch.Tensor) -> None:
        check_token(pipe.tokenizer, token)
        self.tokenizer = copy.deepcopy(pipe.tokenizer)
        if self.tokenizer.add_tokens(token) != 1:
            raise ValueError(f"token {token!r} is already in the tokenizer's vocabulary")
        self.token = token
        self.token_id = int(self.tokenizer.convert_tokens_to_ids(token))
        probe = self.tokenize([f"a {token} b"])[0]
        if int((probe == self.token_id).sum()) != 1:
            raise ValueError(f"token {token!r} is not kept whole by the tokenizer; use lowercase, e.g. '<dataset-style>'")
        self.text_encoder = pipe.text_encoder
        self.vector = vector

    def tokenize(self, prompts: Sequence[str]) -> torch.Tensor:
        """int64 [N, model_max_length], padded and truncated as StableDiffusionPipeline does."""
        return self.tokenizer(
            list(prompts), padding="max_length", max_length=self.tokenizer.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        te = self.text_encoder
        original = te.get_input_embeddings()
        te.set_input_embeddings(_StyleTokenEmbedding(original, self.token_id, self.vector))
        try:
            mask = None
            if getattr(te.config, "use_attention_mask", False):
                mask = (ids != self.tokenizer.pad_token_id).long()
            return te(ids, attention_mask=mask)[0]
        finally:
            te.set_input_embeddings(original)


def init_embedding(pipe: Any, init_word: str) -> torch.Tensor:
    """float32 [D]: the embedding of `init_word` (the mean of its rows if it is several tokens)."""
    ids = pipe.tokenizer(init_word, add_special_tokens=False)["input_ids"] if isinstance(init_word, str) else []
    if not ids:
        raise ValueError(f"init word {init_word!r} gives no token to start from; use a word such as 'photo'")
    weight = pipe.text_encoder.get_input_embeddings().weight
    return weight.detach()[torch.tensor(ids, device=weight.device)].float().mean(0).cpu()


def format_prompts(templates: Sequence[str], classes: Sequence[str], token: str) -> list[str]:
    """Prompt of (template t, class c) at index t * len(classes) + c; '_' in class names reads as a space."""
    prompts = []
    for template in templates:
        for name in classes:
            prompts.append(template.replace("{class}", name.replace("_", " ")).replace("{token}", token))
    return prompts


def check_templates(templates: Sequence[str]) -> list[str]:
    if isinstance(templates, str) or not templates:
        raise ValueError(f"templates must be a non-empty list of strings, got {templates!r}")
    for t in templates:
        if not isinstance(t, str) or "{token}" not in t:
            raise ValueError(f"template {t!r} must contain '{{token}}' (and may contain '{{class}}')")
    return list(templates)


# ----------------------------------------------------------------------------- trainer
auto_dtype = resolve_training_dtype  # the name benchmarks/bench_invert.py imports


class StyleTrainer:
    """Owns the training state of one style token on a pipeline; a context manager that leaves
    the pipeline's weights, flags and modes as it found them (it may move them to `device`).

    `train_step(k)` runs step k and returns its (detached) loss; `vector` is the embedding."""

    def __init__(
        self,
        pipe: Any,
        source: ImageSource,
        *,
        token: str,
        init_word: str,
        lr: float,
        batch_size: int,
        resolution: int,
        seed: int,
        templates: Sequence[str],
        flip_p: float,
        weight_decay: float,
        device: torch.device,
        dtype: torch.dtype,
        cache_root: Path,
        fingerprint: str,
        content_keys: list[str],
        encode_batch_size: int = 16,
        gradient_checkpointing: bool = False,
        compile: bool = False,
        progress: bool = True,
    ) -> None:
        from diffusers import DDPMScheduler

        self.pipe, self.source, self.device, self.dtype = pipe, source, device, dtype
        self.seed, self.batch_size, self.flip_p, self.resolution = seed, batch_size, flip_p, resolution
        self.templates = list(templates)
        self._saved_flags = [(p, p.requires_grad) for m in (pipe.unet, pipe.vae, pipe.text_encoder) for p in m.parameters()]
        for m in (pipe.unet, pipe.vae, pipe.text_encoder):
            m.requires_grad_(False)
        self._had_checkpointing = bool(getattr(pipe.unet, "is_gradient_checkpointing", False))
        try:
            self.vector = torch.nn.Parameter(init_embedding(pipe, init_word).to(device))
            self.text = StyleTextEncoder(pipe, token, self.vector)
            self.prompt_ids = self.text.tokenize(format_prompts(self.templates, source.classes, token)).to(device)
            self.labels = torch.tensor([source.label(i) for i in range(len(source))], device=device)

            vae_device = next(pipe.vae.parameters()).device
            pipe.vae.to(device)
            try:
                self.latent_mean, self.latent_std, self.latent_stats = encode_latents(
                    pipe.vae,
                    source,
                    content_keys,
                    resolution=resolution,
                    flips=flip_p > 0,
                    folder=cache_folder(cache_root, fingerprint, resolution, next(pipe.vae.parameters()).dtype),
                    batch_size=encode_batch_size,
                    progress=progress,
                )
            finally:
                pipe.vae.to(vae_device)  # training never needs it on the device
            self.orientations = 2 if flip_p > 0 else 1
            self.scaling_factor = float(pipe.vae.config.scaling_factor)
            self.shift_factor = float(getattr(pipe.vae.config, "shift_factor", None) or 0.0)

            pipe.unet.to(device)
            pipe.text_encoder.to(device)
            if gradient_checkpointing:
                pipe.unet.enable_gradient_checkpointing()
            self.unet_fn = torch.compile(pipe.unet) if compile else pipe.unet
            self.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
            self.prediction_type = self.scheduler.config.prediction_type
            if self.prediction_type not in ("epsilon", "v_prediction"):
                raise ValueError(f"unsupported scheduler prediction_type {self.prediction_type!r}: epsilon or v_prediction")
            self.latent_shape = tuple(self.latent_mean.shape[1:])
            self.optimizer = torch.optim.AdamW([self.vector], lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay)
            self.base_lr = lr
            self.scaler = torch.amp.GradScaler(device.type) if (dtype == torch.float16 and device.type == "cuda") else None
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "StyleTrainer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for p, flag in self._saved_flags:
            p.requires_grad_(flag)
        if not self._had_checkpointing and getattr(self.pipe.unet, "is_gradient_checkpointing", False):
            self.pipe.unet.disable_gradient_checkpointing()

    def draws(self, step: int) -> StepDraws:
        return step_draws(
            self.seed,
            step,
            num_images=len(self.source),
            batch_size=self.batch_size,
            flip_p=self.flip_p,
            num_templates=len(self.templates),
            num_timesteps=self.scheduler.config.num_train_timesteps,
            latent_shape=self.latent_shape,
        )

    def loss(self, d: StepDraws) -> torch.Tensor:
        """The stock textual-inversion loss for these draws (differentiable w.r.t. `vector`)."""
        dev = self.device
        images = d.images.to(dev)
        entries = images * self.orientations + (d.flips.to(dev).long() if self.orientations == 2 else 0)
        eps = d.latent_eps.to(dev, non_blocking=True)
        noise = d.noise.to(dev, non_blocking=True)
        timesteps = d.timesteps.to(dev)
        latents = self.latent_mean[entries].float() + self.latent_std[entries].float() * eps
        latents = (latents - self.shift_factor) * self.scaling_factor
        noisy = self.scheduler.add_noise(latents, noise, timesteps)
        target = noise if self.prediction_type == "epsilon" else self.scheduler.get_velocity(latents, noise, timesteps)
        ids = self.prompt_ids[d.templates.to(dev) * len(self.source.classes) + self.labels[images]]
        unet_dtype = self.pipe.unet.dtype
        with torch.autocast(dev.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            hidden = self.text(ids)
            pred = self.unet_fn(noisy.to(unet_dtype), timesteps, hidden.to(unet_dtype)).sample
        return F.mse_loss(pred.float(), target.float(), reduction="mean")

    def set_lr(self, factor: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.base_lr * factor

    def train_step(self, step: int) -> torch.Tensor:
        loss = self.loss(self.draws(step))
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    # -- checkpoint state: tensors (safetensors) + scalars (JSON)
    def state_tensors(self) -> dict[str, torch.Tensor]:
        tensors = {"embedding": self.vector.detach().float().cpu()}
        state = self.optimizer.state.get(self.vector)
        if state:
            tensors["exp_avg"] = state["exp_avg"].float().cpu()
            tensors["exp_avg_sq"] = state["exp_avg_sq"].float().cpu()
        return tensors

    def state_scalars(self) -> dict[str, Any]:
        state = self.optimizer.state.get(self.vector)
        return {
            "adam_step": float(state["step"]) if state else 0.0,
            "grad_scaler": self.scaler.state_dict() if self.scaler is not None else None,
        }

    def load_state(self, tensors: dict[str, torch.Tensor], scalars: dict[str, Any]) -> None:
        with torch.no_grad():
            self.vector.copy_(tensors["embedding"].to(self.vector.device))
        if "exp_avg" in tensors:
            template = self.optimizer.state_dict()
            template["state"] = {
                0: {
                    "step": torch.tensor(float(scalars["adam_step"])),
                    "exp_avg": tensors["exp_avg"].to(self.vector.device),
                    "exp_avg_sq": tensors["exp_avg_sq"].to(self.vector.device),
                }
            }
            self.optimizer.load_state_dict(template)
        if self.scaler is not None and scalars.get("grad_scaler"):
            self.scaler.load_state_dict(scalars["grad_scaler"])


# ----------------------------------------------------------------------------- checkpoints
def checkpoint_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}.ckpt.safetensors")


def save_checkpoint(path: Path, step: int, config: dict, trainer: StyleTrainer, losses: list[float]) -> None:
    from safetensors.torch import save_file

    tensors = trainer.state_tensors()
    tensors["losses"] = torch.tensor(losses, dtype=torch.float32)
    # Scalars travel as JSON in the safetensors header: one file, replaced atomically, no pickle.
    meta = {"version": CHECKPOINT_VERSION, "step": step, "config": config, **trainer.state_scalars()}
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata={"bridgedfast_checkpoint": json.dumps(meta)})


def read_checkpoint(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})["bridgedfast_checkpoint"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, KeyError, json.JSONDecodeError) as exc:
        raise ValueError(f"checkpoint {str(path)!r} is not a bridgedfast style checkpoint ({exc}); delete it to start over") from None
    if meta.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"checkpoint {str(path)!r} has version {meta.get('version')}, expected {CHECKPOINT_VERSION}")
    return meta, tensors


def _config_differences(saved: dict, current: dict) -> list[str]:
    return [f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]


# ----------------------------------------------------------------------------- outputs
def save_loss_curve(path: Path, losses: list[float], title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3), dpi=100)
    steps = list(range(1, len(losses) + 1))
    ax.plot(steps, losses, lw=0.6, alpha=0.35, label="loss")
    window = max(1, len(losses) // 20)  # the per-step loss is very noisy (it depends on the timestep)
    if window > 1:
        t = torch.tensor(losses)
        smooth = torch.nn.functional.avg_pool1d(t.view(1, 1, -1), window, stride=1).view(-1).tolist()
        ax.plot(steps[window - 1 :], smooth, lw=1.5, label=f"mean of {window}")
    ax.set_xlabel("step")
    ax.set_ylabel("noise-prediction MSE")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        with atomic_write(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return path


# ----------------------------------------------------------------------------- entry point
def _check_positive(name: str, value: Any, kind: type = int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int) or value <= 0:
        raise ValueError(f"{name} must be a positive {'number' if kind is float else 'integer'}, got {value!r}")


def invert_style(
    model: Any,
    data: Any,
    out: str | Path,
    *,
    token: str = "<dataset-style>",
    init_word: str = "photo",
    steps: int = 3000,
    lr: float = 5e-4,
    scale_lr: bool = True,
    batch_size: int = 4,
    resolution: int = 512,
    seed: int = 0,
    templates: Sequence[str] | None = None,
    flip_p: float = 0.5,
    weight_decay: float = 1e-2,
    lr_schedule: str = "constant",
    warmup_steps: int = 0,
    checkpoint_every: int = 200,
    resume: bool | str | Path = True,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
    gradient_checkpointing: bool = False,
    compile: bool = False,
    cache_dir: str | Path | None = None,
    encode_batch_size: int = 16,
    progress: bool = True,
    callback: Callable[[int, float], None] | None = None,
) -> Path:
    """Learns one style token from all images of `data` and writes it to `out`.

    model: a diffusers Stable Diffusion pipeline (used in place: moved to `device`, weights
        untouched), a local diffusers folder or a hub id.
    data: an ImageStore, an ImageStore folder, or a folder of class sub-folders of images.
    out: the `.safetensors` file to write: a diffusers textual-inversion file, `{token: [1, D]}`,
        that stock `pipe.load_textual_inversion(out, token=token)` loads. Written atomically;
        beside it: `<stem>.ckpt.safetensors` (checkpoint), `<stem>.loss.png`, `<stem>.report.json`,
        and the latent cache in `bridgedfast-latents/` (or `cache_dir`).
    token / init_word: the new token (must not be in the vocabulary) and the word whose
        embedding it starts from (several tokens: their mean).
    lr: the base learning rate; with `scale_lr` (diffusers' --scale_lr) the rate used is
        lr * batch_size (defaults: 5e-4 * 4 = 2e-3, the diffusers example's recipe).
    templates: prompts with '{token}' and optionally '{class}'; default DEFAULT_TEMPLATES.
    flip_p: probability of a horizontal flip (both orientations are encoded and cached).
    resume: True continues from `<stem>.ckpt.safetensors` when it exists (refusing one written by
        a different configuration), False starts over, a path resumes from that checkpoint.
    dtype: 'auto' (bf16 on GPU, fp16 on GPUs without bf16, fp32 on CPU), fp32, fp16, bf16: the
        frozen models' dtype (when loaded here) and the autocast dtype; the token is kept in fp32.
    callback(step, loss): called after every step (forces a device sync per step).
    Returns `out`.
    """
    out = Path(out).expanduser()
    if out.suffix != ".safetensors":
        raise ValueError(f"out {str(out)!r} must be a .safetensors file")
    if out.exists() and out.is_dir():
        raise ValueError(f"out {str(out)!r} is a folder; give a file name ending in .safetensors")
    for name, value in (("steps", steps), ("batch_size", batch_size), ("resolution", resolution), ("checkpoint_every", checkpoint_every), ("encode_batch_size", encode_batch_size)):
        _check_positive(name, value)
    _check_positive("lr", lr, float)
    if not 0.0 <= flip_p <= 1.0:
        raise ValueError(f"flip_p must be in [0, 1], got {flip_p!r}")
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or weight_decay < 0:
        raise ValueError(f"weight_decay must be a non-negative number, got {weight_decay!r}")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown lr_schedule {lr_schedule!r}: use one of {', '.join(LR_SCHEDULES)}")
    if not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"warmup_steps must be a non-negative integer, got {warmup_steps!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    templates = check_templates(DEFAULT_TEMPLATES if templates is None else templates)
    resume_from: Path | None = None
    if resume not in (True, False):
        resume_from = Path(resume).expanduser()
        if not resume_from.is_file():
            raise FileNotFoundError(f"checkpoint {str(resume_from)!r} to resume from does not exist")

    source = open_images(data)
    dev = resolve_device(device)
    from diffusers import DiffusionPipeline

    given = isinstance(model, DiffusionPipeline)
    amp = resolve_training_dtype(dtype, dev, model.unet.dtype if given and getattr(model, "unet", None) is not None else None)
    pipe = load_pipeline(model, torch_dtype=None if given else amp)
    multiple = pipe.vae_scale_factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1)
    if resolution % multiple:
        raise ValueError(f"resolution {resolution} must be a multiple of {multiple} for this model")
    check_token(pipe.tokenizer, token)
    if not given and dev.type == "cuda":
        pipe.unet.to(memory_format=torch.channels_last)

    effective_lr = lr * batch_size if scale_lr else lr
    fingerprint = model_fingerprint(pipe)
    content_keys = [source.key(i) for i in range(len(source))]
    data_hash = hashlib.sha256(json.dumps([source.classes, content_keys, [source.label(i) for i in range(len(source))]]).encode())
    config = {
        "model": fingerprint,
        "data": data_hash.hexdigest()[:16],
        "token": token,
        "init_word": init_word,
        "lr": effective_lr,
        "batch_size": batch_size,
        "resolution": resolution,
        "seed": seed,
        "templates": templates,
        "flip_p": flip_p,
        "weight_decay": weight_decay,
        "lr_schedule": lr_schedule,
        "warmup_steps": warmup_steps,
    }
    if lr_schedule != "constant":
        config["steps"] = steps  # the schedule's shape depends on the total; a constant one may be extended

    ckpt = checkpoint_path(out)
    resume_meta: dict | None = None
    resume_tensors: dict[str, torch.Tensor] = {}
    source_ckpt = resume_from if resume_from is not None else (ckpt if resume is True and ckpt.is_file() else None)
    if source_ckpt is not None:
        resume_meta, resume_tensors = read_checkpoint(source_ckpt)
        diffs = _config_differences(resume_meta["config"], config)
        if diffs:
            raise ValueError(
                f"checkpoint {str(source_ckpt)!r} was written by a different configuration ({'; '.join(diffs)}); "
                "delete it or pass resume=False (--no-resume) to start over"
            )
        if resume_meta["step"] > steps:
            raise ValueError(f"checkpoint {str(source_ckpt)!r} is at step {resume_meta['step']}, beyond steps={steps}")

    cache_root = Path(cache_dir).expanduser() if cache_dir is not None else out.parent / "bridgedfast-latents"
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with StyleTrainer(
        pipe,
        source,
        token=token,
        init_word=init_word,
        lr=effective_lr,
        batch_size=batch_size,
        resolution=resolution,
        seed=seed,
        templates=templates,
        flip_p=flip_p,
        weight_decay=weight_decay,
        device=dev,
        dtype=amp,
        cache_root=cache_root,
        fingerprint=fingerprint,
        content_keys=content_keys,
        encode_batch_size=encode_batch_size,
        gradient_checkpointing=gradient_checkpointing,
        compile=compile,
        progress=progress,
    ) as trainer:
        start = 0
        losses: list[float] = []
        if resume_meta is not None:
            trainer.load_state(resume_tensors, resume_meta)
            start = int(resume_meta["step"])
            losses = resume_tensors["losses"].tolist()[:start]
        encode_seconds = time.perf_counter() - started
        pending: list[torch.Tensor] = []

        def sync() -> None:
            if pending:
                losses.extend(torch.stack(pending).float().cpu().tolist())
                pending.clear()

        train_started = time.perf_counter()
        bar = tqdm(total=steps, initial=start, desc="style inversion", unit="step", disable=not progress, dynamic_ncols=True)
        try:
            for step in range(start, steps):
                trainer.set_lr(lr_factor(step, steps, lr_schedule, warmup_steps))
                loss = trainer.train_step(step)
                pending.append(loss)
                done = step + 1
                bar.update(1)
                if callback is not None or done % 10 == 0 or done == steps:
                    sync()
                    recent = losses[-10:]
                    bar.set_postfix(loss=f"{sum(recent) / len(recent):.4f}", refresh=False)
                if done % checkpoint_every == 0 or done == steps:
                    sync()
                    save_checkpoint(ckpt, done, config, trainer, losses)
                if callback is not None:
                    callback(done, losses[-1])
        finally:
            bar.close()
        sync()
        train_seconds = time.perf_counter() - train_started
        vector = trainer.vector.detach().float().cpu()
        latent_stats: LatentStats = trainer.latent_stats
        token_id = trainer.text.token_id

    trained = steps - start
    metadata = {k: v for k, v in config.items() if k != "templates"}
    metadata.update(steps=steps, final_loss=(sum(losses[-50:]) / len(losses[-50:])) if losses else None)
    save_style(out, token, vector, metadata)
    report = {
        "out": str(out),
        "token": token,
        "token_id": token_id,
        "config": {**config, "steps": steps, "device": str(dev), "dtype": str(amp).removeprefix("torch.")},
        "resumed_from_step": start if resume_meta is not None else None,
        "steps_trained_this_run": trained,
        "train_seconds": train_seconds,
        "steps_per_second": trained / train_seconds if trained and train_seconds > 0 else None,
        "setup_seconds": encode_seconds,
        "latent_cache": {"folder": str(latent_stats.folder), "encoded": latent_stats.encoded, "reused": latent_stats.reused},
        "losses": losses,
    }
    atomic_write_json(out.with_name(f"{out.stem}.report.json"), report)
    if losses:
        save_loss_curve(out.with_name(f"{out.stem}.loss.png"), losses, f"style inversion of {token} ({steps} steps)")
    return out
