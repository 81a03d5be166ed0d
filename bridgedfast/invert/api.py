"""`invert_style(model, data, out, ...)`: the entry point of dataset style inversion. Its options
are declared in `InvertConfig`; this module loads the model and images, resumes from a
checkpoint, runs the `StyleTrainer` and writes the outputs."""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..devices import resolve_device, resolve_training_dtype
from ..files import atomic_write, atomic_write_json
from ..options import takes_options
from ..schedules import lr_factor
from ..sd import load_pipeline, model_fingerprint
from ..style import save_style
from .checkpoint import checkpoint_config, checkpoint_path, config_differences, read_checkpoint, save_checkpoint
from .config import InvertConfig
from .images import ImageSource, open_images
from .text import DEFAULT_TEMPLATES, check_templates, check_token
from .train import StyleTrainer

__all__ = ["invert_style"]


@takes_options(InvertConfig)
def invert_style(model: Any, data: Any, out: str | Path, *, resume: bool | str | Path = True,
                 callback: Callable[[int, float], None] | None = None, **options: Any) -> Path:
    """Learns one style token from all images of `data` and writes it to `out`.

    model: a diffusers Stable Diffusion pipeline (used in place: moved to `device`, weights
        untouched), a local diffusers folder or a hub id.
    data: an ImageStore, an ImageStore folder, or a folder of class sub-folders of images.
    out: the `.safetensors` file to write: a diffusers textual-inversion file, `{token: [1, D]}`,
        that stock `pipe.load_textual_inversion(out, token=token)` loads. Written atomically;
        beside it: `<stem>.ckpt.safetensors` (checkpoint), `<stem>.loss.png`, `<stem>.report.json`,
        and the latent cache in `bridgedfast-latents/` (or `cache_dir`).
    resume: True continues from `<stem>.ckpt.safetensors` when it exists (refusing one written by
        a different configuration), False starts over, a path resumes from that checkpoint.
    callback(step, loss): called after every step (forces a device sync per step).
    options: see `InvertConfig` (token, init_word, steps, lr, scale_lr, batch_size, resolution,
        seed, templates, flip_p, weight_decay, lr_schedule, warmup_steps, checkpoint_every, device,
        dtype, gradient_checkpointing, compile, cache_dir, encode_batch_size, progress). In short:
        the token must be new to the vocabulary and starts from `init_word`'s embedding; with
        `scale_lr` (diffusers' --scale_lr) the rate used is lr * batch_size; `templates` hold
        '{token}' and optionally '{class}' (default DEFAULT_TEMPLATES); `dtype` 'auto' is bf16 on
        GPU (fp16 where bf16 is missing), fp32 on CPU: the frozen models' dtype (when loaded here)
        and the autocast dtype, the token itself staying fp32.
    Returns `out`.
    """
    cfg = InvertConfig(**options).validate()
    out = _check_out(out)
    templates = check_templates(DEFAULT_TEMPLATES if cfg.templates is None else cfg.templates)
    resume_from = _resume_file(resume)
    source = open_images(data)
    pipe, device, dtype = _load_model(model, cfg)
    fingerprint = model_fingerprint(pipe)
    content_keys = [source.key(i) for i in range(len(source))]
    config = checkpoint_config(cfg, templates, fingerprint=fingerprint, data_hash=_data_hash(source, content_keys))
    ckpt = checkpoint_path(out)
    if resume_from is None and resume is True and ckpt.is_file():
        resume_from = ckpt
    resumed = _read_resumable(resume_from, config, cfg.steps) if resume_from is not None else None

    cache_root = Path(cfg.cache_dir).expanduser() if cfg.cache_dir is not None else out.parent / "bridgedfast-latents"
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with StyleTrainer(
        pipe, source, token=cfg.token, init_word=cfg.init_word, lr=cfg.effective_lr, batch_size=cfg.batch_size,
        resolution=cfg.resolution, seed=cfg.seed, templates=templates, flip_p=cfg.flip_p,
        weight_decay=cfg.weight_decay, device=device, dtype=dtype, cache_root=cache_root, fingerprint=fingerprint,
        content_keys=content_keys, encode_batch_size=cfg.encode_batch_size,
        gradient_checkpointing=cfg.gradient_checkpointing, compile=cfg.compile, progress=cfg.progress,
    ) as trainer:
        start, losses = 0, []
        if resumed is not None:
            meta, tensors = resumed
            trainer.load_state(tensors, meta)
            start = int(meta["step"])
            losses = tensors["losses"].tolist()[:start]
        setup_seconds = time.perf_counter() - started
        train_seconds = _run_steps(trainer, cfg, start, losses, ckpt, config, callback)
        vector = trainer.vector.detach().float().cpu()
        stats, token_id = trainer.latent_stats, trainer.text.token_id

    metadata = {k: v for k, v in config.items() if k != "templates"}
    metadata.update(steps=cfg.steps, final_loss=(sum(losses[-50:]) / len(losses[-50:])) if losses else None)
    save_style(out, cfg.token, vector, metadata)
    trained = cfg.steps - start
    atomic_write_json(out.with_name(f"{out.stem}.report.json"), {
        "out": str(out), "token": cfg.token, "token_id": token_id,
        "config": {**config, "steps": cfg.steps, "device": str(device), "dtype": str(dtype).removeprefix("torch.")},
        "resumed_from_step": start if resumed is not None else None,
        "steps_trained_this_run": trained, "train_seconds": train_seconds,
        "steps_per_second": trained / train_seconds if trained and train_seconds > 0 else None,
        "setup_seconds": setup_seconds,
        "latent_cache": {"folder": str(stats.folder), "encoded": stats.encoded, "reused": stats.reused},
        "losses": losses,
    })
    if losses:
        save_loss_curve(out.with_name(f"{out.stem}.loss.png"), losses, f"style inversion of {cfg.token} ({cfg.steps} steps)")
    return out


