"""The experiment report: OUT/report.md and the same content as OUT/report.html."""
from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

import yaml

from ..files import atomic_write, atomic_write_text
from .config import Experiment

CELL = 64


def _sample_indices(store: Any, per_class: int, max_classes: int) -> list[list[int]]:
    labels = store.labels
    rows = []
    for c in range(min(len(store.classes), max_classes)):
        rows.append([int(i) for i in (labels == c).nonzero().flatten()[:per_class]])
    return rows


def sample_grid(path: Path, columns: list[tuple[str, Any]], classes: list[str], per_class: int, max_classes: int) -> Path:
    """One row per class; for each (title, store) column group, `per_class` images."""
    from PIL import Image, ImageDraw

    groups = [(title, store, _sample_indices(store, per_class, max_classes)) for title, store in columns]
    n_rows = min(len(classes), max_classes)
    label_w, header_h, gap = 90, 20, 10
    width = label_w + len(groups) * (per_class * CELL + gap)
    canvas = Image.new("RGB", (width, header_h + n_rows * CELL), "white")
    draw = ImageDraw.Draw(canvas)
    for g, (title, store, rows) in enumerate(groups):
        x0 = label_w + g * (per_class * CELL + gap)
        draw.text((x0 + 2, 4), title, fill="black")
        for r, indices in enumerate(rows):
            for k, i in enumerate(indices):
                img = Image.fromarray(store.image(i).numpy()).resize((CELL, CELL), Image.BILINEAR)
                canvas.paste(img, (x0 + k * CELL, header_h + r * CELL))
    for r in range(n_rows):
        draw.text((4, header_h + r * CELL + CELL // 2 - 6), classes[r][:14], fill="black")
    with atomic_write(path) as tmp:
        canvas.save(tmp)
    return path


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _blocks(exp: Experiment, out: Path, *, train: Path, synthetic: Path | None, nostyle: Path | None,
            runs: list[Path], timings: dict, note: str | None, studies: tuple | None = None,
            gap: dict | None = None) -> list[tuple[str, Any]]:
    from ..data import ImageStore
    from ..transfer import compare_runs
    from .claims import methodology_blocks, mode_label
    from .study_report import point_label, study_blocks

    b: list[tuple[str, Any]] = [("h1", "bridgedfast experiment report")]
    if note:
        b.append(("note", note))
    real = ImageStore(train)
    b.append(("p", f"Real training data: {len(real)} images in {len(real.classes)} classes. "
                   f"Model: {exp.training.model} (pretrained: {exp.training.pretrained}). "
                   f"Modes: {', '.join(exp.training.modes)}; seeds: {', '.join(map(str, exp.training.seeds))}."))

    b.append(("h2", "Results (test top-1 on the real test set)"))
    per_run, groups = compare_runs(runs) if runs else ([], [])
    points = studies[1] if studies else {}
    rows = [[mode_label(g["mode"], points.get(g["dirs"][0])), "all" if g["shots"] is None else str(g["shots"]), str(g["runs"]),
             f"{100 * g['top1_mean']:.2f} ± {100 * g['top1_std']:.2f}", _fmt(g["leep_mean"], 3)] for g in groups]
    head = ["mode", "shots per class", "seeds", "top-1 % (mean ± std)", "LEEP after stage 1"]
    studied = study_blocks(exp, out, runs, studies, len(real.classes))
    if studied:  # which study point each group is (volume, guidance)
        head.insert(2, "study point")
        for row, g in zip(rows, groups):
            row.insert(2, point_label(studies, g["dirs"]))
    b.append(("table", (head, rows)))
    run_rows = [[mode_label(r["mode"], points.get(r["dir"])), "all" if r["shots"] is None else str(r["shots"]), str(r["seed"]),
                 f"{100 * r['test_top1']:.2f}", "-" if r["test_top5"] is None else f"{100 * r['test_top5']:.2f}",
                 _fmt(r["leep"], 3), os.path.relpath(r["dir"], out)] for r in per_run]
    b.append(("h3", "Every run"))
    b.append(("table", (["mode", "shots", "seed", "top-1 %", "top-5 %", "LEEP", "folder"], run_rows)))
    b += studied
    b += methodology_blocks(exp, runs, studies, gap)

    if synthetic is not None:
        b.append(("h2", "Real vs synthetic samples"))
        columns = [("real", real), ("synthetic" + (" (style token)" if nostyle is not None else ""), ImageStore(synthetic))]
        if nostyle is not None:
            columns.append(("synthetic (no style token)", ImageStore(nostyle)))
        grid = sample_grid(out / "samples.png", columns, real.classes, exp.report.samples_per_class, exp.report.max_classes)
        b.append(("p", "One row per class. Synthetic images with and without the style token start from the same "
                       "seeds, so each pair differs only by the prompt."))
        b.append(("img", (os.path.relpath(grid, out), "real vs synthetic samples")))

    b.append(("h2", "Training curves"))
    for run in runs:
        curves = run / "curves.png"
        if curves.is_file():
            b.append(("h3", run.name))
            b.append(("img", (os.path.relpath(curves, out), f"curves of {run.name}")))

    b.append(("h2", "Throughput"))
    t_rows = []
    gen = timings.get("generate")
    if gen:
        t_rows.append(["generation", f"{_fmt(gen.get('images'), 0)} images in {_fmt(gen.get('seconds'), 1)} s",
                       f"{_fmt(gen.get('images_per_s'))} images/s, UNet {_fmt(gen.get('unet_its'))} it/s"])
    style = timings.get("style")
    if style:
        sps = style.get("steps_per_second") or (style["steps"] / style["seconds"] if style.get("seconds") else None)
        t_rows.append(["style inversion", f"{style.get('steps')} steps in {_fmt(style.get('seconds'), 1)} s", f"{_fmt(sps)} steps/s"])
    for run in runs:
        res_path = run / "results.json"
        if res_path.is_file():
            res = json.loads(res_path.read_text())
            for st in res.get("stages", []):
                epochs = [h for h in res.get("history", []) if h.get("stage") == st.get("name")]
                seconds = sum(h.get("seconds", 0.0) for h in epochs)
                images = sum(h.get("images", 0) for h in epochs)
                t_rows.append([f"training {run.name} {st.get('name', '')}",
                               f"{st.get('epochs')} epoch(s) on {st.get('data')}, {images} images",
                               f"{images / seconds:.1f} images/s" if seconds > 0 else "-"])
    b.append(("table", (["what", "work", "throughput"], t_rows)))

    b.append(("h2", "Configuration"))
    b.append(("code", yaml.safe_dump(exp.to_dict(), sort_keys=False)))
    return b


def _md(blocks: list[tuple[str, Any]]) -> str:
    out = []
    for kind, v in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + v)
        elif kind == "p":
            out.append(v)
        elif kind == "note":
            out.append("> **Note.** " + v.replace("\n", "\n> "))
        elif kind == "table":
            head, rows = v
            out.append("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
            out[-1] += "".join("\n| " + " | ".join(r) + " |" for r in rows)
        elif kind == "list":
            out.append("\n".join(f"- {item}" for item in v))
        elif kind == "img":
            out.append(f"![{v[1]}]({v[0]})")
        elif kind == "code":
            out.append("```yaml\n" + v.rstrip() + "\n```")
    return "\n\n".join(out) + "\n"


def _html(blocks: list[tuple[str, Any]]) -> str:
    e = html.escape
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>bridgedfast report</title><style>"
             "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}"
             ".note{background:#fff3cd;border:1px solid #e0c060;padding:8px 12px}pre{background:#f6f6f6;padding:8px}"
             "</style></head><body>"]
    for kind, v in blocks:
        if kind in ("h1", "h2", "h3"):
            parts.append(f"<{kind}>{e(v)}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{e(v)}</p>")
        elif kind == "note":
            body = "<br>".join(e(line) for line in v.splitlines())
            parts.append(f"<div class='note'><b>Note.</b> {body}</div>")
        elif kind == "table":
            head, rows = v
            parts.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>"
                         + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows) + "</table>")
        elif kind == "list":
            parts.append("<ul>" + "".join(f"<li>{e(item)}</li>" for item in v) + "</ul>")
        elif kind == "img":
            parts.append(f"<p><img src='{e(v[0])}' alt='{e(v[1])}' style='max-width:100%'></p>")
        elif kind == "code":
            parts.append(f"<pre>{e(v)}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(exp: Experiment, out: Path, *, train: Path, synthetic: Path | None, nostyle: Path | None,
                 runs: list[Path], timings: dict, note: str | None = None, studies: tuple | None = None,
                 gap: dict | None = None) -> Path:
    """OUT/report.md and OUT/report.html; `gap`: `Measurements.all()` (KID, class faithfulness)."""
    note_file = out / "NOTE.txt"
    if note is None and note_file.is_file():
        note = note_file.read_text().strip()
    blocks = _blocks(exp, out, train=train, synthetic=synthetic, nostyle=nostyle, runs=runs, timings=timings, note=note,
                     studies=studies, gap=gap)
    for name, text in (("report.md", _md(blocks)), ("report.html", _html(blocks))):
        atomic_write_text(out / name, text)
    return out / "report.md"
