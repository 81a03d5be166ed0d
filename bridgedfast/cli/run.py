"""`bridgedfast run experiment.yaml`: the whole paper pipeline from one file."""
from __future__ import annotations

import argparse

RAW_DESCRIPTION = True
HELP = "run the whole pipeline (pack, invert, generate, train every mode/seed, report) from an experiment YAML"
DESCRIPTION = """Runs pack -> style inversion -> generation -> training (each mode, shots and seed) -> report,
as described by one YAML file. Each step is skipped when its output exists under the same settings and
inputs, so an interrupted run resumes and a changed setting reruns only what depends on it. The file is
validated before any work starts. Sections and their keys (defaults in brackets):

  out: runs/experiment             output folder (relative paths are relative to the YAML file)
  data:       real (folder of class sub-folders or an image store), test [null: split real],
              test_fraction [0.2], split_seed [0], shots [[null] = all; e.g. [1, 5, null]],
              max_side [null], encoding [raw]
  generation: model (Stable Diffusion folder or hub id), per_class [1000], template ["a photo of a {}"],
              negative_prompt, guidance_scale [7.5], steps [25], scheduler [dpmpp], backend [eager],
              attention [auto], dtype [auto], device [auto], height/width [512], batch_size [auto],
              seed [0], store_size [null], encoding [raw]
  style:      enabled [true], token [<dataset-style>], init_word [photo],
              template ["a photo of a {} in the style of {token}"], steps [3000], lr [5e-4],
              batch_size [4], resolution [512], seed [0], dtype [auto], device [auto]
  training:   model [resnet50], pretrained [timm], modes [vanilla, mixed, bridged, bridged++], seeds [[0]],
              epochs, stage1_epochs, stage2_epochs, batch_size, image_size, lr, synthetic_fraction,
              device [auto], workers, options (any further `bridgedfast train` setting, by its Python name)
  report:     samples_per_class [4], max_classes [10]

Writes OUT/report.md and OUT/report.html (results table, sample grid, curves, throughput, configuration)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("experiment", help="the experiment YAML file")
    p.add_argument("--out", default=None, help="output folder (overrides the file's `out`)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..experiment import load_experiment, run_experiment

    exp = load_experiment(args.experiment)
    if args.out is not None:
        exp.out = str(Path(args.out).resolve())
    report = run_experiment(exp, progress=not args.no_progress)
    print(f"done: {report} (and {report.with_suffix('.html')})")
    return 0
