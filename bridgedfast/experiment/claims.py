"""The report's methodology sections: the compute each mode used, the synthetic-real gap and
class faithfulness of each store, and the paper's claims set against the measured numbers.

`claims(top1, gap)` works on plain numbers (unit-tested on hand-made ones):
- `top1`: {(mode, shots, variant): [test top-1 of each seed]}, variant "styled", "plain" or None
  (no style study); shots None = all;
- `gap`: the `Measurements.all()` entries: [{"name", "styled", "style_shots", "kid": {"mean",
  "std"}, ...}].
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["claims", "compute_rows", "gap_rows", "methodology_blocks", "mode_label", "top1_by_variant"]

ORDER = {"vanilla": 0, "mixed": 1, "bridged": 2, "bridged++": 3}


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _shots(shots: int | None) -> str:
    return "all" if shots is None else f"{shots}-shot"


def _pct(values: list[float]) -> str:
    m, s = _mean_std(values)
    return f"{100 * m:.2f} ± {100 * s:.2f} % (n={len(values)})"


def _variant(point: Any) -> str | None:
    return None if point is None or point.style is None else ("styled" if point.style else "plain")


def mode_label(mode: str, point: Any) -> str:
    """'bridged++ (styled)' / 'bridged++ (plain)' in a style study, else the mode."""
    variant = None if mode == "vanilla" else _variant(point)
    return mode if variant is None else f"{mode} ({variant})"


def top1_by_variant(points: dict[str, Any], volumes: list, guidances: list) -> dict[tuple, list[float]]:
    """{(mode, shots, variant): [top-1 per seed]} of the finished runs at the experiment's main
    study point (the largest volume, the first guidance scale)."""
    out: dict[tuple, list[float]] = {}
    for run, p in points.items():
        path = Path(run) / "results.json"
        if not path.is_file():
            continue
        if p.mode != "vanilla" and (p.volume not in (None, max(volumes)) or p.guidance not in (None, guidances[0])):
            continue
        out.setdefault((p.mode, p.shots, _variant(p)), []).append(json.loads(path.read_text())["test_top1"])
    return out


def compute_rows(runs: list[Path], points: dict[str, Any]) -> list[list[str]]:
    """Per (mode, shots, variant): optimiser steps per stage and images seen (real, synthetic),
    mean over the seeds' runs (results.json `stages`)."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        path = run / "results.json"
        if path.is_file():
            p = points.get(str(run))
            res = json.loads(path.read_text())
            shots = res.get("shots")
            label = mode_label(res["mode"], p)
            if p is not None and p.volume is not None:
                label += f" v{p.volume}"
            if p is not None and p.store and "-g" in p.store:
                label += f" g{p.guidance:g}"
            key = (shots is None, shots or 0, ORDER.get(res["mode"], 9), label, shots)
            groups.setdefault(key, []).append(res)
    rows = []
    for (_, _, _, label, shots), results in sorted(groups.items(), key=lambda kv: kv[0][:4]):
        def mean(f) -> float:
            return sum(f(r) for r in results) / len(results)

        def stage_steps(name: str) -> float:
            return mean(lambda r: sum(s.get("steps", 0) for s in r["stages"] if s["name"] == name))

        s1, s2 = stage_steps("stage1"), stage_steps("stage2")
        real = mean(lambda r: sum(s["images"]["real"] for s in r["stages"]))
        syn = mean(lambda r: sum(s["images"]["synthetic"] for s in r["stages"]))
        rows.append([label, "all" if shots is None else str(shots), str(len(results)),
                     "-" if s1 == 0 else f"{s1:g}", f"{s2:g}", f"{s1 + s2:g}", f"{real:g}", f"{syn:g}",
                     f"{real + syn:g}"])
    return rows


