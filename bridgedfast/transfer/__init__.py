"""Bridged transfer: fine-tune timm classifiers on real and synthetic images.

Modes (PAPER.md): `vanilla` (real only), `mixed` (real + synthetic in one stage), `bridged`
(stage 1 synthetic only, stage 2 real only, head kept), `bridged++` (as bridged, with
Mixup/CutMix in stage 1 and the classifier re-initialised before stage 2).

    from bridgedfast.transfer import TrainConfig, StageConfig, train
    results = train(TrainConfig(model="resnet50", real_train="stores/train", real_test="stores/test",
                                synthetic="stores/synthetic", mode="bridged++", out="runs/r50"))
"""
from __future__ import annotations

from ..data.subsets import few_shot_split
from ..seeds import derive_seed, head_reset_seed
from .config import AMP_MODES, MODES, OPTIMIZERS, StageConfig, TrainConfig
from .leep import leep
from .models import create_model, reset_head
from .results import compare_runs, format_comparison, plot_curves
from .trainer import train

__all__ = [
    "MODES", "OPTIMIZERS", "AMP_MODES", "StageConfig", "TrainConfig", "train", "leep", "few_shot_split", "derive_seed",
    "create_model", "reset_head", "head_reset_seed", "compare_runs", "format_comparison", "plot_curves",
]
