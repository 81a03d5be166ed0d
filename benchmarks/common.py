"""Shared benchmark plumbing: time a callable with torch.utils.benchmark (it synchronises
CUDA), print ours vs peers side by side with the ratio, and save the rows as JSON.

Every benchmark script runs two ways:
  python benchmarks/bench_x.py [--device cuda]      prints the comparison table
  pytest benchmarks --benchmark-only ...            (make bench) pytest-benchmark timings
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.utils.benchmark as tbench

# `bridgedfast bench --results-dir` redirects every script's output through this variable.
RESULTS_DIR = Path(os.environ.get("BRIDGEDFAST_BENCH_RESULTS") or Path(__file__).resolve().parent / "results")


@dataclass
class Result:
    name: str            # what ran, e.g. "bridgedfast" or "torchvision.v2 per-sample"
    per_second: float    # throughput in `unit`
    unit: str = "images/s"
    extra: str = ""      # anything worth printing beside it (GB/s, it/s, ...)


def device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def throughput(fn: Callable[[], object], items: int, *, min_run_time: float = 1.0) -> float:
    """Items per second of `fn`, which processes `items` items per call (CUDA-synchronised)."""
    fn()  # warm-up (and compilation / autotuning, where any)
    # Timer runs the statement on one thread unless told otherwise: time it on all of torch's.
    timer = tbench.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    m = timer.blocked_autorange(min_run_time=min_run_time)
    return items / m.median


def compare(title: str, ours: Result, peers: list[Result], device: str) -> list[dict]:
    """Prints ours beside each peer with the ratio ours/peer; returns rows for `save`."""
    print(f"\n== {title} on {device_name(device)} ==")
    width = max(len(r.name) for r in [ours, *peers]) + 2
    print(f"{'':{width}} {ours.unit:>14}   ratio (ours/peer)")
    print(f"{ours.name:<{width}} {ours.per_second:14.1f}   {'':>8}  {ours.extra}")
    rows = []
    for peer in peers:
        ratio = ours.per_second / peer.per_second if peer.per_second > 0 else float("inf")
        print(f"{peer.name:<{width}} {peer.per_second:14.1f}   {ratio:8.2f}x  {peer.extra}")
        rows.append(
            {
                "benchmark": title,
                "device": device_name(device),
                "ours": asdict(ours),
                "peer": asdict(peer),
                "ratio": ratio,
            }
        )
    return rows


def save(name: str, rows: list[dict], device: str) -> Path:
    """Writes rows to benchmarks/results/<name>-<cpu|cuda>.json with the date and command."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}-{'cuda' if device.startswith('cuda') else 'cpu'}.json"
    payload = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "command": os.environ.get("BRIDGEDFAST_BENCH_COMMAND", ""),
        "rows": rows,
    }
    path.write_text(json.dumps(payload, indent=2))
    return path
