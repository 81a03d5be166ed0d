"""The bridged-transfer trainer: `train(config)` runs the stages of a mode with evaluation, LEEP,
a checkpoint each epoch and resume, under torchrun as well.

The parts: `data.RunData` (stores and splits), `run_folder.RunFolder` (the --out folder: refusal,
resume, files), `stage` (`StageState` and the epoch loop), `evaluate.Evaluator` (accuracy, LEEP).
Determinism: every epoch reseeds what it draws (see `stage`), the model's initialisation and the
classifier re-initialisation have their own seeds, so a checkpoint is all a resumed run needs to
continue exactly where an uninterrupted run would have been.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Any, Callable

import torch
from torch import nn

from ..data.sampler import MixedSampler
from ..devices import resolve_amp, resolve_device
from ..distributed import DistInfo, barrier, init_distributed, shutdown
from ..seeds import derive_seed, head_reset_seed
from . import data as _data
from .checkpoint import load_checkpoint, save_checkpoint
from .config import StageConfig, TrainConfig
from .evaluate import Evaluator
from .models import create_source_model, data_config, reset_head
from .results import run_results
from .run_folder import RunFolder, model_state
from .stage import Precision, StageState, make_optimizer, train_epoch

__all__ = ["train", "check_batch", "apply_min_steps"]


def train(config: TrainConfig, *, on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Runs (or resumes, or just reports a finished) bridged-transfer run; returns results.json's dict.

    Under torchrun every rank calls this; rank 0 writes the outputs. `on_step(step)` is called
    after every optimiser step with the run's step count (1-based, resumed steps included)."""
    cfg = config.resolved()
    info = init_distributed(resolve_device(cfg.device))
    try:
        return Trainer(cfg, info, on_step).run()
    finally:
        shutdown()


def check_batch(name: str, data: str, s: StageConfig, *, world: int, real: int, synthetic: int,
                fraction: float | None) -> int:
    """The loader's batch arithmetic, asked of the MixedSampler before anything is written;
    returns the stage's full batches per loader pass (per process)."""
    if s.batch_size % world:
        raise ValueError(f"{name} batch size {s.batch_size} is not divisible by the {world} processes")
    per_rank = s.batch_size // world
    if s.mixup_enabled and per_rank % 2:
        raise ValueError(f"{name} uses Mixup, which needs an even batch per process, got {per_rank}")
    if data == "real+synthetic" and fraction is not None:
        k = MixedSampler.synthetic_per_batch_for(fraction, per_rank)
        if not 0 < k < per_rank:
            raise ValueError(f"synthetic-fraction {fraction} of a batch of {per_rank} per process gives {k} synthetic "
                             "images per batch; use a larger batch or another fraction")
        images = real
    else:
        fraction = {"synthetic": 1.0, "real": 0.0, "real+synthetic": None}[data]
        images = {"synthetic": synthetic, "real": real, "real+synthetic": real + synthetic}[data]
    batches = 0
    if images // world:
        batches = len(MixedSampler(real, synthetic, batch_size=per_rank, synthetic_fraction=fraction, world_size=world))
    if batches == 0:
        raise ValueError(f"{name}: batch size {s.batch_size} is larger than its {images} {data} training images; "
                         f"use a smaller --batch-size (or --{name}-batch-size)")
    return batches


def apply_min_steps(s: StageConfig, batches: int, min_steps: int) -> dict[str, int]:
    """Raises `s.epochs` (in place) so that the stage takes at least `min_steps` optimiser steps,
    `batches` full batches per loader pass (or `s.steps_per_epoch`) per epoch. Returns the
    stage's schedule record: requested and actual epochs, steps per epoch, steps, and `stride`:
    the stage evaluates and checkpoints every `stride` x eval_every epochs (and at its end), so a
    raised stage is tested about as often as the requested schedule would have been."""
    per_epoch = s.steps_per_epoch or batches
    requested = s.epochs
    epochs = max(requested, math.ceil(min_steps / per_epoch)) if min_steps else requested
    s.epochs = epochs
    return {"epochs_requested": requested, "epochs": epochs, "steps_per_epoch": per_epoch, "steps": per_epoch * epochs,
            "min_steps": min_steps, "stride": math.ceil(epochs / requested)}


