"""The bridged-transfer trainer: stages, evaluation, LEEP, checkpoints and resume, DDP.

Determinism: every epoch reseeds what it draws (loader order and augmentation through
`set_epoch`, Mixup and dropout from seeds derived from (seed, stage, epoch, rank)), and the
classifier re-initialisation has its own seed. A checkpoint is therefore all a resumed run
needs to continue exactly where an uninterrupted run would have been.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..devices import resolve_amp
from ..files import atomic_write_text, is_temporary
from .checkpoint import load_checkpoint, save_checkpoint
from .config import RUNTIME_KEYS, StageConfig, TrainConfig
from ..distributed import DistInfo, all_reduce_sum, barrier, init_distributed, shutdown
from .leep import leep_from_joint, leep_joint
from .models import create_source_model, data_config, param_groups, reset_head
from .results import plot_curves
from .schedule import lr_factor
from ..data.subsets import few_shot_split
from ..seeds import derive_seed
from . import data as _data

__all__ = ["train", "head_reset_seed"]

# Test hook: SIGKILL this process when it reaches this (run-global, 1-based) optimiser step.
_KILL_ENV = "BRIDGEDFAST_TEST_KILL_AT_STEP"

OUR_FILES = {"config.json", "split.json", "results.json", "curves.png", "model.safetensors", "model_stage1.safetensors",
             "checkpoint", "real_train_subset"}


def head_reset_seed(seed: int) -> int:
    """The seed `reset_classifier` draws the bridged++ head from before stage 2."""
    return derive_seed("head-reset", seed)


def _semantic(cfg_dict: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cfg_dict.items() if k not in RUNTIME_KEYS}


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            out += _diff(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(d))


def train(config: TrainConfig) -> dict[str, Any]:
    """Runs (or resumes, or just reports a finished) bridged-transfer run; returns results.json's dict.

    Under torchrun every rank calls this; rank 0 writes the outputs."""
    cfg = config.resolved()
    from ..devices import resolve_device

    device = resolve_device(cfg.device)
    info = init_distributed(device)
    try:
        return _Run(cfg, info).run()
    finally:
        shutdown()


class _Run:
    def __init__(self, cfg: TrainConfig, info: DistInfo) -> None:
        self.cfg = cfg
        self.info = info
        self.device = info.device
        self.out = Path(cfg.out).expanduser()
        self.amp_dtype = resolve_amp(cfg.amp, self.device)
        self.channels_last = self.device.type == "cuda" if cfg.channels_last is None else cfg.channels_last
        kill = os.environ.get(_KILL_ENV)
        self.kill_at = int(kill) if kill else None
        self.leep: float | None = None
        self.leep_pretrained: float | None = None
        self.history: list[dict[str, Any]] = []
        self.stage_summaries: list[dict[str, Any]] = []
        self.global_step = 0

    # ------------------------------------------------------------------ helpers
    def log(self, msg: str) -> None:
        if self.info.is_main and self.cfg.progress:
            from tqdm import tqdm

            tqdm.write(msg, file=sys.stderr)

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def recorded_config(self) -> dict[str, Any]:
        d = _jsonable(self.cfg.to_dict())
        for key in ("real_train", "real_test", "synthetic", "out"):
            if d[key]:
                d[key] = str(Path(d[key]).expanduser().resolve())
        if d["pretrained"] not in ("timm", "none"):
            d["pretrained"] = str(Path(d["pretrained"]).expanduser().resolve())
        return d

    # ------------------------------------------------------------------ set-up
    def check_out_dir(self, recorded: dict[str, Any]) -> dict[str, Any] | None:
        """Refuses a different configuration in an existing --out; returns finished results."""
        if not self.out.exists():
            return None
        if not self.out.is_dir():
            raise NotADirectoryError(f"--out {str(self.out)!r} exists and is not a folder")
        cfg_file = self.out / "config.json"
        if not cfg_file.is_file():
            foreign = sorted(p.name for p in self.out.iterdir() if p.name not in OUR_FILES and not is_temporary(p.name))
            if foreign:
                raise ValueError(f"--out {str(self.out)!r} is not empty and holds no training run "
                                 f"(found {', '.join(foreign[:3])}); choose a new or empty folder")
            return None
        old = json.loads(cfg_file.read_text())
        changes = _diff(_semantic(old["config"]), _semantic(recorded))
        if changes:
            raise ValueError(f"--out {str(self.out)!r} holds a run with a different configuration ("
                             + "; ".join(changes[:4]) + (f"; +{len(changes) - 4} more" if len(changes) > 4 else "")
                             + "); use a new --out, or delete that folder to start over")
        results = self.out / "results.json"
        return json.loads(results.read_text()) if results.is_file() else None

    def check_store_sizes(self, sizes: dict[str, int | None]) -> None:
        """A resumed run must see the stores it started with (a store that grew would change
        every epoch's batches)."""
        cfg_file = self.out / "config.json"
        if not cfg_file.is_file():
            return
        started = json.loads(cfg_file.read_text()).get("store_sizes", {})
        for key, now in sizes.items():
            if key in started and started[key] != now:
                raise ValueError(f"--{key.replace('_', '-')} store now holds {now} images, but the run in --out "
                                 f"{str(self.out)!r} started with {started[key]}; use a new --out")

    def open_data(self) -> None:
        cfg = self.cfg
        self.real_train = _data.open_store(cfg.real_train, "--real-train")
        self.real_test = _data.open_store(cfg.real_test, "--real-test")
        self.classes = list(self.real_train.classes)
        if list(self.real_test.classes) != self.classes:
            raise ValueError(f"--real-test classes differ from --real-train classes "
                             f"({len(self.real_test.classes)} vs {len(self.classes)}; they must be the same names in the same order)")
        self.num_classes = len(self.classes)
        self.synthetic = None
        if cfg.mode != "vanilla":
            self.synthetic = _data.open_store(cfg.synthetic, "--synthetic")
            _data.check_classes(self.classes, self.synthetic.classes)
        if cfg.shots is not None:
            self.train_indices = few_shot_split(self.real_train.labels, cfg.shots, cfg.split_seed, self.classes)
        else:
            self.train_indices = torch.arange(len(self.real_train))
        self.test_indices = torch.arange(len(self.real_test))

    def write_split(self) -> None:
        if self.cfg.shots is None:
            return
        labels = self.real_train.labels[self.train_indices]
        split = {
            "shots": self.cfg.shots, "split_seed": self.cfg.split_seed, "store": str(Path(self.cfg.real_train).resolve()),
            "indices": self.train_indices.tolist(),
            "per_class": {name: self.train_indices[labels == c].tolist() for c, name in enumerate(self.classes)},
        }
        path = self.out / "split.json"
        if path.is_file():
            if json.loads(path.read_text())["indices"] != split["indices"]:
                raise ValueError(f"{path} holds a different few-shot split than this configuration draws")
            return
        atomic_write_text(path, json.dumps(split, indent=1))

    def subset_store(self):
        """The few-shot real training images as a store of their own (what the loader reads)."""
        if self.cfg.shots is None:
            return self.real_train
        path = self.out / "real_train_subset"
        if self.info.is_main:
            _data.write_subset(self.real_train, self.train_indices, path)
        barrier(self.info)
        return _data.open_subset(path, len(self.train_indices))

    # ------------------------------------------------------------------ model
    def build_model(self) -> nn.Module:
        # Random init (the whole model, or the new head of pretrained weights) is part of the run's seed.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed("init", self.cfg.seed))
            model, self.source_head = create_source_model(self.cfg.model, self.num_classes, self.cfg.pretrained,
                                                          self.cfg.image_size)
        self.data_cfg = data_config(model, self.cfg.image_size)
        if self.cfg.crop_pct is not None:
            self.data_cfg["crop_pct"] = self.cfg.crop_pct
        if self.cfg.sync_bn and self.info.enabled:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def wrap(self, model: nn.Module) -> nn.Module:
        wrapped = model
        if self.info.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            wrapped = DDP(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if self.cfg.compile:
            wrapped = torch.compile(wrapped)
        return wrapped

    def make_optimizer(self, model: nn.Module, s: StageConfig) -> torch.optim.Optimizer:
        groups = param_groups(model, lr=s.lr, head_lr=s.head_lr, weight_decay=s.weight_decay)
        if s.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=s.lr, momentum=s.momentum, nesterov=s.nesterov and s.momentum > 0)
        return torch.optim.AdamW(groups, lr=s.lr)

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def predict(self, model: nn.Module, store: Any, indices: torch.Tensor):
        """Yields (float32 logits, labels) over this rank's share of `indices`."""
        model.eval()
        for x, y in _data.iterate_eval(store, indices, batch_size=self.cfg.eval_batch_size, augment=self.eval_augment,
                                       device=self.device, rank=self.info.rank, world_size=self.info.world_size):
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with self.autocast():
                logits = model(x)
            yield logits.float(), y

    def evaluate(self, model: nn.Module) -> tuple[float, float]:
        """Top-1 and top-5 accuracy on the whole real test store (summed over ranks)."""
        counts = torch.zeros(3, dtype=torch.float64, device=self.device)
        k = min(5, self.num_classes)
        for logits, y in self.predict(model, self.real_test, self.test_indices):
            top = logits.topk(k, dim=1).indices
            counts[0] += (top[:, 0] == y).sum()
            counts[1] += (top == y[:, None]).any(1).sum()
            counts[2] += y.numel()
        all_reduce_sum(counts, self.info)
        n = float(counts[2])
        return float(counts[0]) / n, float(counts[1]) / n

    def compute_leep(self, model: nn.Module) -> float:
        """LEEP of `model` (its softmax over its own head) on the real training images."""
        probs, labels = [], []
        for logits, y in self.predict(model, self.real_train, self.train_indices):
            probs.append(torch.softmax(logits, dim=1).double())
            labels.append(y)
        width = int(getattr(model, "num_classes", self.num_classes))
        p = torch.cat(probs) if probs else torch.zeros(0, width, dtype=torch.float64, device=self.device)
        y = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.int64, device=self.device)
        joint = torch.zeros(self.num_classes, p.shape[1], dtype=torch.float64, device=self.device)
        if len(y):
            joint += leep_joint(p, y, self.num_classes)
        all_reduce_sum(joint, self.info)
        total = leep_from_joint(p, y, joint) if len(y) else torch.zeros((), dtype=torch.float64, device=self.device)
        total = all_reduce_sum(total.reshape(1).clone(), self.info)
        return float(total[0]) / len(self.train_indices)

    # ------------------------------------------------------------------ training
    def stage_loader(self, name: str, data: str, s: StageConfig, real_store: Any):
        seed = derive_seed("loader", self.cfg.seed, name)
        # Stage 1 keeps the real store in the loader (fraction 1.0) so is_synthetic stays meaningful.
        synthetic, fraction = {"synthetic": (self.synthetic, 1.0), "real": (None, None),
                               "real+synthetic": (self.synthetic, self.cfg.synthetic_fraction)}[data]
        try:
            loader = _data.make_train_loader(
                real_store, synthetic, classes=self.classes, batch_size=s.batch_size // self.info.world_size,
                synthetic_fraction=fraction, augment=self.train_augment, device=self.device, seed=seed,
                rank=self.info.rank, world_size=self.info.world_size, workers=self.cfg.workers,
                cache_on_device=self.cfg.cache_on_device)
        except ValueError as exc:
            raise ValueError(f"{name} ({data}): {exc}") from exc
        if len(loader) == 0:
            raise ValueError(f"{name}: the loader has no full batch of {s.batch_size} {data} images")
        return loader, seed

    def check_batch(self, name: str, data: str, s: StageConfig) -> None:
        """The loader's batch arithmetic, checked before anything is written."""
        world = self.info.world_size
        if s.batch_size % world:
            raise ValueError(f"{name} batch size {s.batch_size} is not divisible by the {world} processes")
        per_rank = s.batch_size // world
        if s.mixup_enabled and per_rank % 2:
            raise ValueError(f"{name} uses Mixup, which needs an even batch per process, got {per_rank}")
        n_real, n_syn = len(self.train_indices), len(self.synthetic) if self.synthetic is not None else 0
        fraction = self.cfg.synthetic_fraction if data == "real+synthetic" else None
        if fraction is not None:
            k = round(fraction * per_rank)
            if not 0 < k < per_rank:
                raise ValueError(f"synthetic-fraction {fraction} of a batch of {per_rank} per process gives {k} synthetic "
                                 "images per batch; use a larger batch or another fraction")
            images, per_batch = n_real, per_rank - k
        else:
            images, per_batch = {"synthetic": n_syn, "real": n_real, "real+synthetic": n_real + n_syn}[data], per_rank
        if (images // world) // per_batch == 0:
            raise ValueError(f"{name}: batch size {s.batch_size} is larger than its {images} {data} training images; "
                             f"use a smaller --batch-size (or --{name}-batch-size)")

    def train_epoch(self, si: int, name: str, data: str, s: StageConfig, epoch: int, ctx: dict[str, Any]) -> dict[str, Any]:
        cfg, info = self.cfg, self.info
        model, opt, scaler, loader = ctx["train_model"], ctx["optimizer"], ctx["scaler"], ctx["loader"]
        steps, total, warmup = ctx["steps_per_epoch"], ctx["total_steps"], ctx["warmup_steps"]
        model.train()
        torch.manual_seed(derive_seed("dropout", cfg.seed, si, epoch, info.rank))
        mixup = _data.make_mixup(s, self.num_classes, derive_seed("mixup", cfg.seed, si, epoch, info.rank)) if s.mixup_enabled else None
        stats = torch.zeros(4, dtype=torch.float64, device=self.device)  # loss sum, correct, images, synthetic images
        seen = 0  # images on this rank (host count: no device sync for the progress bar)
        passes = math.ceil(steps / len(loader))
        from tqdm import tqdm

        bar = tqdm(total=steps, desc=f"{name} ({data}) epoch {epoch + 1}/{s.epochs}", unit="step", leave=False,
                   disable=not (info.is_main and cfg.progress), file=sys.stderr, dynamic_ncols=True)
        start, step = time.perf_counter(), 0
        for p in range(passes):
            loader.set_epoch(epoch * passes + p)
            for images, targets, is_syn in loader:
                if step == steps:
                    break
                images = images.to(self.device, non_blocking=True)
                if self.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                targets = targets.to(self.device, non_blocking=True)
                is_syn = is_syn.to(self.device, non_blocking=True)
                factor = lr_factor(ctx["stage_step"], total, warmup, s.min_lr_ratio)
                for g in opt.param_groups:
                    g["lr"] = g["base_lr"] * factor
                if mixup is not None:
                    images, soft = mixup(images, targets)
                with self.autocast():
                    logits = model(images)
                if mixup is not None:
                    loss = torch.sum(-soft * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()
                else:
                    loss = F.cross_entropy(logits.float(), targets, label_smoothing=s.label_smoothing)
                opt.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                else:
                    loss.backward()
                    opt.step()
                n = targets.numel()
                seen += n
                stats[0] += loss.detach().double() * n
                stats[1] += (logits.detach().argmax(1) == targets).sum()
                stats[3] += is_syn.sum()
                step += 1
                ctx["stage_step"] += 1
                self.global_step += 1
                if self.kill_at is not None and self.global_step == self.kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                if bar.disable is False and (step % 10 == 0 or step == steps or self.device.type == "cpu"):
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
            "stage": name, "data": data, "epoch": epoch + 1, "train_loss": float(stats[0]) / images,
            "train_top1": float(stats[1]) / images, "images": int(images), "images_synthetic": int(stats[3]),
            "images_real": int(images - float(stats[3])), "lr": s.lr * lr_factor(ctx["stage_step"] - 1, total, warmup, s.min_lr_ratio),
            "seconds": seconds, "images_per_s": images / seconds if seconds > 0 else None,
        }

    def save(self, model: nn.Module, optimizer: torch.optim.Optimizer | None, scaler: Any, state: dict[str, Any]) -> None:
        if self.info.is_main:
            save_checkpoint(self.out / "checkpoint", model_state=_model_state(model),
                            optimizer_state=optimizer.state_dict() if optimizer is not None else None,
                            state=dict(state, scaler=scaler.state_dict() if scaler is not None else None))
        barrier(self.info)

    # ------------------------------------------------------------------ the run
    def run(self) -> dict[str, Any]:
        cfg, info = self.cfg, self.info
        recorded = self.recorded_config()
        finished = self.check_out_dir(recorded)
        if finished is not None:
            self.log(f"{self.out} already holds this finished run: test top-1 {100 * finished['test_top1']:.2f}%")
            return finished
        self.open_data()
        sizes = {"real_train": len(self.real_train), "real_test": len(self.real_test),
                 "synthetic": None if self.synthetic is None else len(self.synthetic)}
        self.check_store_sizes(sizes)
        for name, data, s in cfg.stages():
            self.check_batch(name, data, s)
        model = self.build_model()
        # Every check has passed: only now does anything get written.
        if info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            cfg_file = self.out / "config.json"
            if not cfg_file.is_file():
                atomic_write_text(cfg_file, json.dumps({"config": recorded, "store_sizes": sizes}, indent=1))
            self.write_split()
        barrier(info)
        mean, std, size = self.data_cfg["mean"], self.data_cfg["std"], self.data_cfg["image_size"]
        self.train_augment = _data.make_train_augment(size, scale=cfg.train_scale, ratio=cfg.train_ratio, hflip=cfg.hflip,
                                                      mean=mean, std=std, channels_last=self.channels_last)
        self.eval_augment = _data.make_eval_augment(size, crop_pct=self.data_cfg["crop_pct"], mean=mean, std=std,
                                                    channels_last=self.channels_last)
        real_store = self.subset_store()

        resumed = load_checkpoint(self.out / "checkpoint")
        if self.source_head:
            # The pretrained weights' own classifier scores the source model, then makes way for ours.
            if resumed is None:
                self.leep_pretrained = self.compute_leep(model)
                self.log(f"LEEP of the pretrained model on the real training images: {self.leep_pretrained:.4f}")
            reset_head(model, self.num_classes, derive_seed("init-head", cfg.seed))
            if self.channels_last:
                model.to(memory_format=torch.channels_last)
        state: dict[str, Any] = {"stage": 0, "epoch": 0}
        opt_state = None
        if resumed is not None:
            state, model_state, opt_state = resumed
            model.load_state_dict(model_state)
            self.history = state["history"]
            self.leep = state.get("leep")
            self.leep_pretrained = state.get("leep_pretrained")
            self.stage_summaries = state.get("stage_summaries", [])
            self.global_step = state.get("global_step", 0)
            self.log(f"resuming {self.out}: {state['stage_name']} after epoch {state['epoch']}")

        run_start = time.perf_counter()
        stages = cfg.stages()
        for si, (name, data, s) in enumerate(stages):
            if si < state["stage"] or (si == state["stage"] and state["epoch"] >= s.epochs):
                continue
            start_epoch = state["epoch"] if si == state["stage"] else 0
            head = "initial" if si == 0 else "kept"
            if si > 0 and cfg.mode == "bridged++":
                head = "reset"
                if start_epoch == 0:
                    reset_head(model, self.num_classes, head_reset_seed(cfg.seed))
                    if self.channels_last:
                        model.to(memory_format=torch.channels_last)
            ctx = self.stage_context(model, name, data, s, real_store)
            if start_epoch > 0 and opt_state is not None:
                ctx["optimizer"].load_state_dict(opt_state)
                if ctx["scaler"] is not None and state.get("scaler"):
                    ctx["scaler"].load_state_dict(state["scaler"])
                ctx["stage_step"] = state["stage_step"]
            for epoch in range(start_epoch, s.epochs):
                row = self.train_epoch(si, name, data, s, epoch, ctx)
                last = epoch + 1 == s.epochs
                if last or (epoch + 1) % cfg.eval_every == 0:
                    row["test_top1"], row["test_top5"] = self.evaluate(model)
                else:
                    row["test_top1"] = row["test_top5"] = None
                self.history.append(row)
                self.log(f"{name} ({data}) epoch {epoch + 1}/{s.epochs}: loss {row['train_loss']:.4f}, train top-1 "
                         f"{100 * row['train_top1']:.2f}%" + ("" if row["test_top1"] is None else f", test top-1 {100 * row['test_top1']:.2f}%")
                         + f", {row['images_per_s']:.0f} images/s")
                expected = {"synthetic": ("images_real", 0), "real": ("images_synthetic", 0)}.get(data)
                if expected is not None and row[expected[0]] != expected[1]:
                    raise RuntimeError(f"the loader gave {row[expected[0]]} {expected[0][7:]} images to the {data}-only {name}")
                if last:
                    if data == "synthetic":
                        self.leep = self.compute_leep(model)
                        self.log(f"LEEP of the {name} model on the real training images: {self.leep:.4f}")
                        if info.is_main:
                            from safetensors.torch import save_file

                            save_file(_model_state(model), str(self.out / "model_stage1.safetensors"))
                    self.stage_summaries.append(self.summarise(si, name, data, s, head, ctx))
                self.save(model, ctx["optimizer"], ctx["scaler"], {
                    "stage": si, "stage_name": name, "epoch": epoch + 1, "stage_step": ctx["stage_step"],
                    "global_step": self.global_step, "history": self.history, "leep": self.leep,
                    "leep_pretrained": self.leep_pretrained,
                    "stage_summaries": self.stage_summaries,
                })
            opt_state = None
            ctx = None  # drops this stage's DDP wrapper (and its gradient hooks) before the next stage wraps the model
        return self.finish(model, time.perf_counter() - run_start)

    def stage_context(self, model: nn.Module, name: str, data: str, s: StageConfig, real_store: Any) -> dict[str, Any]:
        loader, loader_seed = self.stage_loader(name, data, s, real_store)
        steps = s.steps_per_epoch or len(loader)
        total = steps * s.epochs
        return {
            "train_model": self.wrap(model), "optimizer": self.make_optimizer(model, s), "loader": loader,
            "loader_seed": loader_seed,
            "scaler": torch.amp.GradScaler(self.device.type) if self.amp_dtype == torch.float16 else None,
            "steps_per_epoch": steps, "total_steps": total, "stage_step": 0,
            "warmup_steps": min(int(round(s.warmup_epochs * steps)), max(0, total - 1)),
        }

    def summarise(self, si: int, name: str, data: str, s: StageConfig, head: str, ctx: dict[str, Any]) -> dict[str, Any]:
        rows = [h for h in self.history if h["stage"] == name]
        return {
            "name": name, "data": data, "epochs": s.epochs, "steps": ctx["total_steps"], "batch_size": s.batch_size,
            "images": {"real": sum(r["images_real"] for r in rows), "synthetic": sum(r["images_synthetic"] for r in rows)},
            "final_train_loss": rows[-1]["train_loss"], "final_train_top1": rows[-1]["train_top1"],
            "test_top1": rows[-1]["test_top1"], "test_top5": rows[-1]["test_top5"],
            "head": head, "optimizer": s.optimizer, "lr": s.lr, "head_lr": s.head_lr, "weight_decay": s.weight_decay,
            "label_smoothing": s.label_smoothing, "loader_seed": ctx["loader_seed"],
            "mixup": {"mixup_alpha": s.mixup_alpha, "cutmix_alpha": s.cutmix_alpha, "prob": s.mixup_prob,
                      "switch_prob": s.mixup_switch_prob} if s.mixup_enabled else None,
            "leep": self.leep if data == "synthetic" else None,
        }

    def finish(self, model: nn.Module, seconds: float) -> dict[str, Any]:
        import timm

        from .. import __version__

        cfg = self.cfg
        last = self.stage_summaries[-1]
        results = {
            "mode": cfg.mode, "model": cfg.model, "pretrained": cfg.pretrained, "shots": cfg.shots, "seed": cfg.seed,
            "split_seed": cfg.split_seed if cfg.shots is not None else None,
            "test_top1": last["test_top1"], "test_top5": last["test_top5"], "leep": self.leep,
            "leep_pretrained": self.leep_pretrained,
            "stages": self.stage_summaries,
            "num_classes": self.num_classes, "classes": self.classes,
            "data": {
                "real_train": str(Path(cfg.real_train).resolve()), "real_train_images": len(self.train_indices),
                "real_test": str(Path(cfg.real_test).resolve()), "real_test_images": len(self.test_indices),
                "synthetic": str(Path(cfg.synthetic).resolve()) if self.synthetic is not None else None,
                "synthetic_images": len(self.synthetic) if self.synthetic is not None else None,
                "image_size": self.data_cfg["image_size"], "mean": self.data_cfg["mean"], "std": self.data_cfg["std"],
                "eval_crop_pct": self.data_cfg["crop_pct"],
            },
            "history": self.history,
            "seeds": {"seed": cfg.seed, "split_seed": cfg.split_seed, "model_init": derive_seed("init", cfg.seed),
                      "head_init": derive_seed("init-head", cfg.seed) if self.source_head else None,
                      "head_reset": head_reset_seed(cfg.seed) if cfg.mode == "bridged++" else None,
                      "loaders": {s["name"]: s["loader_seed"] for s in self.stage_summaries},
                      "per_epoch": "Mixup and dropout: derive_seed(kind, seed, stage index, epoch, rank); "
                                   "batches: the loader's (loader seed, epoch, rank, batch)"},
            "config": self.recorded_config(),
            "runtime": {"device": str(self.device), "world_size": self.info.world_size,
                        "amp": None if self.amp_dtype is None else str(self.amp_dtype).removeprefix("torch."),
                        "channels_last": self.channels_last, "compile": cfg.compile, "seconds_this_session": seconds,
                        "bridgedfast": __version__, "torch": torch.__version__, "timm": timm.__version__},
            "files": {"model": "model.safetensors", "curves": "curves.png",
                      "stage1_model": "model_stage1.safetensors" if any(s["data"] == "synthetic" for s in self.stage_summaries) else None,
                      "split": "split.json" if cfg.shots is not None else None},
        }
        results = _jsonable(results)
        if self.info.is_main:
            from safetensors.torch import save_file

            save_file(_model_state(model), str(self.out / "model.safetensors"))
            plot_curves(self.history, self.out / "curves.png", title=f"{cfg.model} {cfg.mode}"
                        + (f" {cfg.shots}-shot" if cfg.shots else "") + f" seed {cfg.seed}")
            atomic_write_text(self.out / "results.json", json.dumps(results, indent=1))
            subset = self.out / "real_train_subset"
            if subset.is_dir():
                shutil.rmtree(subset, ignore_errors=True)
        barrier(self.info)
        self.log(f"done: test top-1 {100 * results['test_top1']:.2f}%, top-5 {100 * results['test_top5']:.2f}%"
                 + ("" if self.leep is None else f", LEEP {self.leep:.4f}") + f"; results in {self.out / 'results.json'}")
        return results


def _model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}

