"""High-throughput synthetic image generation with Stable Diffusion.

`Generator(model, ...).generate(classes, per_class, out, ...)` writes an ImageStore of
`per_class` images per class; every image is reproducible with a stock diffusers
`StableDiffusionPipeline` from its prompt and `seed_for(seed, class_index, image_index)`.
"""
from __future__ import annotations

from .engine import DEFAULT_GUIDANCE_SCALE, DEFAULT_STEPS, GenerationReport, Generator
from .plan import seed_for
from .prompts import DEFAULT_TEMPLATE
from .schedulers import DEFAULT_SCHEDULER, SCHEDULERS, build_scheduler

__all__ = [
    "Generator",
    "GenerationReport",
    "seed_for",
    "build_scheduler",
    "SCHEDULERS",
    "DEFAULT_SCHEDULER",
    "DEFAULT_TEMPLATE",
    "DEFAULT_GUIDANCE_SCALE",
    "DEFAULT_STEPS",
]
