"""Runs the benchmark scripts and gathers their saved rows into one summary table."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path


def find_benchmarks_dir(explicit: str | None = None) -> Path:
    if explicit is not None:
        path = Path(explicit)
    else:
        path = Path(__file__).resolve().parent.parent / "benchmarks"
    if not (path.is_dir() and any(path.glob("bench_*.py"))):
        raise FileNotFoundError(
            f"no benchmarks found in {path}: run from a source checkout of bridgedfast or pass --benchmarks-dir"
        )
    return path


def run_benchmarks(
    *, device: str = "cpu", threads: int = 2, only: list[str] | None = None, quick: bool = False,
    benchmarks_dir: str | None = None, results_dir: str | None = None,
) -> Path:
    bench_dir = find_benchmarks_dir(benchmarks_dir)
    scripts = sorted(bench_dir.glob("bench_*.py"))
    if only:
        names = {s.stem.removeprefix("bench_"): s for s in scripts}
        unknown = [n for n in only if n not in names]
        if unknown:
            raise ValueError(f"unknown benchmark(s) {', '.join(unknown)}: choose from {', '.join(sorted(names))}")
        scripts = [names[n] for n in only]
    kind = "cuda" if device.startswith("cuda") else "cpu"
    results_dir = Path(results_dir) if results_dir else bench_dir / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.timezone.utc)
    failures = []
    for script in scripts:
        cmd = [sys.executable, str(script), "--device", device, "--threads", str(threads)] + (["--quick"] if quick else [])
        print(f"\n$ {' '.join(cmd)}", flush=True)
        env = dict(os.environ, BRIDGEDFAST_BENCH_COMMAND=" ".join(["python", *cmd[1:]]),
                   BRIDGEDFAST_BENCH_RESULTS=str(results_dir))
        # The scripts import bridgedfast from the checkout that holds them.
        env["PYTHONPATH"] = os.pathsep.join([str(bench_dir.parent), env.get("PYTHONPATH", "")])
        if subprocess.run(cmd, env=env).returncode != 0:
            failures.append(script.stem)
    rows = []
    for path in sorted(results_dir.glob(f"*-{kind}.json")):
        payload = json.loads(path.read_text())
        when = dt.datetime.fromisoformat(payload.get("date", "1970-01-01T00:00:00+00:00"))
        if when < started.replace(microsecond=0):
            continue  # a stale file from an earlier run
        rows += payload.get("rows", [])
    summary = results_dir / f"summary-{kind}.md"
    lines = [
        f"# Benchmark summary ({kind}), {started.date().isoformat()}",
        "",
        "| benchmark | ours | ours/s | peer | peer/s | ratio | device |",
        "|---|---|---:|---|---:|---:|---|",
    ]
    for r in rows:
        ours, peer = r["ours"], r["peer"]
        lines.append(
            f"| {r['benchmark']} | {ours['name']} | {ours['per_second']:.1f} {ours['unit']} | {peer['name']} | "
            f"{peer['per_second']:.1f} | {r['ratio']:.2f}x | {r['device']} |"
        )
    if failures:
        lines += ["", f"Failed: {', '.join(failures)}"]
    summary.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if failures:
        raise RuntimeError(f"benchmark(s) failed: {', '.join(failures)}")
    return summary