class Trainer:
    def __init__(self, cfg: TrainConfig, info: DistInfo, on_step: Callable[[int], None] | None = None) -> None:
        self.cfg, self.info, self.device, self.on_step = cfg, info, info.device, on_step
        self.folder = RunFolder(cfg, is_main=info.is_main)
        channels_last = self.device.type == "cuda" if cfg.channels_last is None else cfg.channels_last
        self.precision = Precision(resolve_amp(cfg.amp, self.device), channels_last)
        self.leep: float | None = None
        self.leep_pretrained: float | None = None
        self.history: list[dict[str, Any]] = []
        self.stage_summaries: list[dict[str, Any]] = []
        self.global_step = 0
        self.schedule: dict[str, dict[str, int]] = {}  # per stage: apply_min_steps' record

    def log(self, msg: str) -> None:
        if self.info.is_main and self.cfg.progress:
            from tqdm import tqdm

            tqdm.write(msg, file=sys.stderr)

    # ------------------------------------------------------------------ the run
    def run(self) -> dict[str, Any]:
        cfg, info = self.cfg, self.info
        finished = self.folder.finished_results()
        if finished is not None:
            self.log(f"{self.folder.path} already holds this finished run: test top-1 {100 * finished['test_top1']:.2f}%")
            return finished
        self.data = _data.RunData(cfg)
        sizes = self.data.sizes()
        self.folder.check_store_sizes(sizes)
        n_syn = len(self.data.synthetic) if self.data.synthetic is not None else 0
        for name, data, s in cfg.stages():
            batches = check_batch(name, data, s, world=info.world_size, real=len(self.data.train_indices),
                                  synthetic=n_syn, fraction=cfg.synthetic_fraction)
            self.schedule[name] = apply_min_steps(s, batches, cfg.min_steps)
        model = self.build_model()
        # Every check has passed: only now does anything get written.
        self.folder.start(sizes, self.data.split_record())
        barrier(info)
        mean, std, size = self.data_cfg["mean"], self.data_cfg["std"], self.data_cfg["image_size"]
        self.train_augment = _data.make_train_augment(size, scale=cfg.train_scale, ratio=cfg.train_ratio, hflip=cfg.hflip,
                                                      mean=mean, std=std, channels_last=self.precision.channels_last)
        eval_augment = _data.make_eval_augment(size, crop_pct=self.data_cfg["crop_pct"], mean=mean, std=std,
                                               channels_last=self.precision.channels_last)
        self.evaluator = Evaluator(eval_augment, info=info, batch_size=cfg.eval_batch_size,
                                   num_classes=self.data.num_classes, precision=self.precision)
        real_store = self.data.real_store(self.folder.path, info)
        resumed = load_checkpoint(self.folder.checkpoint)
        self.prepare_head(model, resumed is None)
        state, opt_state = self.restore(model, resumed)

        run_start = time.perf_counter()
        for si, (name, data, s) in enumerate(cfg.stages()):
            if si < state["stage"] or (si == state["stage"] and state["epoch"] >= s.epochs):
                continue
            start_epoch = state["epoch"] if si == state["stage"] else 0
            st = self.open_stage(si, name, data, s, model, real_store, reset=start_epoch == 0)
            if start_epoch > 0 and opt_state is not None:
                st.optimizer.load_state_dict(opt_state)
                if st.scaler is not None and state.get("scaler"):
                    st.scaler.load_state_dict(state["scaler"])
                st.step = state["stage_step"]
            self.run_stage(st, model, start_epoch)
            opt_state = None
            del st  # drops this stage's DDP wrapper (and its gradient hooks) before the next stage wraps the model
        return self.finish(model, time.perf_counter() - run_start)

    def build_model(self) -> nn.Module:
        cfg = self.cfg
        # Random init (the whole model, or the new head of pretrained weights) is part of the run's seed.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed("init", cfg.seed))
            model, self.source_head = create_source_model(cfg.model, self.data.num_classes, cfg.pretrained,
                                                          cfg.image_size)
        self.data_cfg = data_config(model, cfg.image_size)
        if cfg.crop_pct is not None:
            self.data_cfg["crop_pct"] = cfg.crop_pct
        if cfg.sync_bn and self.info.enabled:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model.to(self.device)
        self._memory_format(model)
        return model

    def _memory_format(self, model: nn.Module) -> None:
        if self.precision.channels_last:
            model.to(memory_format=torch.channels_last)

    def prepare_head(self, model: nn.Module, fresh: bool) -> None:
        """The pretrained weights' own classifier scores the source model (LEEP, on a fresh run),
        then makes way for a seeded head for the target classes."""
        if not self.source_head:
            return
        if fresh:
            self.leep_pretrained = self.evaluator.leep(model, self.data.real_train, self.data.train_indices)
            self.log(f"LEEP of the pretrained model on the real training images: {self.leep_pretrained:.4f}")
        reset_head(model, self.data.num_classes, derive_seed("init-head", self.cfg.seed))
        self._memory_format(model)

    def restore(self, model: nn.Module, resumed: Any) -> tuple[dict[str, Any], dict | None]:
        """(progress state, optimiser state) of the last checkpoint, the model loaded from it."""
        if resumed is None:
            return {"stage": 0, "epoch": 0}, None
        state, weights, opt_state = resumed
        model.load_state_dict(weights)
        self.history = state["history"]
        self.leep = state.get("leep")
        self.leep_pretrained = state.get("leep_pretrained")
        self.stage_summaries = state.get("stage_summaries", [])
        self.global_step = state.get("global_step", 0)
        self.log(f"resuming {self.folder.path}: {state['stage_name']} after epoch {state['epoch']}")
        return state, opt_state

    def open_stage(self, si: int, name: str, data: str, s: StageConfig, model: nn.Module, real_store: Any, *,
                   reset: bool) -> StageState:
        """The stage's state at its start (the bridged++ head re-initialised when `reset`)."""
        cfg, info = self.cfg, self.info
        head = "initial" if si == 0 else "kept"
        if si > 0 and cfg.mode == "bridged++":
            head = "reset"
            if reset:
                reset_head(model, self.data.num_classes, head_reset_seed(cfg.seed))
                self._memory_format(model)
        loader_seed = derive_seed("loader", cfg.seed, name)
        # Stage 1 keeps the real store in the loader (fraction 1.0) so is_synthetic stays meaningful.
        synthetic, fraction = {"synthetic": (self.data.synthetic, 1.0), "real": (None, None),
                               "real+synthetic": (self.data.synthetic, cfg.synthetic_fraction)}[data]
        try:
            loader = _data.make_train_loader(
                real_store, synthetic, classes=self.data.classes, batch_size=s.batch_size // info.world_size,
                synthetic_fraction=fraction, augment=self.train_augment, device=self.device, seed=loader_seed,
                rank=info.rank, world_size=info.world_size, workers=cfg.workers, cache_on_device=cfg.cache_on_device)
        except ValueError as exc:
            raise ValueError(f"{name} ({data}): {exc}") from exc
        if len(loader) == 0:
            raise ValueError(f"{name}: the loader has no full batch of {s.batch_size} {data} images")
        steps = s.steps_per_epoch or len(loader)
        total = steps * s.epochs
        return StageState(
            index=si, name=name, data=data, config=s, head=head, loader=loader, loader_seed=loader_seed,
            model=self.wrap(model), optimizer=make_optimizer(model, s),
            scaler=torch.amp.GradScaler(self.device.type) if self.precision.amp_dtype == torch.float16 else None,
            steps_per_epoch=steps, total_steps=total,
            warmup_steps=min(int(round(s.warmup_epochs * steps)), max(0, total - 1)),
        )

    def wrap(self, model: nn.Module) -> nn.Module:
        wrapped = model
        if self.info.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            wrapped = DDP(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if self.cfg.compile:
            wrapped = torch.compile(wrapped)
        return wrapped

    def _stepped(self) -> None:
        self.global_step += 1
        if self.on_step is not None:
            self.on_step(self.global_step)

    def run_stage(self, st: StageState, model: nn.Module, start_epoch: int) -> None:
        """Epochs start_epoch.. of a stage, each evaluated (every eval_every) and checkpointed."""
        cfg, s = self.cfg, st.config
        for epoch in range(start_epoch, s.epochs):
            row = train_epoch(st, epoch, seed=cfg.seed, info=self.info, num_classes=self.data.num_classes,
                              precision=self.precision, progress=cfg.progress, on_step=self._stepped)
            last = epoch + 1 == s.epochs
            tested = last or (epoch + 1) % (cfg.eval_every * self.schedule[st.name]["stride"]) == 0
            if tested:
                row["test_top1"], row["test_top5"] = self.evaluator.accuracy(model, self.data.real_test,
                                                                             self.data.test_indices)
            else:
                row["test_top1"] = row["test_top5"] = None
            self.history.append(row)
            self.log(f"{st.name} ({st.data}) epoch {epoch + 1}/{s.epochs}: loss {row['train_loss']:.4f}, train top-1 "
                     f"{100 * row['train_top1']:.2f}%" + ("" if row["test_top1"] is None else f", test top-1 {100 * row['test_top1']:.2f}%")
                     + f", {row['images_per_s']:.0f} images/s")
            expected = {"synthetic": ("images_real", 0), "real": ("images_synthetic", 0)}.get(st.data)
            if expected is not None and row[expected[0]] != expected[1]:
                raise RuntimeError(f"the loader gave {row[expected[0]]} {expected[0][7:]} images to the {st.data}-only {st.name}")
            if last:
                if st.data == "synthetic":
                    self.leep = self.evaluator.leep(model, self.data.real_train, self.data.train_indices)
                    self.log(f"LEEP of the {st.name} model on the real training images: {self.leep:.4f}")
                    self.folder.save_model(model, "model_stage1.safetensors")
                self.stage_summaries.append({**st.summary(self.history, self.leep), **self.schedule[st.name]})
            if tested or self.schedule[st.name]["stride"] == 1:
                self.save(model, st, epoch + 1)

    def save(self, model: nn.Module, st: StageState, epoch: int) -> None:
        if self.info.is_main:
            state = {
                "stage": st.index, "stage_name": st.name, "epoch": epoch, "stage_step": st.step,
                "global_step": self.global_step, "history": self.history, "leep": self.leep,
                "leep_pretrained": self.leep_pretrained, "stage_summaries": self.stage_summaries,
                "scaler": st.scaler.state_dict() if st.scaler is not None else None,
            }
            save_checkpoint(self.folder.checkpoint, model_state=model_state(model),
                            optimizer_state=st.optimizer.state_dict(), state=state)
        barrier(self.info)

    def finish(self, model: nn.Module, seconds: float) -> dict[str, Any]:
        cfg = self.cfg
        results = run_results(self.cfg, self.data, self.data_cfg, history=self.history, stages=self.stage_summaries,
                              leep=self.leep, leep_pretrained=self.leep_pretrained, source_head=self.source_head,
                              config=self.folder.recorded, info=self.info, precision=self.precision, seconds=seconds)
        self.folder.finish(model, results, self.history, title=f"{cfg.model} {cfg.mode}"
                           + (f" {cfg.shots}-shot" if cfg.shots else "") + f" seed {cfg.seed}")
        barrier(self.info)
        self.log(f"done: test top-1 {100 * results['test_top1']:.2f}%, top-5 {100 * results['test_top5']:.2f}%"
                 + ("" if self.leep is None else f", LEEP {self.leep:.4f}") + f"; results in {self.folder.path / 'results.json'}")
        return results
