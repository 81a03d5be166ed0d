"""A training run's folder (`--out`): what it holds, when it refuses a run, and its files.

`config.json` records the configuration a run started with (and its stores' sizes): re-running
against the folder resumes only the same configuration (runtime options aside) on the same
stores. `split.json` holds the few-shot split, `results.json` the finished run's results (the
commit point of a finished run), `curves.png`, `model.safetensors`, `model_stage1.safetensors`
and `checkpoint/` the rest. Only rank 0 writes.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..files import atomic_write, atomic_write_text, is_temporary
from .config import RUNTIME_KEYS, TrainConfig

__all__ = ["RunFolder", "OUR_FILES", "model_state"]

OUR_FILES = {"config.json", "split.json", "results.json", "curves.png", "model.safetensors", "model_stage1.safetensors",
             "checkpoint", "real_train_subset"}


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def _semantic(cfg_dict: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cfg_dict.items() if k not in RUNTIME_KEYS}


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            out += _diff(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


def recorded_config(cfg: TrainConfig) -> dict[str, Any]:
    """The resolved configuration as config.json and results.json hold it (absolute paths)."""
    d = json.loads(json.dumps(cfg.record()))
    for key in ("real_train", "real_test", "synthetic", "out"):
        if d[key]:
            d[key] = str(Path(d[key]).expanduser().resolve())
    if d["pretrained"] not in ("timm", "none"):
        d["pretrained"] = str(Path(d["pretrained"]).expanduser().resolve())
    return d


class RunFolder:
    def __init__(self, cfg: TrainConfig, *, is_main: bool) -> None:
        self.path = Path(cfg.out).expanduser()
        self.is_main = is_main
        self.recorded = recorded_config(cfg)

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint"

    def finished_results(self) -> dict[str, Any] | None:
        """The results of a finished run of this configuration, None for a new or unfinished one;
        refuses a folder holding another configuration, or something that is not a run."""
        out = self.path
        if not out.exists():
            return None
        if not out.is_dir():
            raise NotADirectoryError(f"--out {str(out)!r} exists and is not a folder")
        cfg_file = out / "config.json"
        if not cfg_file.is_file():
            foreign = sorted(p.name for p in out.iterdir() if p.name not in OUR_FILES and not is_temporary(p.name))
            if foreign:
                raise ValueError(f"--out {str(out)!r} is not empty and holds no training run "
                                 f"(found {', '.join(foreign[:3])}); choose a new or empty folder")
            return None
        old = json.loads(cfg_file.read_text())
        changes = _diff(_semantic(old["config"]), _semantic(self.recorded))
        if changes:
            raise ValueError(f"--out {str(out)!r} holds a run with a different configuration ("
                             + "; ".join(changes[:4]) + (f"; +{len(changes) - 4} more" if len(changes) > 4 else "")
                             + "); use a new --out, or delete that folder to start over")
        results = out / "results.json"
        return json.loads(results.read_text()) if results.is_file() else None

    def check_store_sizes(self, sizes: dict[str, int | None]) -> None:
        """A resumed run must see the stores it started with (a store that grew would change
        every epoch's batches)."""
        cfg_file = self.path / "config.json"
        if not cfg_file.is_file():
            return
        started = json.loads(cfg_file.read_text()).get("store_sizes", {})
        for key, now in sizes.items():
            if key in started and started[key] != now:
                raise ValueError(f"--{key.replace('_', '-')} store now holds {now} images, but the run in --out "
                                 f"{str(self.path)!r} started with {started[key]}; use a new --out")

    def start(self, sizes: dict[str, int | None], split: dict[str, Any] | None) -> None:
        """Creates the folder and records the configuration and the few-shot split (once)."""
        if not self.is_main:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        cfg_file = self.path / "config.json"
        if not cfg_file.is_file():
            atomic_write_text(cfg_file, json.dumps({"config": self.recorded, "store_sizes": sizes}, indent=1))
        if split is None:
            return
        path = self.path / "split.json"
        if path.is_file():
            if json.loads(path.read_text())["indices"] != split["indices"]:
                raise ValueError(f"{path} holds a different few-shot split than this configuration draws")
            return
        atomic_write_text(path, json.dumps(split, indent=1))

    def save_model(self, model: nn.Module, name: str) -> None:
        from safetensors.torch import save_file

        if self.is_main:
            with atomic_write(self.path / name) as tmp:
                save_file(model_state(model), str(tmp))

    def finish(self, model: nn.Module, results: dict[str, Any], history: list[dict[str, Any]], title: str) -> None:
        """The final weights, the curves, then results.json (which marks the run finished)."""
        from .results import plot_curves

        if not self.is_main:
            return
        self.save_model(model, "model.safetensors")
        plot_curves(history, self.path / "curves.png", title=title)
        atomic_write_text(self.path / "results.json", json.dumps(results, indent=1))
        subset = self.path / "real_train_subset"
        if subset.is_dir():
            shutil.rmtree(subset, ignore_errors=True)
