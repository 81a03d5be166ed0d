"""High-throughput synthetic image generation with Stable Diffusion.

`Generator(model, ...).generate(classes, per_class, out, ...)` writes an ImageStore of
`per_class` images per class; every image is reproducible with a stock diffusers
`StableDiffusionPipeline` from its prompt and `seed_for(seed, class_index, image_index)` (with
init images, `StableDiffusionImg2ImgPipeline` given `init_image(...)` of its init image).
"""
from __future__ import annotations

from ..seeds import seed_for
from .config import GenerateConfig, GeneratorConfig
from .engine import GenerationReport, Generator
from .init import init_image
from .prompts import DEFAULT_TEMPLATE
from .schedulers import DEFAULT_SCHEDULER, SCHEDULERS, build_scheduler

DEFAULT_GUIDANCE_SCALE = GenerateConfig.options()["guidance_scale"].default
DEFAULT_STEPS = GenerateConfig.options()["steps"].default

__all__ = [
    "Generator",
    "GeneratorConfig",
    "GenerateConfig",
    "GenerationReport",
    "init_image",
    "seed_for",
    "build_scheduler",
    "SCHEDULERS",
    "DEFAULT_SCHEDULER",
    "DEFAULT_TEMPLATE",
    "DEFAULT_GUIDANCE_SCALE",
    "DEFAULT_STEPS",
]