def gap_rows(gap: dict) -> list[list[str]]:
    rows = []
    for e in gap.get("stores", []):
        k, f = e["kid"], e.get("faithfulness")
        style = ("plain (no style token)" if not e["styled"] else
                 f"styled (token from {_shots(e['style_shots']).replace('all', 'all real images')})")
        rows.append([e["name"], style, f"{k['mean']:.4g} ± {k['std']:.2g}",
                     f"{k['real_images']} / {k['synthetic_images']}",
                     "-" if f is None else f"{100 * f['accuracy']:.2f} % of {f['images']}",
                     "-" if f is None or f.get("judge_val_accuracy") is None else
                     f"{100 * f['judge_val_accuracy']:.2f} % of {f['judge_val_images']}"])
    return rows


def _judge_text(judge: dict | None) -> str:
    """How the faithfulness judge was trained, and how good it is on real images it never saw."""
    if not judge:
        return ""
    val = ("" if judge.get("val_accuracy") is None else
           f"; its own top-1 on the {judge['val_images']} held-out real images: {100 * judge['val_accuracy']:.2f} %")
    return (f" ({judge['steps']} SGD steps of batch {judge['batch_size']} on {judge['train_images']} of them, crops "
            f"of {judge['scale'][0]:g}-{judge['scale'][1]:g} of the area, no flips; a fifth of each class held out"
            f"{val})")


def _holds(ok: bool) -> str:
    return "holds" if ok else "does not hold here"


def _by_shots(top1: dict, mode: str, variant_ok) -> dict:
    return {k[1]: v for k, v in top1.items() if k[0] == mode and variant_ok(k[2])}


def _verdict(oks: dict) -> str:
    """'holds' (at every shots value), 'does not hold here' (at none) or where it holds and not."""
    if all(oks.values()) or not any(oks.values()):
        return _holds(all(oks.values()))
    yes = ", ".join(_shots(k) for k, ok in oks.items() if ok)
    no = ", ".join(_shots(k) for k, ok in oks.items() if not ok)
    return f"holds at {yes}; does not hold here at {no}"


def _vs_vanilla(top1: dict, mode: str, better: bool) -> tuple[str, str] | None:
    """Per shots: mode (styled or only variant) against vanilla; (numbers, verdict)."""
    van = _by_shots(top1, "vanilla", lambda v: True)
    other = _by_shots(top1, mode, lambda v: v != "plain")
    shots = sorted((k for k in other if k in van), key=lambda k: (k is None, k or 0))
    if not shots:
        return None
    parts, oks = [], {}
    for k in shots:
        m, v = _mean_std(other[k])[0], _mean_std(van[k])[0]
        oks[k] = m > v if better else m < v
        parts.append(f"{_shots(k)}: {mode} {_pct(other[k])} vs vanilla {_pct(van[k])}")
    return "; ".join(parts), _verdict(oks)


def _most_at_few_shots(top1: dict) -> str:
    van = _by_shots(top1, "vanilla", lambda v: True)
    pp = _by_shots(top1, "bridged++", lambda v: v != "plain")
    shots = sorted((k for k in pp if k in van), key=lambda k: (k is None, k or 0))
    if len(shots) < 2:
        return "not measured here (needs bridged++ and vanilla at two or more shots values)"
    gain = {k: _mean_std(pp[k])[0] - _mean_std(van[k])[0] for k in shots}
    few, many = shots[0], shots[-1]
    # A gain must be a gain: a smaller loss at few shots than with all images is not one.
    return (f"{_holds(gain[few] > 0 and gain[few] > gain[many])}: the gain over vanilla is {100 * gain[few]:+.2f} points at "
            f"{_shots(few)} and {100 * gain[many]:+.2f} points at {_shots(many)}")


