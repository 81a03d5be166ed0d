"""Run configuration: `TrainConfig` (the run) and `StageConfig` (one stage's optimisation), each
option declared once (see `bridgedfast.options`): `bridgedfast train`'s flags, the `training:`
section of `bridgedfast run` and their validation derive from these declarations.

Stages are named by role. Stage 1 is the synthetic-only stage of `bridged` and `bridged++`.
Stage 2 is the stage that trains on real data, in every mode (in `mixed` it also sees the
synthetic images). So the `stage2` settings are the real fine-tuning of every mode, and one
command line with only `--mode` changed compares the modes fairly.

A StageConfig field left at None inherits the TrainConfig value or the documented default;
`TrainConfig.resolved()` fills every field, and that resolved form is what a run records.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from ..devices import AMP_MODES, DEVICE
from ..options import BOOL, FLOAT, FLOAT_PAIR, INT, PATH, REQUIRED, SEED_RANGE, STR, Config, Kind, dashed_name, option, shared

__all__ = ["MODES", "OPTIMIZERS", "AMP_MODES", "RUNTIME_KEYS", "StageConfig", "TrainConfig"]

MODES = ("vanilla", "mixed", "bridged", "bridged++")
OPTIMIZERS = ("sgd", "adamw")

# Options that say how to run, not what to compute: they may change when resuming a run.
RUNTIME_KEYS = ("out", "device", "workers", "progress", "compile", "eval_batch_size", "cache_on_device")

# Defaults where the paper gives no value (PAPER.md "What is not known"):
DEFAULT_LR = {"sgd": 0.01, "adamw": 1e-4}            # backbone lr at batch 64
DEFAULT_WEIGHT_DECAY = {"sgd": 1e-4, "adamw": 0.05}
HEAD_LR_SCALE = 10.0                                  # head lr = 10 x backbone lr
BRIDGED_PP_MIXUP = {"mixup_alpha": 0.8, "cutmix_alpha": 1.0}  # timm's ImageNet recipe
BOTH = ("cli", "yaml")  # options `bridgedfast run`'s training section also sets (the rest: training.options)


def _cache_mode(value: Any) -> bool | str:
    if value in (True, False, "auto"):
        return value
    raise TypeError(value)


def _parse_cache_mode(text: str) -> bool | str:
    modes = {"no": False, "yes": True, "auto": "auto"}
    if text not in modes:
        import argparse

        raise argparse.ArgumentTypeError(f"expected no, yes or auto, got {text!r}")
    return modes[text]


CACHE_MODE = Kind("cache mode", "true, false or auto", _cache_mode, _parse_cache_mode, "no|yes|auto")


def _not_empty(value: Any, name: str) -> None:
    if not str(value):
        raise ValueError(f"{name} is required")


def _ordered_pair(upper: float | None):
    def check(value: tuple[float, float], name: str) -> None:
        lo, hi = value
        if not (0.0 < lo <= hi and (upper is None or hi <= upper)):
            rule = "0 < min <= max" + ("" if upper is None else f" <= {upper:g}")
            raise ValueError(f"{name} must be {rule}, got {value!r}")

    return check


@dataclass
class StageConfig(Config, surfaces=("cli",)):
    """One stage's optimisation. None = inherit (see the module docstring)."""

    epochs: int | None = option(None, INT, "epochs (default: --epochs)", min=1)
    steps_per_epoch: int | None = option(None, INT, "optimiser steps per epoch (default: one pass over the data)", min=1)
    batch_size: int | None = option(None, INT, "global batch size, split across processes (default: --batch-size)",
                                    min=1)
    optimizer: str = option("sgd", STR, "sgd = SGD momentum 0.9 nesterov; adamw = AdamW", choices=OPTIMIZERS)
    lr: float | None = option(None, FLOAT, "backbone learning rate (default: --lr, else 0.01 sgd, 1e-4 adamw)", min=0.0)
    head_lr: float | None = option(None, FLOAT, "classifier learning rate (default: 10 x the backbone lr)", min=0.0)
    weight_decay: float | None = option(None, FLOAT, "weight decay, not on biases/norms (default: 1e-4 sgd, 0.05 adamw)",
                                        min=0.0)
    momentum: float = option(0.9, FLOAT, "SGD momentum (nesterov)", min=0.0)
    nesterov: bool = option(True, BOOL, "Nesterov momentum", surfaces=())
    warmup_epochs: float = option(1.0, FLOAT, "linear warmup epochs, then cosine decay", min=0.0)
    min_lr_ratio: float = option(0.0, FLOAT, "final lr of the cosine as a fraction of the lr", min=0.0, max=1.0)
    label_smoothing: float = option(0.1, FLOAT, "label smoothing", min=0.0, max=1.0, max_open=True)
    mixup_alpha: float | None = option(None, FLOAT, "Mixup alpha; 0 = off (default: 0.8 in bridged++ stage 1, else 0)",
                                       min=0.0)
    cutmix_alpha: float | None = option(None, FLOAT, "CutMix alpha; 0 = off (default: 1.0 in bridged++ stage 1, "
                                        "else 0)", min=0.0)
    mixup_prob: float = option(1.0, FLOAT, "probability of mixing a batch", min=0.0, max=1.0)
    mixup_switch_prob: float = option(0.5, FLOAT, "probability of CutMix instead of Mixup when both are on",
                                      min=0.0, max=1.0)

    @property
    def mixup_enabled(self) -> bool:
        return bool((self.mixup_alpha or 0) > 0 or (self.cutmix_alpha or 0) > 0) and self.mixup_prob > 0


