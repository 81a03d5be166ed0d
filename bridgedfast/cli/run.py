"""`bridgedfast run experiment.yaml`: the whole paper pipeline from one file."""
from __future__ import annotations

import argparse

RAW_DESCRIPTION = True
HELP = "run the whole pipeline (pack, invert, generate, train every mode/seed, report) from an experiment YAML"
DESCRIPTION = """Runs pack -> style inversion -> generation -> training (each mode, shots and seed) -> report,
as described by one YAML file. Each step is skipped when its output exists under the same settings and
inputs, so an interrupted run resumes and a changed setting reruns only what depends on it. The file is
validated before any work starts. Sections and their keys (defaults in brackets; each key means what the
option of the same name means in `bridgedfast pack`, `invert`, `generate`, `filter` or `train`):

{sections}

Studies: generation.per_class as a list (e.g. [500, 1000, 2000, 3000]) generates once, at the largest, and
trains each volume on every class's first images of the same store; generation.guidance_scale as a list
makes one synthetic store per value. generation.init: real starts each image from the run's own real
training images (img2img, with generation.strength); filter.enabled trains on each store's best images.

Writes OUT/report.md and OUT/report.html (results table, volume/guidance studies, sample grid, curves,
throughput, configuration)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..experiment.config import describe_sections

    p.description = DESCRIPTION.format(sections=describe_sections())
    p.add_argument("experiment", help="the experiment YAML file")
    p.add_argument("--out", default=None, help="output folder (overrides the file's `out`)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import check_output
    from ..experiment import load_experiment, run_experiment

    exp = load_experiment(args.experiment)  # the file's `out` is checked with the rest of it
    if args.out is not None:
        exp.out = str(check_output(args.out, "--out", folder=True).resolve())
    report = run_experiment(exp, progress=not args.no_progress)
    print(f"done: {report} (and {report.with_suffix('.html')})")
    return 0
