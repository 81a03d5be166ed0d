"""`bridgedfast bench`: run every benchmark in benchmarks/ and write one summary table."""
from __future__ import annotations

import argparse

HELP = "run every benchmark in benchmarks/ (ours vs peers) and write a summary table to benchmarks/results/"
DESCRIPTION = (
    "Runs each benchmarks/bench_*.py script (from a source checkout), each printing ours vs its peers "
    "side by side, then writes benchmarks/results/summary-<cpu|cuda>.md with one row per comparison: "
    "benchmark, ours, peer, their throughputs, the ratio and the device."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for the CPU benchmarks")
    p.add_argument("--only", default=None, help="comma-separated benchmark names to run, e.g. augment,loader")
    p.add_argument("--quick", action="store_true", help="small problem sizes (a smoke run, not for quoting)")
    p.add_argument("--benchmarks-dir", default=None, help="folder holding bench_*.py (default: the checkout's benchmarks/)")
    p.add_argument("--results-dir", default=None, help="where the JSON rows and the summary go (default: benchmarks/results/)")


def run(args: argparse.Namespace) -> int:
    import re

    from . import CLIError, check_output
    from ..benchrun import run_benchmarks

    # Checked here: each script would otherwise fail on them one after the other.
    if not re.fullmatch(r"cpu|cuda(:\d+)?", args.device):
        raise CLIError(f"--device {args.device!r}: use cpu, cuda or cuda:N")
    if args.threads < 1:
        raise CLIError(f"--threads must be a positive integer, got {args.threads}")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise CLIError(f"--device {args.device!r}: no CUDA GPU is visible")
    if args.results_dir is not None:
        check_output(args.results_dir, "--results-dir", folder=True)
    only = [s.strip() for s in args.only.split(",")] if args.only else None
    summary = run_benchmarks(
        device=args.device, threads=args.threads, only=only, quick=args.quick, benchmarks_dir=args.benchmarks_dir,
        results_dir=args.results_dir,
    )
    print(f"\nsummary written to {summary}")
    return 0