@dataclass
class TrainConfig(Config, surfaces=("cli",)):
    """A bridged-transfer run. Paths are ImageStore folders; `out` receives results.json,
    curves.png, checkpoints and the final weights."""

    model: str = option(REQUIRED, STR, "timm model name, e.g. resnet18, resnet50, vit_base_patch16_224",
                        check=_not_empty, surfaces=BOTH)
    real_train: str = option(REQUIRED, PATH, "real training images (an ImageStore from `bridgedfast pack`)",
                             metavar="STORE", check=_not_empty)
    real_test: str = option(REQUIRED, PATH, "real test images: top-1/top-5 are measured on all of them", metavar="STORE",
                            check=_not_empty)
    out: str = option(REQUIRED, PATH, "output folder (results.json, curves.png, checkpoints)", metavar="DIR",
                      check=_not_empty, keyed=False)
    mode: str = option("bridged++", STR, "training recipe", choices=MODES)
    synthetic: str | None = option(None, PATH, "synthetic images (classes matched to the real ones by name); needed by "
                                   "mixed, bridged, bridged++", metavar="STORE")
    synthetic_per_class: int | None = option(None, INT, "train on the synthetic images whose image_index is < N: "
                                             "the images a generation of N per class makes, taken in place from a "
                                             "larger one (volume studies)", min=1, metavar="N", keyed="if_set")
    shots: int | None = option(None, INT, "use K real training images per class (seeded split, saved to "
                               "OUT/split.json)", min=1, metavar="K")
    split_seed: int | None = option(None, INT, "seed of the few-shot split (default: --seed)", metavar="SEED",
                                    **SEED_RANGE)
    pretrained: str = option("timm", STR, "timm = timm's ImageNet weights (hub or local cache), none = random init, or "
                             "a local .safetensors/.pt/.pth state dict", metavar="timm|none|FILE", surfaces=BOTH)
    epochs: int = option(10, INT, "epochs of each stage", min=1, surfaces=BOTH)
    batch_size: int = option(64, INT, "global batch size, split across processes", min=1, surfaces=BOTH)
    lr: float | None = option(None, FLOAT, "backbone learning rate; the head gets 10x (default: 0.01 sgd, 1e-4 adamw)",
                              min=0.0, surfaces=BOTH)
    image_size: int | None = option(None, INT, "training/eval crop size (default: the model's input size)", min=1,
                                    surfaces=BOTH)
    device: str = shared(DEVICE, surfaces=BOTH)
    seed: int = option(0, INT, "seed of everything random in the run", **SEED_RANGE)
    workers: int | None = option(None, INT, "loader worker threads (default: the loader's)", min=0, surfaces=BOTH,
                                 keyed=False)
    cache_on_device: bool | str = option(False, CACHE_MODE, "loader keeps the decoded stores on the device (auto: on "
                                         "CUDA when they fit in half its free memory)")
    synthetic_fraction: float | None = option(None, FLOAT, "mixed mode: each batch's synthetic share in (0, 1) "
                                              "(default: proportional to the stores' sizes)",
                                              min=0.0, max=1.0, min_open=True, max_open=True, surfaces=BOTH)
    stage1: StageConfig = dataclasses.field(default_factory=StageConfig)
    stage2: StageConfig = dataclasses.field(default_factory=StageConfig)
    amp: str = option("auto", STR, "mixed precision: auto = bf16 on CUDA (fp16 with a grad scaler without bf16), none "
                      "on CPU", choices=AMP_MODES)
    channels_last: bool | None = option(None, BOOL, "channels_last memory format (default: on CUDA)",
                                        flag="--[no-]channels-last")
    compile: bool = option(False, BOOL, "torch.compile the model")
    sync_bn: bool = option(False, BOOL, "SyncBatchNorm across processes under torchrun")
    train_scale: tuple[float, float] = option((0.08, 1.0), FLOAT_PAIR, "random-resized-crop area range",
                                              check=_ordered_pair(1.0))
    train_ratio: tuple[float, float] = option((3 / 4, 4 / 3), FLOAT_PAIR, "random-resized-crop aspect range",
                                              check=_ordered_pair(None))
    hflip: float = option(0.5, FLOAT, "horizontal flip probability", min=0.0, max=1.0, metavar="P")
    crop_pct: float | None = option(None, FLOAT, "eval centre-crop fraction (default: the model's, e.g. 0.875)",
                                    min=0.0, max=1.0, min_open=True)
    eval_batch_size: int | None = option(None, INT, "eval batch per process (default: 2 x --batch-size)", min=1)
    eval_every: int = option(1, INT, "test accuracy every N epochs and at each stage's end", min=1)
    min_steps: int = option(100, INT, "minimum optimiser steps of each stage: a stage whose epochs x steps per epoch "
                            "(full batches, drop_last) fall short gets ceil(N / steps per epoch) epochs, its test "
                            "accuracy and checkpoints then as often as the requested epochs had them (a 1-shot stage "
                            "is otherwise a handful of steps); results.json records each stage's steps; 0 = none",
                            min=0, metavar="N", surfaces=BOTH, keyed="if_set")
    progress: bool = option(True, BOOL, "progress bars or per-epoch lines", flag="--no-progress", keyed=False)

    # ---------------------------------------------------------------- validation
    def stages(self) -> list[tuple[str, str, StageConfig]]:
        """(name, data, stage config) per stage, in order; data is synthetic|real|real+synthetic."""
        if self.mode in ("bridged", "bridged++"):
            return [("stage1", "synthetic", self.stage1), ("stage2", "real", self.stage2)]
        if self.mode == "mixed":
            return [("stage2", "real+synthetic", self.stage2)]
        return [("stage2", "real", self.stage2)]

    def resolved(self) -> TrainConfig:
        """A copy with every default filled in and every value checked (ValueError naming it)."""
        cfg = dataclasses.replace(self).validate(dashed_name)
        if cfg.mode != "vanilla" and not cfg.synthetic:
            raise ValueError(f"mode {cfg.mode!r} needs a synthetic store (--synthetic STORE)")
        if cfg.synthetic_per_class is not None and cfg.mode == "vanilla":
            raise ValueError("synthetic-per-class needs a synthetic store: not mode vanilla")
        if cfg.synthetic_fraction is not None and cfg.mode != "mixed":
            raise ValueError(f"synthetic-fraction applies to mode mixed only, not {cfg.mode!r}")
        return dataclasses.replace(
            cfg,
            real_train=str(cfg.real_train), real_test=str(cfg.real_test), out=str(cfg.out),
            synthetic=None if cfg.synthetic is None else str(cfg.synthetic),
            pretrained="none" if cfg.pretrained is None else str(cfg.pretrained),
            split_seed=cfg.seed if cfg.split_seed is None else cfg.split_seed,
            eval_batch_size=cfg.eval_batch_size or 2 * cfg.batch_size,
            stage1=self._resolve_stage("stage1", cfg.stage1),
            stage2=self._resolve_stage("stage2", cfg.stage2),
        )

    def _resolve_stage(self, name: str, s: StageConfig) -> StageConfig:
        if not isinstance(s, StageConfig):
            raise ValueError(f"{name} must be a StageConfig, got {type(s).__name__}")
        if s.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown {name} optimizer {s.optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
        s = dataclasses.replace(s).validate(lambda option: f"{name}-{dashed_name(option)}")
        epochs = self.epochs if s.epochs is None else s.epochs
        batch = self.batch_size if s.batch_size is None else s.batch_size
        lr = s.lr if s.lr is not None else self.lr if self.lr is not None else DEFAULT_LR[s.optimizer]
        head_lr = s.head_lr if s.head_lr is not None else HEAD_LR_SCALE * lr
        wd = s.weight_decay if s.weight_decay is not None else DEFAULT_WEIGHT_DECAY[s.optimizer]
        default_mix = BRIDGED_PP_MIXUP if (self.mode == "bridged++" and name == "stage1") else {"mixup_alpha": 0.0, "cutmix_alpha": 0.0}
        out = dataclasses.replace(
            s, epochs=epochs, batch_size=batch, lr=float(lr), head_lr=float(head_lr), weight_decay=float(wd),
            mixup_alpha=float(default_mix["mixup_alpha"] if s.mixup_alpha is None else s.mixup_alpha),
            cutmix_alpha=float(default_mix["cutmix_alpha"] if s.cutmix_alpha is None else s.cutmix_alpha),
        )
        if out.mixup_enabled and batch % 2:
            raise ValueError(f"{name} uses Mixup/CutMix, which needs an even batch size, got {batch}")
        return out

    # ---------------------------------------------------------------- what a run records
    def record(self, *, keyed_only: bool = False) -> dict[str, Any]:
        """The configuration as plain values: what config.json and results.json hold, and with
        `keyed_only` (without the options that never identify a result: out, device, workers,
        progress) what keys an experiment's training step. Options declared after these formats
        were frozen (`keyed="if_set"`) appear only when set, so stored runs keep comparing equal."""
        d = json.loads(json.dumps(dataclasses.asdict(self), default=str))
        for cls, values in ((TrainConfig, d), (StageConfig, d["stage1"]), (StageConfig, d["stage2"])):
            for name, opt in cls.options().items():
                if (opt.keyed == "if_set" and values.get(name) == opt.default) or (keyed_only and opt.keyed is False):
                    values.pop(name, None)
        return d
