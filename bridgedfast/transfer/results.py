"""results.json (its content, reading it back), curves.png, and the comparison table across runs."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from ..files import atomic_write
from ..seeds import derive_seed, head_reset_seed
from .config import RUNTIME_KEYS, TrainConfig

if TYPE_CHECKING:
    from ..distributed import DistInfo
    from .data import RunData
    from .stage import Precision

__all__ = ["plot_curves", "run_results", "load_results", "compare_runs", "format_comparison"]


def plot_curves(history: Sequence[dict[str, Any]], path: Path, *, title: str = "") -> Path:
    """Train loss (left) and train/test top-1 (right) per epoch; stage changes marked."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from matplotlib.ticker import MaxNLocator

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    starts = [i for i, h in enumerate(history) if i == 0 or h["stage"] != history[i - 1]["stage"]]
    # One line segment per stage: a new stage (maybe a new head) is not a continuation.
    for k, (lo, hi) in enumerate(zip(starts, [*starts[1:], len(history)])):
        rows = list(enumerate(history[lo:hi], start=lo + 1))
        xs = [x for x, _ in rows]
        ax_loss.plot(xs, [h["train_loss"] for _, h in rows], marker="o", color="C0", label=None if k else "train loss")
        ax_acc.plot(xs, [100 * h["train_top1"] for _, h in rows], marker="o", color="C0", label=None if k else "train top-1")
        tested = [(x, h["test_top1"]) for x, h in rows if h.get("test_top1") is not None]
        if tested:
            ax_acc.plot([x for x, _ in tested], [100 * t for _, t in tested], marker="s", color="C1",
                        label=None if k else "test top-1")
    for ax in (ax_loss, ax_acc):
        for i in starts:
            if i > 0:
                ax.axvline(i + 0.5, color="grey", linestyle="--", linewidth=1)
            label = ax.annotate(f"{history[i]['stage']} ({history[i]['data']})", xy=(i + 0.6, 0.98),
                                xycoords=("data", "axes fraction"), va="top", fontsize=8, color="grey")
            label.set_in_layout(False)
        ax.set_xlim(0.5, len(history) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch (all stages)")
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
    ax_loss.set_ylabel("loss")
    ax_acc.set_ylabel("top-1 (%)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        with atomic_write(path) as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)
    return path


def run_results(cfg: TrainConfig, d: RunData, data_cfg: dict[str, Any], *, history: list[dict[str, Any]],
            stages: list[dict[str, Any]], leep: float | None, leep_pretrained: float | None, source_head: bool,
            config: dict[str, Any], info: DistInfo, precision: Precision, seconds: float) -> dict[str, Any]:
    """What results.json holds."""
    import timm
    import torch

    from .. import __version__

    summaries = stages
    last = summaries[-1]
    results = {
        "mode": cfg.mode, "model": cfg.model, "pretrained": cfg.pretrained, "shots": cfg.shots, "seed": cfg.seed,
        "split_seed": cfg.split_seed if cfg.shots is not None else None,
        "test_top1": last["test_top1"], "test_top5": last["test_top5"], "leep": leep,
        "leep_pretrained": leep_pretrained, "stages": summaries,
        "num_classes": d.num_classes, "classes": d.classes,
        "data": {
            "real_train": str(Path(cfg.real_train).resolve()), "real_train_images": len(d.train_indices),
            "real_test": str(Path(cfg.real_test).resolve()), "real_test_images": len(d.test_indices),
            "synthetic": str(Path(cfg.synthetic).resolve()) if d.synthetic is not None else None,
            "synthetic_images": len(d.synthetic) if d.synthetic is not None else None,
            "image_size": data_cfg["image_size"], "mean": data_cfg["mean"], "std": data_cfg["std"],
            "eval_crop_pct": data_cfg["crop_pct"],
        },
        "history": history,
        "seeds": {"seed": cfg.seed, "split_seed": cfg.split_seed, "model_init": derive_seed("init", cfg.seed),
                  "head_init": derive_seed("init-head", cfg.seed) if source_head else None,
                  "head_reset": head_reset_seed(cfg.seed) if cfg.mode == "bridged++" else None,
                  "loaders": {s["name"]: s["loader_seed"] for s in summaries},
                  "per_epoch": "Mixup and dropout: derive_seed(kind, seed, stage index, epoch, rank); "
                               "batches: the loader's (loader seed, epoch, rank, batch)"},
        "config": config,
        "runtime": {"device": str(info.device), "world_size": info.world_size,
                    "amp": None if precision.amp_dtype is None else str(precision.amp_dtype).removeprefix("torch."),
                    "channels_last": precision.channels_last, "compile": cfg.compile,
                    "seconds_this_session": seconds,
                    "bridgedfast": __version__, "torch": torch.__version__, "timm": timm.__version__},
        "files": {"model": "model.safetensors", "curves": "curves.png",
                  "stage1_model": "model_stage1.safetensors" if any(s["data"] == "synthetic" for s in summaries) else None,
                  "split": "split.json" if cfg.shots is not None else None},
    }
    return json.loads(json.dumps(results))


def load_results(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {str(folder)!r} is not a finished training run")
    return json.loads(path.read_text())


def _find_runs(paths: Iterable[str | Path]) -> list[Path]:
    runs: list[Path] = []
    for p in paths:
        p = Path(p)
        if (p / "results.json").is_file():
            runs.append(p)
        elif p.is_dir():
            found = sorted(r.parent for r in p.rglob("results.json"))
            if not found:
                raise FileNotFoundError(f"no results.json in {str(p)!r} or below it")
            runs.extend(found)
        else:
            raise FileNotFoundError(f"run folder {str(p)!r} does not exist")
    return runs


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def compare_runs(paths: Iterable[str | Path]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(runs, groups): one row per run folder (folders are searched for results.json), and
    groups of runs that differ only in their seed (same real training store, model, mode, shots
    and every other setting of the recorded configuration), with the top-1 mean and sample
    standard deviation over their seeds. Groups that look alike but differ in other settings
    (e.g. another synthetic store) carry a short `settings` id to tell them apart."""
    not_settings = {"seed", "split_seed", *RUNTIME_KEYS}
    runs = []
    for folder in _find_runs(paths):
        r = load_results(folder)
        config = {k: v for k, v in (r.get("config") or {}).items() if k not in not_settings}
        runs.append({
            "dir": str(folder), "data": Path(r.get("data", {}).get("real_train") or "-").name, "model": r["model"], "mode": r["mode"], "shots": r.get("shots"),
            "seed": r.get("seed"), "test_top1": r["test_top1"], "test_top5": r.get("test_top5"), "leep": r.get("leep"),
            "settings": hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:6],
        })
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["data"], run["model"], run["mode"], run["shots"], run["settings"]), []).append(run)
    alike: dict[tuple, int] = {}
    for key in groups:
        alike[key[:4]] = alike.get(key[:4], 0) + 1
    rows = []
    for (data, model, mode, shots, settings), members in groups.items():
        mean, std = _mean_std([m["test_top1"] for m in members])
        leeps = [m["leep"] for m in members if m["leep"] is not None]
        rows.append({
            "data": data, "model": model, "mode": mode, "shots": shots, "seeds": sorted(m["seed"] for m in members),
            "runs": len(members), "top1_mean": mean, "top1_std": std, "dirs": [m["dir"] for m in members],
            "leep_mean": _mean_std(leeps)[0] if leeps else None,
            "settings": settings if alike[(data, model, mode, shots)] > 1 else None,
        })
    order = {m: i for i, m in enumerate(("vanilla", "mixed", "bridged", "bridged++"))}
    rows.sort(key=lambda r: (r["data"], r["model"], r["shots"] or 0, order.get(r["mode"], 9)))
    return runs, rows


def format_comparison(runs: list[dict[str, Any]], rows: list[dict[str, Any]]) -> str:
    """The table `bridgedfast train --compare` prints: every run, then the groups."""
    lines = [f"{'mode':<10} {'data':<14} {'model':<22} {'shots':>5} {'seed':>5} {'top-1':>7} {'top-5':>7} {'LEEP':>8}  run"]
    for r in sorted(runs, key=lambda r: (r["data"], r["model"], r["shots"] or 0, r["mode"], r["seed"] or 0)):
        top5 = "-" if r["test_top5"] is None else f"{100 * r['test_top5']:.2f}"
        leep = "-" if r["leep"] is None else f"{r['leep']:.3f}"
        lines.append(f"{r['mode']:<10} {r['data']:<14} {r['model']:<22} {r['shots'] or 'all':>5} {r['seed']!s:>5} "
                     f"{100 * r['test_top1']:7.2f} {top5:>7} {leep:>8}  {r['dir']}")
    lines.append("")
    lines.append(f"{'mode':<10} {'data':<14} {'model':<22} {'shots':>5} {'runs':>4}  {'top-1 mean +- std':>18}  {'LEEP':>8}  seeds")
    for g in rows:
        leep = "-" if g["leep_mean"] is None else f"{g['leep_mean']:.3f}"
        stat = f"{100 * g['top1_mean']:.2f} +- {100 * g['top1_std']:.2f}"
        lines.append(f"{g['mode']:<10} {g['data']:<14} {g['model']:<22} {g['shots'] or 'all':>5} {g['runs']:>4}  {stat:>18}  "
                     f"{leep:>8}  {','.join(str(s) for s in g['seeds'])}"
                     + (f"  (settings {g['settings']})" if g.get("settings") else ""))
    return "\n".join(lines)
