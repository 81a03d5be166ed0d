"""One training stage: its typed state (`StageState`: loader, optimiser, scaler, schedule
position) and its epochs.

Determinism: every epoch reseeds what it draws (loader order and augmentation through
`set_epoch`, Mixup and dropout from seeds derived from (seed, stage index, epoch, rank)), so a
checkpoint at an epoch boundary is all a resumed run needs.
"""
from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..distributed import DistInfo, all_reduce_sum
from ..schedules import lr_factor
from ..seeds import derive_seed
from . import data as _data
from .config import StageConfig
from .models import param_groups

if TYPE_CHECKING:
    from ..augment import Mixup
    from ..data import MixedLoader

__all__ = ["StageState", "make_optimizer", "train_epoch", "Precision"]


@dataclass(frozen=True)
class Precision:
    """How the training loop runs the model: autocast dtype (None: none) and memory format."""

    amp_dtype: torch.dtype | None
    channels_last: bool

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.amp_dtype)


@dataclass
class StageState:
    """Everything a stage carries from one epoch (and one checkpoint) to the next."""

    index: int                              # position in TrainConfig.stages()
    name: str                               # stage1 | stage2
    data: str                               # synthetic | real | real+synthetic
    config: StageConfig                     # resolved
    head: str                               # initial | kept | reset
    loader: MixedLoader
    loader_seed: int
    model: nn.Module                        # what the loop calls: the DDP / compiled wrapper of the model
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None     # fp16 autocast only
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    step: int = 0                           # optimiser steps done in this stage

    def lr_factor(self, step: int) -> float:
        return lr_factor(step, self.total_steps, self.warmup_steps, self.config.min_lr_ratio)

    def summary(self, history: list[dict[str, Any]], leep: float | None) -> dict[str, Any]:
        """The stage's entry in results.json `stages` (from its rows of the run's history)."""
        s = self.config
        rows = [h for h in history if h["stage"] == self.name]
        return {
            "name": self.name, "data": self.data, "epochs": s.epochs, "steps": self.total_steps, "batch_size": s.batch_size,
            "images": {"real": sum(r["images_real"] for r in rows), "synthetic": sum(r["images_synthetic"] for r in rows)},
            "final_train_loss": rows[-1]["train_loss"], "final_train_top1": rows[-1]["train_top1"],
            "test_top1": rows[-1]["test_top1"], "test_top5": rows[-1]["test_top5"],
            "head": self.head, "optimizer": s.optimizer, "lr": s.lr, "head_lr": s.head_lr, "weight_decay": s.weight_decay,
            "label_smoothing": s.label_smoothing, "loader_seed": self.loader_seed,
            "mixup": {"mixup_alpha": s.mixup_alpha, "cutmix_alpha": s.cutmix_alpha, "prob": s.mixup_prob,
                      "switch_prob": s.mixup_switch_prob} if s.mixup_enabled else None,
            "leep": leep if self.data == "synthetic" else None,
        }


def make_optimizer(model: nn.Module, s: StageConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, lr=s.lr, head_lr=s.head_lr, weight_decay=s.weight_decay)
    if s.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=s.lr, momentum=s.momentum, nesterov=s.nesterov and s.momentum > 0)
    return torch.optim.AdamW(groups, lr=s.lr)


def _loss(logits: torch.Tensor, targets: torch.Tensor, soft: torch.Tensor | None, label_smoothing: float) -> torch.Tensor:
    if soft is not None:
        return torch.sum(-soft * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()
    return F.cross_entropy(logits.float(), targets, label_smoothing=label_smoothing)


def _optimise(st: StageState, loss: torch.Tensor) -> None:
    st.optimizer.zero_grad(set_to_none=True)
    if st.scaler is not None:
        st.scaler.scale(loss).backward()
        st.scaler.step(st.optimizer)
        st.scaler.update()
    else:
        loss.backward()
        st.optimizer.step()


def train_epoch(st: StageState, epoch: int, *, seed: int, info: DistInfo, num_classes: int, precision: Precision,
                progress: bool, on_step: Callable[[], None]) -> dict[str, Any]:
    """Trains epoch `epoch` of the stage; returns its history row (summed over ranks).
    `on_step()` is called after every optimiser step."""
    s, device = st.config, info.device
    st.model.train()
    torch.manual_seed(derive_seed("dropout", seed, st.index, epoch, info.rank))
    mixup: Mixup | None = None
    if s.mixup_enabled:
        mixup = _data.make_mixup(s, num_classes, derive_seed("mixup", seed, st.index, epoch, info.rank))
    stats = torch.zeros(4, dtype=torch.float64, device=device)  # loss sum, correct, images, synthetic images
    seen = 0  # images on this rank (host count: no device sync for the progress bar)
    steps = st.steps_per_epoch
    passes = math.ceil(steps / len(st.loader))
    from tqdm import tqdm

    bar = tqdm(total=steps, desc=f"{st.name} ({st.data}) epoch {epoch + 1}/{s.epochs}", unit="step", leave=False,
               disable=not (info.is_main and progress), file=sys.stderr, dynamic_ncols=True)
    start, step = time.perf_counter(), 0
    for p in range(passes):
        st.loader.set_epoch(epoch * passes + p)
        for images, targets, is_syn in st.loader:
            if step == steps:
                break
            images = images.to(device, non_blocking=True)
            if precision.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            targets = targets.to(device, non_blocking=True)
            is_syn = is_syn.to(device, non_blocking=True)
            factor = st.lr_factor(st.step)
            for g in st.optimizer.param_groups:
                g["lr"] = g["base_lr"] * factor
            soft = None
            if mixup is not None:
                images, soft = mixup(images, targets)
            with precision.autocast(device):
                logits = st.model(images)
            loss = _loss(logits, targets, soft, s.label_smoothing)
            _optimise(st, loss)
            n = targets.numel()
            seen += n
            stats[0] += loss.detach().double() * n
            stats[1] += (logits.detach().argmax(1) == targets).sum()
            stats[3] += is_syn.sum()
            step += 1
            st.step += 1
            on_step()
            if bar.disable is False and (step % 10 == 0 or step == steps or device.type == "cpu"):
                elapsed = time.perf_counter() - start
                bar.set_postfix(loss=f"{float(stats[0]) / seen:.4f}", img_s=f"{seen * info.world_size / elapsed:.0f}")
            bar.update(1)
        if step == steps:
            break
    bar.close()
    seconds = time.perf_counter() - start
    stats[2] = seen
    all_reduce_sum(stats, info)
    images = float(stats[2])
    return {
        "stage": st.name, "data": st.data, "epoch": epoch + 1, "train_loss": float(stats[0]) / images,
        "train_top1": float(stats[1]) / images, "images": int(images), "images_synthetic": int(stats[3]),
        "images_real": int(images - float(stats[3])), "lr": s.lr * st.lr_factor(st.step - 1),
        "seconds": seconds, "images_per_s": images / seconds if seconds > 0 else None,
    }
