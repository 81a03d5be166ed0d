"""`bridgedfast train`: vanilla, mixed, bridged and bridged++ fine-tuning of a timm model, and
`bridgedfast train --compare DIR...` to tabulate finished runs."""
from __future__ import annotations

import argparse
import os

from . import CLIError

RAW_DESCRIPTION = True
HELP = "fine-tune a timm model on real (+ synthetic) image stores: vanilla, mixed, bridged or bridged++"

DESCRIPTION = """\
Fine-tune a timm model with bridged transfer (Li et al., arXiv 2403.19866) and write
OUT/results.json, OUT/curves.png, OUT/model.safetensors and a checkpoint each epoch.

Modes: vanilla = real images only; mixed = real + synthetic in one stage; bridged = stage 1 on
synthetic images only, then stage 2 on real images only, keeping the head; bridged++ = bridged
with Mixup/CutMix in stage 1 and the classifier head re-initialised before stage 2.

Stage 1 is the synthetic-only stage (bridged, bridged++). Stage 2 is the stage that trains on
real images, in every mode: the --stage2-* options are the real fine-tuning of every mode, so
runs that differ only in --mode compare fairly. --stage1-*/--stage2-* override the general
option of the same name for that stage.

Re-running the same command resumes from the last checkpoint, or just prints the results of a
finished run; a different configuration against an existing --out is refused. Under
`torchrun --nproc_per_node=N -m bridgedfast train ...` the batch is split across processes.
"""

# How the flags are grouped in --help; an option not named here goes to the last group.
RUN_GROUP = ("model", "real_train", "real_test", "synthetic", "mode", "out", "shots", "split_seed", "pretrained", "seed")
OPTIMISATION_GROUP = ("epochs", "batch_size", "lr", "synthetic_fraction")
# Stage options that also have a general flag, applied to both stages unless a stage flag overrides it.
BOTH_STAGES = ("steps_per_epoch", "optimizer", "weight_decay", "warmup_epochs", "label_smoothing")
# TrainConfig fields that `--compare` does without: checked by build_config instead of argparse.
RUN_REQUIRED = ("model", "real_train", "real_test", "mode", "out")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..transfer import StageConfig, TrainConfig

    unset = {name: None for name in RUN_REQUIRED}
    g = p.add_argument_group("run")
    TrainConfig.add_arguments(g, only=RUN_GROUP, defaults=unset)
    g.add_argument("--compare", nargs="+", metavar="DIR",
                   help="instead of training: tabulate finished runs under these folders (mode, shots, seed; "
                   "top-1 mean +- std over seeds)")
    g = p.add_argument_group("optimisation (both stages unless a --stage1-/--stage2- option overrides)")
    TrainConfig.add_arguments(g, only=OPTIMISATION_GROUP)
    StageConfig.add_arguments(g, only=BOTH_STAGES)
    for k, what in ((1, "stage 1: synthetic images only (bridged, bridged++)"), (2, "stage 2: real images (every mode)")):
        g = p.add_argument_group(what, "each overrides the general option of the same name for this stage")
        StageConfig.add_arguments(g, prefix=f"stage{k}_", defaults={o: None for o in StageConfig.options()})
    g = p.add_argument_group("data and speed")
    TrainConfig.add_arguments(g, exclude=RUN_GROUP + OPTIMISATION_GROUP)


def build_config(args: argparse.Namespace):
    from ..options import dashed_name
    from ..transfer import StageConfig, TrainConfig

    missing = [opt for opt in RUN_REQUIRED if not getattr(args, opt)]
    if missing:
        raise CLIError("missing " + ", ".join(f"--{dashed_name(m)}" for m in missing)
                       + " (or use --compare DIR... to tabulate finished runs)")
    stage_options = [o.name for o in StageConfig.exposed("cli")]
    if args.mode in ("vanilla", "mixed"):
        given = [f"--stage1-{dashed_name(f)}" for f in stage_options if getattr(args, f"stage1_{f}") is not None]
        if given:
            raise CLIError(f"{', '.join(given)}: mode {args.mode} has no synthetic stage 1; its one stage is stage 2 "
                           "(use --stage2-... or the general options)")
    stages = {}
    for k in (1, 2):
        kw = {}
        for field in stage_options:
            value = getattr(args, f"stage{k}_{field}")
            if value is None and field in BOTH_STAGES:
                value = getattr(args, field)
            if value is not None:
                kw[field] = value
        stages[k] = StageConfig(**kw)
    return TrainConfig.from_args(args, stage1=stages[1], stage2=stages[2])


def summary(results: dict) -> str:
    lines = [f"{results['model']} {results['mode']}" + (f", {results['shots']} shots" if results.get("shots") else "")
             + f", seed {results['seed']}"]
    for s in results["stages"]:
        lines.append(f"  {s['name']} ({s['data']}): {s['epochs']} epochs, final train loss {s['final_train_loss']:.4f}, "
                     f"test top-1 {100 * s['test_top1']:.2f}%, head {s['head']}")
    parts = [f"{what} {results[key]:.4f}" for key, what in (("leep_pretrained", "pretrained"), ("leep", "after stage 1"))
             if results.get(key) is not None]
    leep = f"  LEEP {', '.join(parts)}" if parts else ""
    lines.append(f"test top-1 {100 * results['test_top1']:.2f}%  top-5 {100 * results['test_top5']:.2f}%{leep}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.compare:
        from ..transfer import compare_runs, format_comparison

        runs, groups = compare_runs(args.compare)
        print(format_comparison(runs, groups))
        return 0
    config = build_config(args)
    from . import check_output

    check_output(config.out, "--out", folder=True)
    from ..transfer import train

    results = train(config)
    if int(os.environ.get("RANK", "0")) == 0:
        print(summary(results))
        print(f"results: {os.path.join(config.out, 'results.json')}")
    return 0