def _check_out(out: str | Path) -> Path:
    out = Path(out).expanduser()
    if out.suffix != ".safetensors":
        raise ValueError(f"out {str(out)!r} must be a .safetensors file")
    if out.exists() and out.is_dir():
        raise ValueError(f"out {str(out)!r} is a folder; give a file name ending in .safetensors")
    return out


def _resume_file(resume: bool | str | Path) -> Path | None:
    if resume in (True, False):
        return None
    path = Path(resume).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} to resume from does not exist")
    return path


def _load_model(model: Any, cfg: InvertConfig) -> tuple[Any, torch.device, torch.dtype]:
    """(pipeline, device, training dtype), the model checked against the options."""
    from diffusers import DiffusionPipeline

    device = resolve_device(cfg.device)
    given = isinstance(model, DiffusionPipeline)
    dtype = resolve_training_dtype(cfg.dtype, device,
                                   model.unet.dtype if given and getattr(model, "unet", None) is not None else None)
    pipe = load_pipeline(model, torch_dtype=None if given else dtype, allow_pickle=cfg.allow_pickle, quiet=not cfg.progress)
    multiple = pipe.vae_scale_factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1)
    if cfg.resolution % multiple:
        raise ValueError(f"resolution {cfg.resolution} must be a multiple of {multiple} for this model")
    check_token(pipe.tokenizer, cfg.token)
    if not given and device.type == "cuda":
        pipe.unet.to(memory_format=torch.channels_last)
    return pipe, device, dtype


def _data_hash(source: ImageSource, content_keys: list[str]) -> str:
    labels = [source.label(i) for i in range(len(source))]
    return hashlib.sha256(json.dumps([source.classes, content_keys, labels]).encode()).hexdigest()[:16]


def _read_resumable(path: Path, config: dict, steps: int) -> tuple[dict, dict[str, torch.Tensor]]:
    meta, tensors = read_checkpoint(path)
    diffs = config_differences(meta["config"], config)
    if diffs:
        raise ValueError(f"checkpoint {str(path)!r} was written by a different configuration ({'; '.join(diffs)}); "
                         "delete it or pass resume=False (--no-resume) to start over")
    if meta["step"] > steps:
        raise ValueError(f"checkpoint {str(path)!r} is at step {meta['step']}, beyond steps={steps}")
    return meta, tensors


def _run_steps(trainer: StyleTrainer, cfg: InvertConfig, start: int, losses: list[float], ckpt: Path, config: dict,
               callback: Callable[[int, float], None] | None) -> float:
    """Trains steps start..cfg.steps-1 (losses appended to `losses`, a checkpoint every
    `checkpoint_every` steps and at the end); returns the seconds it took."""
    from tqdm.auto import tqdm

    pending: list[torch.Tensor] = []

    def sync() -> None:  # losses reach the host in chunks: a per-step .item() would stall the GPU
        if pending:
            losses.extend(torch.stack(pending).float().cpu().tolist())
            pending.clear()

    started = time.perf_counter()
    bar = tqdm(total=cfg.steps, initial=start, desc="style inversion", unit="step", disable=not cfg.progress,
               dynamic_ncols=True)
    try:
        for step in range(start, cfg.steps):
            trainer.set_lr(lr_factor(step, cfg.steps, cfg.warmup_steps, schedule=cfg.lr_schedule))
            pending.append(trainer.train_step(step))
            done = step + 1
            bar.update(1)
            if callback is not None or done % 10 == 0 or done == cfg.steps:
                sync()
                recent = losses[-10:]
                bar.set_postfix(loss=f"{sum(recent) / len(recent):.4f}", refresh=False)
            if done % cfg.checkpoint_every == 0 or done == cfg.steps:
                sync()
                save_checkpoint(ckpt, done, config, trainer, losses)
            if callback is not None:
                callback(done, losses[-1])
    finally:
        bar.close()
    sync()
    return time.perf_counter() - started


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
