"""The generation options, declared once (see `bridgedfast.options`): `GeneratorConfig` (how the
model is loaded and run: `Generator(model, ...)`) and `GenerateConfig` (what one
`Generator.generate(classes, per_class, out, ...)` call makes). The CLI flags of
`bridgedfast generate`, the `generation:` section of `bridgedfast run` and their help all derive
from these declarations."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.pack import ENCODING, JPEG_QUALITY
from ..devices import DEVICE, INFERENCE_DTYPE
from ..sd import ALLOW_PICKLE
from ..options import (BOOL, FLOAT, INT, INT_OR_AUTO, PATH, REQUIRED, SEED_RANGE, SIZE, STR, Config, Kind, Naming,
                       one_or_more, option, python_name, shared)
from .backends import BACKEND_NAMES, COMPILE_MODES
from .prompts import DEFAULT_TEMPLATE, check_template_text
from .schedulers import DEFAULT_SCHEDULER, SCHEDULERS, check_scheduler_name

__all__ = ["ATTENTION_NAMES", "GeneratorConfig", "GenerateConfig", "check_device_settings", "store_size_pair"]

ATTENTION_NAMES = ("auto", "sdpa", "xformers")


def _scheduler(value: Any) -> str | None:
    """A scheduler name; 'model' (as None) keeps the model's own scheduler."""
    if value is None or value == "model":
        return None
    if not isinstance(value, str):
        raise TypeError(value)
    return value


def _check_scheduler(value: Any, name: str) -> None:
    try:
        check_scheduler_name(value)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


SCHEDULER = Kind("scheduler", "a scheduler name, 'model' or null", _scheduler, _scheduler, "NAME")


def _multiple_of_8(value: int, name: str) -> None:
    if value % 8:
        raise ValueError(f"{name} must be a multiple of 8 (image sides are multiples of 8), got {value!r}")


def _finite(value: float, name: str) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def store_size_pair(value: int | tuple[int, int]) -> tuple[int, int]:
    """(height, width) of a store size given as N or (H, W)."""
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _positive_size(value: int | tuple[int, int], name: str) -> None:
    sides = value if isinstance(value, tuple) else (value,)
    if min(sides) <= 0:
        raise ValueError(f"{name} must be a positive int or (height, width) of positive ints, got {value!r}")


@dataclass
class GeneratorConfig(Config):
    """How `Generator` loads and runs the model."""

    backend: str = option("eager", STR, "eager PyTorch; compile = torch.compile with CUDA graphs; tensorrt = fp16 TensorRT "
                          "UNet engine (cached under $BRIDGEDFAST_CACHE or ~/.cache/bridgedfast); tensorrt needs a CUDA "
                          "GPU; compile on the CPU only with an explicit --device cpu (minutes of compiling)",
                          choices=BACKEND_NAMES, keyed=False)
    attention: str = option("auto", STR, "attention kernels: auto = xformers with the eager backend on CUDA when installed, "
                            "else PyTorch SDPA (always SDPA with --backend compile or tensorrt)", choices=ATTENTION_NAMES, keyed=False)
    dtype: str = shared(INFERENCE_DTYPE, help=INFERENCE_DTYPE["help"] + "; fp16 needs a CUDA GPU (refused on the CPU)")
    scheduler: str | None = option(DEFAULT_SCHEDULER, SCHEDULER, nullable=True, help=
                                   f"sampler: {', '.join(SCHEDULERS)}, a diffusers scheduler class name, or 'model' to "
                                   "keep the model's own", check=_check_scheduler)
    device: str = shared(DEVICE, help="auto, cpu, cuda or cuda:N (under torchrun: each rank's GPU)")
    allow_pickle: bool = shared(ALLOW_PICKLE)
    # Python API only:
    fuse_qkv: bool = option(True, BOOL, "fuse attention q/k/v projections into one matmul (SDPA attention only)",
                            surfaces=())
    channels_last: bool | None = option(None, BOOL, "channels_last UNet and VAE (default: on CUDA)", surfaces=())
    max_auto_batch: int = option(32, INT, "the largest batch batch_size='auto' picks", min=1, surfaces=())
    compile_mode: str | None = option(None, STR, "torch.compile mode for --backend compile: reduce-overhead (CUDA graphs, "
                                      "no autotuning), max-autotune (adds Triton "
                                      "autotuning: many more minutes of compiling), max-autotune-no-cudagraphs "
                                      "or default (default: reduce-overhead on CUDA, default on CPU)",
                                      nullable=True, choices=COMPILE_MODES, keyed=False)
    cache_dir: str | Path | None = option(None, PATH, "engine cache folder (default: $BRIDGEDFAST_CACHE or "
                                          "~/.cache/bridgedfast)", surfaces=())


