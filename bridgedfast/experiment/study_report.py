"""The report's study sections: accuracy against synthetic images per class (volume study) and
against the guidance scale (guidance study), per mode: a plot and a table each (top-1 mean ±
std over seeds), with each point's generation cost (the images it trains on and the seconds
their generation took, at the store's measured seconds per image)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..files import atomic_write

__all__ = ["study_blocks", "generation_seconds_per_image", "point_label"]

MODES = ("vanilla", "mixed", "bridged", "bridged++")


def generation_seconds_per_image(store: Path) -> float | None:
    """Seconds per generated image of a store, over every call that generated into it (its
    manifest's runs); None when unknown."""
    path = Path(store) / "generation.json"
    if not path.is_file():
        return None
    runs = json.loads(path.read_text()).get("runs", [])
    reports = [r["report"] for r in runs if isinstance(r.get("report"), dict) and r["report"].get("images")]
    images = sum(r["images"] for r in reports)
    return sum(r["seconds"] for r in reports) / images if images else None


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _top1(runs: list[Path]) -> dict[str, float]:
    out = {}
    for run in runs:
        path = run / "results.json"
        if path.is_file():
            out[str(run)] = json.loads(path.read_text())["test_top1"]
    return out


def _shots(shots: int | None) -> str:
    return "all" if shots is None else str(shots)


def _curves(points: dict[str, Any], top1: dict[str, float], axis: str, fixed: tuple[str, ...]
            ) -> dict[tuple, dict[Any, list[float]]]:
    """{(mode, *fixed values): {x: [top-1 per seed]}} of the non-vanilla runs along `axis`."""
    curves: dict[tuple, dict[Any, list[float]]] = {}
    for run, p in points.items():
        if p.mode == "vanilla" or run not in top1:
            continue
        key = (p.mode, *(getattr(p, f) for f in fixed))
        curves.setdefault(key, {}).setdefault(getattr(p, axis), []).append(top1[run])
    order = {m: i for i, m in enumerate(MODES)}
    return dict(sorted(curves.items(), key=lambda kv: (order.get(kv[0][0], 9),
                                                       [float("inf") if v is None else v for v in kv[0][1:]])))


def _baselines(points: dict[str, Any], top1: dict[str, float]) -> dict[int | None, list[float]]:
    base: dict[int | None, list[float]] = {}
    for run, p in points.items():
        if p.mode == "vanilla" and run in top1:
            base.setdefault(p.shots, []).append(top1[run])
    return base


def _plot(path: Path, curves: dict, baselines: dict, names: tuple[str, ...], xlabel: str, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for key, by_x in curves.items():
        xs = sorted(by_x)
        stats = [_mean_std(by_x[x]) for x in xs]
        label = " ".join([key[0]] + [f"{n}={_shots(v) if n == 'shots' else f'{v:g}'}" for n, v in zip(names, key[1:])
                                     if v is not None or n == "shots"])
        ax.errorbar(xs, [100 * m for m, _ in stats], yerr=[100 * s for _, s in stats], marker="o", capsize=3, label=label)
    for shots, values in baselines.items():
        ax.axhline(100 * _mean_std(values)[0], linestyle="--", color="grey", linewidth=1)
        ax.annotate(f"vanilla (real only, shots={_shots(shots)})", (0.01, 100 * _mean_std(values)[0]),
                    xycoords=("axes fraction", "data"), fontsize=7, color="grey", va="bottom")
    ticks = sorted({x for by_x in curves.values() for x in by_x})
    if ticks:
        ax.set_xticks(ticks, [f"{x:g}" for x in ticks])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test top-1 % (mean ± std over seeds)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    try:
        with atomic_write(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
    return path


def _cost(store: Any, per_class: int, classes: int) -> str:
    seconds = generation_seconds_per_image(store.generated) if store is not None else None
    images = per_class * classes
    return f"{images} images" + ("" if seconds is None else f", {seconds * images:.1f} s")


def _study(out: Path, points: dict, top1: dict, stores: dict, classes: int, axis: str, fixed: tuple[str, ...],
           xname: str, file: str, title: str) -> list[tuple[str, Any]]:
    curves = _curves(points, top1, axis, fixed)
    baselines = _baselines(points, top1)
    plot = _plot(out / file, curves, baselines, fixed, xname, title)
    head = ["mode", *fixed, xname, "seeds", "top-1 % (mean ± std)", "generation cost"]
    rows = [["vanilla", *(_shots(s) if f == "shots" else "-" for f in fixed), "0 (real only)", str(len(v)),
             "{:.2f} ± {:.2f}".format(*(100 * x for x in _mean_std(v))), "-"] for s, v in baselines.items()]
    store_of = {(p.guidance, p.store): stores.get(p.store) for p in points.values() if p.store}
    for key, by_x in curves.items():
        for x in sorted(by_x):
            m, s = _mean_std(by_x[x])
            point = next(p for p in points.values() if p.mode == key[0] and getattr(p, axis) == x
                         and all(getattr(p, f) == v for f, v in zip(fixed, key[1:])))
            store = store_of.get((point.guidance, point.store))
            per_class = point.volume if point.volume is not None else (store.per_class if store else 0)
            rows.append([key[0], *(_shots(v) if f == "shots" else f"{v:g}" for f, v in zip(fixed, key[1:])),
                         f"{x:g}", str(len(by_x[x])), f"{100 * m:.2f} ± {100 * s:.2f}", _cost(store, per_class, classes)])
    return [("img", (plot.name, title)), ("table", (head, rows))]


def point_label(studies: tuple | None, dirs: list[str]) -> str:
    """A results group's place in the study grid, e.g. 'v500 g7.5' ('-' outside a study)."""
    points = studies[1] if studies else {}
    p = points.get(dirs[0]) if dirs else None
    if p is None or p.mode == "vanilla":
        return "-"
    guidance_sweep = len({q.guidance for q in points.values() if q.guidance is not None}) > 1
    parts = ([f"v{p.volume}"] if p.volume is not None else []) + ([f"g{p.guidance:g}"] if guidance_sweep else [])
    return " ".join(parts)


def study_blocks(exp: Any, out: Path, runs: list[Path], studies: tuple | None, classes: int) -> list[tuple[str, Any]]:
    """The volume and guidance sections (none without a study)."""
    if not studies:
        return []
    stores, points = studies
    g = exp.generation
    volume_sweep, guidance_sweep = isinstance(g.per_class, list), isinstance(g.guidance_scale, list)
    if not (volume_sweep or guidance_sweep):
        return []
    top1 = _top1(runs)
    by_name = {s.name: s for s in stores}
    blocks: list[tuple[str, Any]] = []
    if volume_sweep:
        blocks += [("h2", "Volume study: accuracy against synthetic images per class"),
                   ("p", "Generated once per synthetic store, at the largest volume; each smaller volume trains on the "
                         "images 0..v-1 of every class of the same store (the images a generation of v per class makes). "
                         "Generation cost: the images a point trains on and the seconds their generation took.")]
        blocks += _study(out, points, top1, by_name, classes, "volume", ("shots", "guidance") if guidance_sweep
                         else ("shots",), "synthetic images per class", "volume.png", "accuracy against volume")
    if guidance_sweep:
        blocks += [("h2", "Guidance study: accuracy against the guidance scale"),
                   ("p", "One synthetic store per guidance scale, same seeds and prompts.")]
        blocks += _study(out, points, top1, by_name, classes, "guidance", ("shots", "volume") if volume_sweep
                         else ("shots",), "guidance scale", "guidance.png", "accuracy against guidance")
    return blocks
