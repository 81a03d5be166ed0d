"""Run configuration: `TrainConfig` (the run) and `StageConfig` (one stage's optimisation).

Stages are named by role. Stage 1 is the synthetic-only stage of `bridged` and `bridged++`.
Stage 2 is the stage that trains on real data, in every mode (in `mixed` it also sees the
synthetic images). So the `stage2` settings are the real fine-tuning of every mode, and one
command line with only `--mode` changed compares the modes fairly.

A StageConfig field left at None inherits the TrainConfig value or the documented default;
`TrainConfig.resolved()` fills every field, and that resolved form is what a run records.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..devices import AMP_MODES

__all__ = ["MODES", "OPTIMIZERS", "AMP_MODES", "StageConfig", "TrainConfig"]

MODES = ("vanilla", "mixed", "bridged", "bridged++")
OPTIMIZERS = ("sgd", "adamw")

# Options that say how to run, not what to compute: they may change when resuming a run.
RUNTIME_KEYS = ("out", "device", "workers", "progress", "compile", "eval_batch_size", "cache_on_device")

# Defaults where the paper gives no value (PAPER.md "What is not known"):
DEFAULT_LR = {"sgd": 0.01, "adamw": 1e-4}            # backbone lr at batch 64
DEFAULT_WEIGHT_DECAY = {"sgd": 1e-4, "adamw": 0.05}
HEAD_LR_SCALE = 10.0                                  # head lr = 10 x backbone lr
BRIDGED_PP_MIXUP = {"mixup_alpha": 0.8, "cutmix_alpha": 1.0}  # timm's ImageNet recipe


@dataclass
class StageConfig:
    """One stage's optimisation. None = inherit (see the module docstring)."""

    epochs: int | None = None              # None: TrainConfig.epochs
    steps_per_epoch: int | None = None     # None: one pass of the loader; else this many steps
    batch_size: int | None = None          # global batch (all ranks together); None: TrainConfig.batch_size
    optimizer: str = "sgd"                 # sgd (momentum 0.9, nesterov) or adamw
    lr: float | None = None                # backbone lr; None: TrainConfig.lr, else 0.01 (sgd) / 1e-4 (adamw)
    head_lr: float | None = None           # None: 10 x backbone lr
    weight_decay: float | None = None      # None: 1e-4 (sgd) / 0.05 (adamw); never on biases and norms
    momentum: float = 0.9
    nesterov: bool = True
    warmup_epochs: float = 1.0             # linear warmup, then cosine to min_lr_ratio x lr
    min_lr_ratio: float = 0.0
    label_smoothing: float = 0.1
    mixup_alpha: float | None = None       # None: 0.8 in bridged++ stage 1, else 0 (off)
    cutmix_alpha: float | None = None      # None: 1.0 in bridged++ stage 1, else 0 (off)
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5

    @property
    def mixup_enabled(self) -> bool:
        return bool((self.mixup_alpha or 0) > 0 or (self.cutmix_alpha or 0) > 0) and self.mixup_prob > 0


