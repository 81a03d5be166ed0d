"""The filter options, declared once (see `bridgedfast.options`): `bridgedfast filter`'s flags and
the `filter:` section of `bridgedfast run` derive from them."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..devices import DEVICE
from ..generate.prompts import DEFAULT_TEMPLATE, check_template_text
from ..options import BOOL, FLOAT, INT, PATH, STR, Config, option, shared

__all__ = ["FilterConfig", "SCORERS"]

SCORERS = ("clip", "classifier")


@dataclass
class FilterConfig(Config):
    """How `filter_store` scores a synthetic store and how much of each class it keeps."""

    keep: float = option(0.8, FLOAT, "fraction of each class kept: its round(keep x n) best-scored images (at least 1)",
                         min=0.0, max=1.0, min_open=True)
    by: str = option("clip", STR, "score: clip = CLIP similarity of the image and its class prompt; classifier = "
                     "probability of the image's own class under a model trained on real data", choices=SCORERS)
    clip_model: str | Path | None = option(None, PATH, "local transformers CLIP folder (CLIPModel + CLIPProcessor), "
                                           "for --by clip", metavar="PATH")
    score_template: str = option(DEFAULT_TEMPLATE, STR, "CLIP prompt of each class; {} is the class name (underscores "
                                 "as spaces)", check=check_template_text)
    classifier: str | Path | None = option(None, PATH, "a `bridgedfast train` run folder (trained on real data), for "
                                           "--by classifier", metavar="RUN_DIR")
    batch_size: int = option(64, INT, "images scored per batch", min=1, keyed=False)
    device: str = shared(DEVICE, keyed=False)
    progress: bool = option(True, BOOL, "progress bar", flag="--no-progress", surfaces=("cli",), keyed=False)
