"""What a `generate` call fixes before its first batch (`PreparedRun`): each image's prompt (from
templates or a prompts file) and the prompts' embeddings, guidance, img2img's init images and
strength; and what each stored image's metadata says about it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .config import GenerateConfig, store_size_pair
from .img2img import check_strength
from .init import DEFAULT_STRENGTH, open_init_images
from .plan import Item
from .prompts import DEFAULT_TEMPLATE, PromptPlan, Style, file_plan, read_prompts, template_plan
from .render import PreparedRun

__all__ = ["check_prompt_options", "prepare_run", "image_meta", "effective_strength"]


def check_prompt_options(cfg: GenerateConfig, names: list[str] | None = None) -> None:
    """Options that only make sense together, and the prompts file and init images (with the
    class names, when given), checked before anything is loaded or written."""
    if cfg.prompts is not None and cfg.template != DEFAULT_TEMPLATE:
        raise ValueError("give either template(s) or a prompts file, not both (the prompts file's prompts are used "
                         "as they are)")
    if cfg.strength is not None and cfg.init_images is None:
        raise ValueError("strength applies to img2img only: give init_images (--init-images) too")
    if cfg.init_images is not None:
        check_strength(effective_strength(cfg), cfg.steps)
        if not Path(cfg.init_images).expanduser().exists():
            raise FileNotFoundError(f"init images {str(cfg.init_images)!r} do not exist")
    if cfg.prompts is not None and names is not None:
        read_prompts(cfg.prompts, names)


def effective_strength(cfg: GenerateConfig) -> float | None:
    if cfg.init_images is None:
        return None
    return DEFAULT_STRENGTH if cfg.strength is None else float(cfg.strength)


def prompt_plan(cfg: GenerateConfig, names: list[str], style: Style | None) -> PromptPlan:
    if cfg.prompts is not None:
        return file_plan(cfg.prompts, names, style)
    return template_plan(cfg.template, names, style)


@torch.inference_mode()
def prepare_run(generator: Any, names: list[str], cfg: GenerateConfig, style: Style | None) -> PreparedRun:
    """The PreparedRun of `generator` (a Generator) for `names`; every distinct prompt is encoded once."""
    scale = generator.vae_scale
    if cfg.height % scale or cfg.width % scale:
        raise ValueError(f"height and width must be multiples of {scale}, got {cfg.height}x{cfg.width}")
    tcond = generator.pipe.unet.config.time_cond_proj_dim
    use_cfg = cfg.guidance_scale > 1 and tcond is None  # the stock pipeline's rule
    plan = prompt_plan(cfg, names, style)
    init = open_init_images(cfg.init_images, names)
    encoded: dict[str, torch.Tensor] = {}
    uncond = None
    for prompts in plan.prompts:
        for prompt in prompts:
            if prompt not in encoded:
                encoded[prompt], u = generator.encode(prompt, cfg.negative_prompt, cfg=use_cfg)
                uncond = u if uncond is None else uncond
    cond = [[encoded[p] for p in prompts] for prompts in plan.prompts]
    size = None if cfg.store_size is None else store_size_pair(cfg.store_size)
    return PreparedRun(plan, cond, uncond if use_cfg else None, use_cfg, cfg.guidance_scale, cfg.steps, cfg.height,
                       cfg.width, cfg.seed, size, cfg.negative_prompt, tcond, init=init,
                       strength=effective_strength(cfg))


def image_meta(run: PreparedRun, item: Item, seed: int) -> dict[str, Any]:
    """A stored image's metadata: its indices, seed and prompt, and with img2img the init image."""
    c, i = item
    meta = {"class_index": c, "image_index": i, "seed": seed, "prompt": run.prompt(c, i),
            "negative_prompt": run.negative_prompt, "guidance_scale": run.guidance_scale, "steps": run.steps}
    if run.init is not None:
        meta.update(init_store=run.init.path, init_index=run.init.index(c, i), strength=run.strength)
    return meta