@dataclass
class TrainConfig:
    """A bridged-transfer run. Paths are ImageStore folders; `out` receives results.json,
    curves.png, checkpoints and the final weights."""

    model: str                             # any timm model name
    real_train: str
    real_test: str
    out: str
    mode: str = "bridged++"                # vanilla | mixed | bridged | bridged++
    synthetic: str | None = None           # needed by mixed, bridged, bridged++
    shots: int | None = None               # K real training images per class (seeded split)
    split_seed: int | None = None          # None: seed
    pretrained: str = "timm"               # timm | none | a weights file
    epochs: int = 10                       # each stage, unless the stage says otherwise
    batch_size: int = 64
    lr: float | None = None
    image_size: int | None = None          # None: the model's default input size
    device: str = "auto"
    seed: int = 0
    workers: int | None = None             # loader worker threads; None: the loader's default
    cache_on_device: bool | str = False    # loader keeps decoded stores on the device (True/False/"auto")
    synthetic_fraction: float | None = None  # mixed: None = proportional to the stores' sizes
    stage1: StageConfig = field(default_factory=StageConfig)
    stage2: StageConfig = field(default_factory=StageConfig)
    amp: str = "auto"                      # auto: bf16 on CUDA (fp16 + scaler if no bf16), none on CPU
    channels_last: bool | None = None      # None: on CUDA
    compile: bool = False                  # torch.compile the model
    sync_bn: bool = False                  # SyncBatchNorm under DDP
    train_scale: tuple[float, float] = (0.08, 1.0)   # RandomResizedCrop area range
    train_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    crop_pct: float | None = None          # eval centre crop fraction; None: the model's
    eval_batch_size: int | None = None     # None: 2 x batch_size
    eval_every: int = 1                    # test accuracy every N epochs (and always at a stage's end)
    progress: bool = True

    # ---------------------------------------------------------------- validation
    def stages(self) -> list[tuple[str, str, StageConfig]]:
        """(name, data, stage config) per stage, in order; data is synthetic|real|real+synthetic."""
        if self.mode in ("bridged", "bridged++"):
            return [("stage1", "synthetic", self.stage1), ("stage2", "real", self.stage2)]
        if self.mode == "mixed":
            return [("stage2", "real+synthetic", self.stage2)]
        return [("stage2", "real", self.stage2)]

    def resolved(self) -> "TrainConfig":
        """A copy with every default filled in and every value checked (ValueError naming it)."""
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}: use one of {', '.join(MODES)}")
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"model must be a timm model name, got {self.model!r}")
        for name in ("real_train", "real_test", "out"):
            if not getattr(self, name):
                raise ValueError(f"{name.replace('_', '-')} is required")
        if self.mode != "vanilla" and not self.synthetic:
            raise ValueError(f"mode {self.mode!r} needs a synthetic store (--synthetic STORE)")
        _positive_int("epochs", self.epochs)
        _positive_int("batch-size", self.batch_size)
        _positive_int("eval-every", self.eval_every)
        if self.shots is not None:
            _positive_int("shots", self.shots)
        if self.image_size is not None:
            _positive_int("image-size", self.image_size)
        if self.eval_batch_size is not None:
            _positive_int("eval-batch-size", self.eval_batch_size)
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 0):
            raise ValueError(f"workers must be >= 0, got {self.workers!r}")
        if self.lr is not None and not self.lr >= 0:
            raise ValueError(f"lr must be >= 0, got {self.lr!r}")
        if self.cache_on_device not in (True, False, "auto"):
            raise ValueError(f"cache-on-device must be true, false or auto, got {self.cache_on_device!r}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"unknown amp {self.amp!r}: use one of {', '.join(AMP_MODES)}")
        if self.synthetic_fraction is not None:
            if self.mode != "mixed":
                raise ValueError(f"synthetic-fraction applies to mode mixed only, not {self.mode!r}")
            if not 0.0 < self.synthetic_fraction < 1.0:
                raise ValueError(f"synthetic-fraction must be in (0, 1), got {self.synthetic_fraction!r}")
        if not 0.0 < self.train_scale[0] <= self.train_scale[1] <= 1.0:
            raise ValueError(f"train-scale must be 0 < min <= max <= 1, got {self.train_scale!r}")
        if not 0.0 < self.train_ratio[0] <= self.train_ratio[1]:
            raise ValueError(f"train-ratio must be 0 < min <= max, got {self.train_ratio!r}")
        if not 0.0 <= self.hflip <= 1.0:
            raise ValueError(f"hflip must be in [0, 1], got {self.hflip!r}")
        if self.crop_pct is not None and not 0.0 < self.crop_pct <= 1.0:
            raise ValueError(f"crop-pct must be in (0, 1], got {self.crop_pct!r}")
        stage1 = self._resolve_stage("stage1", self.stage1)
        stage2 = self._resolve_stage("stage2", self.stage2)
        return dataclasses.replace(
            self,
            real_train=str(self.real_train), real_test=str(self.real_test), out=str(self.out),
            synthetic=None if self.synthetic is None else str(self.synthetic),
            pretrained="none" if self.pretrained is None else str(self.pretrained),
            split_seed=self.seed if self.split_seed is None else self.split_seed,
            eval_batch_size=self.eval_batch_size or 2 * self.batch_size,
            train_scale=tuple(float(v) for v in self.train_scale),
            train_ratio=tuple(float(v) for v in self.train_ratio),
            stage1=stage1,
            stage2=stage2,
        )

    def _resolve_stage(self, name: str, s: StageConfig) -> StageConfig:
        if not isinstance(s, StageConfig):
            raise ValueError(f"{name} must be a StageConfig, got {type(s).__name__}")
        if s.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown {name} optimizer {s.optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
        epochs = self.epochs if s.epochs is None else s.epochs
        _positive_int(f"{name}-epochs", epochs)
        if s.steps_per_epoch is not None:
            _positive_int(f"{name}-steps-per-epoch", s.steps_per_epoch)
        batch = self.batch_size if s.batch_size is None else s.batch_size
        _positive_int(f"{name}-batch-size", batch)
        lr = s.lr if s.lr is not None else self.lr if self.lr is not None else DEFAULT_LR[s.optimizer]
        head_lr = s.head_lr if s.head_lr is not None else HEAD_LR_SCALE * lr
        wd = s.weight_decay if s.weight_decay is not None else DEFAULT_WEIGHT_DECAY[s.optimizer]
        for what, v in (("lr", lr), ("head-lr", head_lr), ("weight-decay", wd), ("warmup-epochs", s.warmup_epochs)):
            if not v >= 0:
                raise ValueError(f"{name}-{what} must be >= 0, got {v!r}")
        if not 0.0 <= s.label_smoothing < 1.0:
            raise ValueError(f"{name}-label-smoothing must be in [0, 1), got {s.label_smoothing!r}")
        if not 0.0 <= s.min_lr_ratio <= 1.0:
            raise ValueError(f"{name}-min-lr-ratio must be in [0, 1], got {s.min_lr_ratio!r}")
        default_mix = BRIDGED_PP_MIXUP if (self.mode == "bridged++" and name == "stage1") else {"mixup_alpha": 0.0, "cutmix_alpha": 0.0}
        mixup_alpha = default_mix["mixup_alpha"] if s.mixup_alpha is None else s.mixup_alpha
        cutmix_alpha = default_mix["cutmix_alpha"] if s.cutmix_alpha is None else s.cutmix_alpha
        for what, v in (("mixup-alpha", mixup_alpha), ("cutmix-alpha", cutmix_alpha)):
            if not v >= 0:
                raise ValueError(f"{name}-{what} must be >= 0, got {v!r}")
        for what, v in (("mixup-prob", s.mixup_prob), ("mixup-switch-prob", s.mixup_switch_prob)):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name}-{what} must be in [0, 1], got {v!r}")
        out = dataclasses.replace(
            s, epochs=epochs, batch_size=batch, lr=float(lr), head_lr=float(head_lr), weight_decay=float(wd),
            mixup_alpha=float(mixup_alpha), cutmix_alpha=float(cutmix_alpha),
        )
        if out.mixup_enabled and batch % 2:
            raise ValueError(f"{name} uses Mixup/CutMix, which needs an even batch size, got {batch}")
        return out

    # ---------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        d = dict(d)
        for name in ("stage1", "stage2"):
            if isinstance(d.get(name), dict):
                d[name] = StageConfig(**d[name])
        for name in ("train_scale", "train_ratio"):
            if name in d:
                d[name] = tuple(d[name])
        return cls(**d)


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
