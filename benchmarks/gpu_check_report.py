"""Writes OUT/gpu-check.md from what benchmarks/gpu_check.sh left in OUT: machine.json, steps.tsv,
notes/, logs/ (pytest's junit XML, each step's log) and results/<step>/*.json (the rows every
benchmark script saves through benchmarks/common.py). Standard library only, so the report is
written even when torch or the extension is broken.

  python benchmarks/gpu_check_report.py OUT [--dry-run 0|1] [--budget S] [--elapsed S]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

# DESIGN.md's performance targets, matched on a row's benchmark title and peer.
TARGETS = [
    (lambda t, p, gpu: t.startswith("augment") and "torchvision" in p and "Mixup" not in t, ">= 50x on GPU", ">= 10x"),
    (lambda t, p, gpu: t.startswith("loader:") and "raw store" in t and "cache" not in t, "not the bottleneck", ">= 10x"),
    (lambda t, p, gpu: t.startswith("loader:") and "jpeg store" in t, "not the bottleneck", ">= 5x"),
    (lambda t, p, gpu: t.startswith("generate"), ">= 2x", "parity (fp32, same work)"),
    (lambda t, p, gpu: t.startswith("style inversion"), ">= 3x", "parity (fp32, same work)"),
]


def target(title: str, peer: str, gpu: bool) -> str:
    for match, on_gpu, on_cpu in TARGETS:
        if match(title, peer, gpu):
            return on_gpu if gpu else on_cpu
    return ""


def read_steps(out: Path) -> list[dict]:
    steps = []
    path = out / "steps.tsv"
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 4:
                steps.append(dict(name=parts[0], status=parts[1], seconds=parts[2], limit=parts[3],
                                  note=parts[4] if len(parts) > 4 else ""))
    return steps


def read_rows(out: Path) -> list[dict]:
    rows = []
    for path in sorted((out / "results").glob("*/*.json")):
        try:
            payload = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            rows.append({"error": f"{path.relative_to(out)}: unreadable ({exc})"})
            continue
        for row in payload.get("rows", []):
            rows.append(dict(row, step=path.parent.name))
    return rows


def junit_summary(path: Path) -> tuple[str, list[str]]:
    """('N passed, N failed, N errors, N skipped of N', failed test ids) from pytest's junit XML."""
    if not path.exists():
        return "no result file (the step did not get that far)", []
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        return f"unreadable result file ({exc})", []
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = sum(int(s.get("tests", 0)) for s in suites)
    failed = sum(int(s.get("failures", 0)) for s in suites)
    errors = sum(int(s.get("errors", 0)) for s in suites)
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
    bad, reasons = [], {}
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            bad.append(f"{case.get('classname', '')}::{case.get('name', '')}")
        skip = case.find("skipped")
        if skip is not None:
            reason = (skip.get("message") or "").strip()
            reasons[reason] = reasons.get(reason, 0) + 1
    passed = total - failed - errors - skipped
    why = "; ".join(f"{n} x {r!r}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:8])
    line = f"{passed} passed, {failed} failed, {errors} errors, {skipped} skipped (of {total})"
    return line + (f"; skipped because: {why}" if why else ""), bad


def machine_lines(info: dict, dry: bool) -> list[str]:
    gpus = info.get("gpus") or []
    if gpus:
        names = {}
        for g in gpus:
            key = f"{g['name']}, {g['memory_gib']} GiB, compute capability {g['capability']}"
            names[key] = names.get(key, 0) + 1
        gpu = "; ".join(f"{k} (x{n})" for k, n in names.items())
    else:
        gpu = "none" + (" (dry run on the CPU)" if dry else " visible to torch")
    versions = lambda *names: ", ".join(f"{n} {info.get(n) or '-'}" for n in names)  # noqa: E731
    return [
        "| | |",
        "|---|---|",
        f"| GPU | {gpu} |",
        f"| NVIDIA driver | {info.get('driver') or '-'} |",
        f"| CUDA | torch built with {info.get('torch_cuda') or '- (CPU build)'}; nvcc {info.get('nvcc') or 'not found'} |",
        f"| PyTorch | {versions('torch', 'torchvision')} |",
        f"| libraries | {versions('diffusers', 'transformers', 'timm', 'kornia', 'onnxruntime', 'tensorrt', 'xformers')} |",
        f"| Python | {info.get('python', '-')}; {versions('numpy', 'pillow', 'pytest')} |",
        f"| CPU | {info.get('cpu', '-')}, {info.get('cpu_cores', '-')} cores |",
        f"| cmake | {info.get('cmake') or 'not found'} |",
    ]


def tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return "(no log)"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--dry-run", type=int, default=0)
    ap.add_argument("--budget", type=int, default=0)
    ap.add_argument("--elapsed", type=int, default=0)
    args = ap.parse_args()
    out, dry = args.out, bool(args.dry_run)
    try:
        info = json.loads((out / "machine.json").read_text())
    except (OSError, json.JSONDecodeError):
        info = {}
    steps = read_steps(out)
    rows = read_rows(out)
    bad_steps = [s for s in steps if s["status"] not in ("pass", "skipped")]  # fail, timeout, interrupted
    gpu_name = (info.get("gpus") or [{}])[0].get("name")
    title = "dry run (CPU, tiny sizes: plumbing only, no figure to quote)" if dry else (gpu_name or "no GPU found")
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    verdict = "PASS" if not bad_steps else "FAIL (" + ", ".join(f"{s['name']} {s['status']}" for s in bad_steps) + ")"
    lines = [
        f"# GPU check: {title}",
        "",
        f"{now}; {args.elapsed} s in all (budget {args.budget} s for the steps). Result: **{verdict}**.",
        "Made by `bash benchmarks/gpu_check.sh" + (" --dry-run" if dry else "") + "`; logs in `logs/`, "
        "the benchmarks' JSON rows in `results/<step>/`.",
        "",
        "## Machine",
        "",
        *machine_lines(info, dry),
        "",
        "## Steps",
        "",
        "| step | result | seconds | limit (s) | notes |",
        "|---|---|---:|---:|---|",
    ]
    for s in steps:
        status = s["status"].upper() if s in bad_steps else s["status"]
        lines.append(f"| {s['name']} | {status} | {s['seconds']} | {s['limit']} | {s['note'].replace('|', '/')} |")
    pytest_line, pytest_bad = junit_summary(out / "logs" / "pytest-cuda.xml")
    ctest = next((s["note"] for s in steps if s["name"] == "ctest"), "") or "did not run"
    lines += ["", "## Tests", "", f"- `pytest -m cuda`: {pytest_line}"]
    lines += [f"  - failed: `{name}`" for name in pytest_bad[:40]]
    if len(pytest_bad) > 40:
        lines.append(f"  - ... and {len(pytest_bad) - 40} more (logs/pytest-cuda.log)")
    lines += [f"- `ctest`: {ctest}", "", "## Ours vs peers", ""]
    good = [r for r in rows if "error" not in r]
    if good:
        lines += ["| benchmark | ours | ours/s | peer | peer/s | ratio | target | step |",
                  "|---|---|---:|---|---:|---:|---|---|"]
        for r in good:
            ours, peer = r["ours"], r["peer"]
            gpu = not r["device"].startswith("CPU")
            extra = f" ({ours['extra']})" if ours.get("extra") else ""
            lines.append(
                f"| {r['benchmark']} | {ours['name']}{extra} | {ours['per_second']:.1f} {ours['unit']} | {peer['name']} | "
                f"{peer['per_second']:.1f} | {r['ratio']:.2f}x | {'' if dry else target(r['benchmark'], peer['name'], gpu)} | {r['step']} |"
            )
        devices = sorted({r["device"] for r in good})
        lines += ["", f"Device(s) as the scripts saw them: {', '.join(devices)}."]
    else:
        lines.append("No benchmark rows (no benchmark step finished).")
    lines += [f"- {r['error']}" for r in rows if "error" in r]
    if bad_steps:
        lines += ["", "## Failures", ""]
        for s in bad_steps:
            lines += [f"### {s['name']}: {s['status']} after {s['seconds']} s (logs/{s['name']}.log)", "", "```",
                      tail(out / "logs" / f"{s['name']}.log"), "```", ""]
    text = "\n".join(lines).rstrip() + "\n"
    (out / "gpu-check.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
