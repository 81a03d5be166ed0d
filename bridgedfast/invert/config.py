"""The style-inversion options, declared once (see `bridgedfast.options`): `invert_style(...)`'s
keywords, the flags of `bridgedfast invert` and the `style:` section of `bridgedfast run`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..devices import DEVICE, TRAINING_DTYPE
from ..sd import ALLOW_PICKLE
from ..options import BOOL, FLOAT, INT, PATH, SEED_RANGE, STR, STR_LIST, Config, option, shared
from .text import check_templates, check_token_text

__all__ = ["InvertConfig", "LR_SCHEDULES"]

LR_SCHEDULES = ("constant", "cosine")


def _one_word(value: str, name: str) -> None:
    """The token starts from one word's embedding: 'two words' would silently average them."""
    if not value.strip() or len(value.split()) != 1:
        raise ValueError(f"{name} must be one word: the token starts from the init word's embedding, got {value!r}")


@dataclass
class InvertConfig(Config):
    """One style inversion. The result depends on every option but the run-time ones
    (`checkpoint_every`, `device`, `dtype`, `gradient_checkpointing`, `compile`, `cache_dir`,
    `encode_batch_size`, `progress`)."""

    token: str = option("<dataset-style>", STR, "the new token; must not be in the vocabulary", check=check_token_text)
    init_word: str = option("photo", STR, "word whose embedding the token starts from (one word)", check=_one_word)
    steps: int = option(3000, INT, "optimisation steps", min=1)
    lr: float = option(5e-4, FLOAT, "base learning rate (multiplied by the batch size unless --no-scale-lr)",
                       min=0.0, min_open=True)
    scale_lr: bool = option(True, BOOL, "use lr * batch-size, as diffusers' --scale_lr", flag="--[no-]scale-lr",
                            surfaces=("cli",))
    batch_size: int = option(4, INT, "images per step", min=1)
    resolution: int = option(512, INT, "training size in pixels (shorter side resized, then center crop)", min=1)
    seed: int = option(0, INT, "seed of every random choice (images, flips, templates, timesteps, noise)",
                       **SEED_RANGE)
    templates: list[str] | None = option(None, STR_LIST, "prompt templates with {token} and optionally {class} (default: "
                                         "6 class-agnostic + 6 class-aware ones)", metavar="TEMPLATE",
                                         check=check_templates, surfaces=("cli",))
    flip_p: float = option(0.5, FLOAT, "probability of a horizontal flip", min=0.0, max=1.0, surfaces=("cli",))
    weight_decay: float = option(1e-2, FLOAT, "AdamW weight decay", min=0.0, surfaces=("cli",))
    lr_schedule: str = option("constant", STR, "learning-rate schedule", choices=LR_SCHEDULES, surfaces=("cli",))
    warmup_steps: int = option(0, INT, "linear warm-up steps", min=0, surfaces=("cli",))
    checkpoint_every: int = option(200, INT, "steps between checkpoints", min=1, surfaces=("cli",))
    device: str = shared(DEVICE)
    dtype: str = shared(TRAINING_DTYPE)
    allow_pickle: bool = shared(ALLOW_PICKLE)
    gradient_checkpointing: bool = option(False, BOOL, "recompute UNet activations in backward (less memory)",
                                          surfaces=("cli",))
    compile: bool = option(False, BOOL, "torch.compile the UNet", surfaces=("cli",))
    cache_dir: str | Path | None = option(None, PATH, "latent cache folder (default: bridgedfast-latents/ beside OUT)",
                                          surfaces=("cli",))
    encode_batch_size: int = option(16, INT, "images per VAE encoder call when filling the cache", min=1,
                                    surfaces=("cli",))
    progress: bool = option(True, BOOL, "progress bars", flag="--quiet", surfaces=("cli",), keyed=False)

    @property
    def effective_lr(self) -> float:
        """The learning rate AdamW uses: lr x batch size with `scale_lr` (diffusers' --scale_lr)."""
        return self.lr * self.batch_size if self.scale_lr else self.lr