def _style_claims(top1: dict, gap: dict) -> list[str]:
    stores = gap.get("stores", [])
    styled = [e for e in stores if e["styled"]]
    plain = [e for e in stores if not e["styled"]]
    if not styled or not plain:
        return ["DSI narrows the synthetic-real gap (styled KID < plain KID): not measured here (needs "
                "style.enabled: [true, false] and report.measure_images > 0)"]
    p_kid = [e["kid"]["mean"] for e in plain]
    p_mean = sum(p_kid) / len(p_kid)
    parts = [f"{e['name']} ({_shots(e['style_shots'])}) {e['kid']['mean']:.4g} ± {e['kid']['std']:.2g}"
             for e in styled]
    ok = all(e["kid"]["mean"] < p_mean for e in styled)
    out = [f"DSI narrows the synthetic-real gap (styled KID < plain KID): {_holds(ok)}: styled {'; '.join(parts)} vs "
           f"plain {p_mean:.4g}"]
    s = _by_shots(top1, "bridged++", lambda v: v == "styled")
    pl = _by_shots(top1, "bridged++", lambda v: v == "plain")
    shots = sorted((k for k in s if k in pl), key=lambda k: (k is None, k or 0))
    if shots:
        verdict = _verdict({k: _mean_std(s[k])[0] >= _mean_std(pl[k])[0] for k in shots})
        parts = [f"{_shots(k)}: styled {_pct(s[k])} vs plain {_pct(pl[k])}" for k in shots]
        out.append(f"Styled bridged++ >= plain bridged++: {verdict}: {'; '.join(parts)}")
    else:
        out.append("Styled bridged++ >= plain bridged++: not measured here (needs bridged++ in a style study)")
    return out


def claims(top1: dict[tuple, list[float]], gap: dict) -> list[str]:
    """One sentence per claim of the paper: the claim, 'holds' / 'does not hold here' (or 'not
    measured here') and the numbers (test top-1 mean ± sample std over seeds; KID mean ± std
    over its subsets)."""
    out = []
    for mode, better, claim in (("mixed", False, "Mixed training is below vanilla fine-tuning"),
                                ("bridged++", True, "Bridged transfer++ is above vanilla fine-tuning")):
        found = _vs_vanilla(top1, mode, better)
        out.append(f"{claim}: " + ("not measured here (needs both modes)" if found is None
                                   else f"{found[1]} ({found[0]})"))
    out.append(f"Bridged transfer++ gains most at few shots: {_most_at_few_shots(top1)}")
    return out + _style_claims(top1, gap)


def methodology_blocks(exp: Any, runs: list[Path], studies: tuple | None, gap: dict | None) -> list[tuple[str, Any]]:
    points = studies[1] if studies else {}
    b: list[tuple[str, Any]] = [
        ("h2", "Compute per mode"),
        ("p", "Optimiser steps and training images seen per run (mean over its seeds): the bridged modes train two "
              "stages (synthetic, then real); each stage takes at least training.min_steps steps."),
        ("table", (["mode", "shots", "seeds", "stage 1 steps", "stage 2 steps", "total steps", "real images seen",
                    "synthetic images seen", "images seen"], compute_rows(runs, points)))]
    if gap and gap.get("stores"):
        b += [("h2", "Synthetic-real gap and class faithfulness"),
              ("p", f"KID (unbiased, polynomial kernel; mean ± std over its subsets) between the real training images "
                    f"and each store, in the penultimate features of the pretrained classifier ({exp.training.model}, "
                    f"pretrained: {exp.training.pretrained}, before fine-tuning); lower is closer. Class faithfulness: "
                    f"top-1 on the store's images (chance: one over the number of classes) of a judge, the pretrained "
                    f"classifier fine-tuned on the real training images only{_judge_text(gap.get('judge'))}. "
                    f"At most {gap['images']} images per store, balanced across classes."),
              ("table", (["store", "prompt", "KID", "real / synthetic images", "class faithfulness",
                          "judge on held-out real"], gap_rows(gap)))]
    g = exp.generation
    top1 = top1_by_variant(points, g.per_class if isinstance(g.per_class, list) else [g.per_class],
                           g.guidance_scale if isinstance(g.guidance_scale, list) else [g.guidance_scale])
    b += [("h2", "The paper's claims vs measured here"),
          ("p", "Generated from the numbers above (test top-1 mean ± sample std over seeds, n = seeds). A claim "
                "'holds' when the means fall in the claimed order; whether the difference exceeds the spread over "
                "seeds is for the reader to judge from the ± std (with fewer than 3 seeds it cannot be judged). "
                "Claims on modes use the styled stores in a style study, and the largest volume and first guidance "
                "scale in a volume or guidance study."),
          ("list", claims(top1, gap or {}))]
    return b