@dataclass
class GenerateConfig(Config):
    """What one `Generator.generate` call makes. The images depend on every option but
    `batch_size` and `progress` (batching never changes which image gets which seed)."""

    per_class: int = option(REQUIRED, INT, "images per class (may grow on an existing output: only the new images "
                            "are made)", min=1)
    template: str | list[str] = option(DEFAULT_TEMPLATE, one_or_more(STR), "prompt template; {} is the class name. "
                                       "Several (repeat the flag, or a list): image i uses template i mod T",
                                       check=check_template_text, repeat=True)
    prompts: str | Path | None = option(None, PATH, "YAML/JSON file mapping each class name to a list of prompts: image "
                                        "i of class c uses its class's prompt i mod n (instead of templates)",
                                        metavar="FILE", keyed="if_set")
    init_images: str | Path | None = option(None, PATH, "img2img: an image store or folder of class sub-folders; image "
                                            "i of class c starts from that class's real image i mod n (store order)",
                                            metavar="STORE_OR_FOLDER", surfaces=("cli",), keyed="if_set")
    strength: float | None = option(None, FLOAT, "img2img: how far from the init image, 0-1 (default: 0.75 with "
                                    "--init-images)", min=0.0, max=1.0, min_open=True, keyed="if_set")
    style: str | Path | None = option(None, PATH, "textual-inversion .safetensors file with the dataset-style token",
                                      metavar="FILE", surfaces=("cli",))
    style_token: str | None = option(None, STR, "token for --style; unset = the file's own token", surfaces=("cli",))
    negative_prompt: str | None = option(None, STR, "negative prompt for classifier-free guidance")
    guidance_scale: float = option(7.5, FLOAT, "classifier-free guidance scale (<= 1: no CFG)", min=0.0, check=_finite)
    steps: int = option(25, INT, "sampling steps", min=1)
    height: int = option(512, INT, "image height (multiple of 8)", min=1, check=_multiple_of_8)
    width: int = option(512, INT, "image width (multiple of 8)", min=1, check=_multiple_of_8)
    seed: int = option(0, INT, "base seed; image (c, i) uses seed_for(seed, c, i)", **SEED_RANGE)
    batch_size: int | str = option("auto", INT_OR_AUTO, "images per batch, or auto: the largest that fits in GPU memory "
                                   "(8 on CPU)", min=1)
    store_size: int | tuple[int, int] | None = option(None, SIZE, "resize images to N or HxW before storing",
                                                      check=_positive_size)
    encoding: str = shared(ENCODING)
    quality: int = shared(JPEG_QUALITY, surfaces=("cli",))
    progress: bool = option(True, BOOL, "progress bar", flag="--no-progress", surfaces=("cli",), keyed=False)


def check_device_settings(cfg: GeneratorConfig, naming: Naming = python_name) -> None:
    """GPU-only settings meeting a CPU device are refused before anything is loaded: fp16 (the CPU
    has no fast half-precision kernels: a step takes minutes) and the tensorrt backend (TensorRT
    needs CUDA). The compile backend does run on the CPU, but compiling the UNet there takes
    minutes and saves little: it is refused where `device auto` fell back to the CPU (the GPU
    recipe on a machine without a GPU fails at once instead of hanging) and allowed with an
    explicit `device cpu`."""
    from ..devices import resolve_device

    device = resolve_device(cfg.device)
    if device.type != "cpu":
        return
    where = "the CPU" if cfg.device == "cpu" else f"the CPU ({naming('device')} {cfg.device}: no CUDA GPU is visible)"
    if cfg.dtype == "fp16":
        raise ValueError(f"{naming('dtype')} fp16 needs a CUDA GPU and would run on {where}: use {naming('dtype')} "
                         "fp32 (or auto) there")
    if cfg.backend == "tensorrt" or (cfg.backend == "compile" and cfg.device != "cpu"):
        raise ValueError(f"{naming('backend')} {cfg.backend} needs a CUDA GPU and would run on {where}: use "
                         f"{naming('backend')} eager there" + (f" (or {naming('device')} cpu to compile for the CPU "
                                                             "anyway: minutes of compiling)" if cfg.backend == "compile" else ""))
