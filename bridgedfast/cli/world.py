"""`bridgedfast world`: the miniature world's recipe (`bridgedfast world build`)."""
from __future__ import annotations

import argparse

HELP = "rebuild the miniature world's models (a small Stable Diffusion and a classifier) from scratch"
DESCRIPTION = """The miniature world replicates the paper's setting offline: characters rendered from
matplotlib's bundled fonts play the web, a small text-to-image Stable Diffusion trained on them plays
Stable Diffusion 1.5, a small timm classifier trained on their letters only plays an ImageNet-pretrained
model, and scikit-learn's handwritten digits are the target task. The package ships the weights of the
full recipe (bridgedfast.world.WEIGHTS, used by `bridgedfast demo`); `world build` retrains them.

  bridgedfast world build --out DIR [--quick] [--seed N] [--fp16] [--no-progress]

writes DIR/sd (a diffusers Stable Diffusion folder), DIR/classifier (timm weights as safetensors and
classifier.json) and DIR/world.json (the recipe). An interrupted build resumes at the stage it lost."""
RAW_DESCRIPTION = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="world_command", metavar="ACTION")
    b = sub.add_parser("build", help="train the world's models from scratch into --out",
                       description="Trains the world's generator and classifier from scratch (deterministic for a "
                       "seed; the full recipe measured about 30 minutes in all on a busy shared 2-core machine, one torch thread) and writes them to --out.")
    b.add_argument("--out", required=True, help="output folder (new, empty, or a previous world build to replace)")
    b.add_argument("--quick", action="store_true", help="a few-second build with tiny step counts (a smoke test)")
    b.add_argument("--seed", default=0, help="seed of every random choice (default 0)")
    b.add_argument("--fp16", action="store_true", help="store the Stable Diffusion weights in float16 (half the size; "
                   "load with torch_dtype=float32, bridgedfast's dtype fp32, to compute in float32)")
    b.add_argument("--no-progress", action="store_true", help="no progress bars")


def _seed(text) -> int:
    from . import CLIError

    try:
        value = int(str(text))
    except ValueError:
        raise CLIError(f"--seed must be a non-negative integer, got {text!r}") from None
    if value < 0:
        raise CLIError(f"--seed must be a non-negative integer, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import CLIError

    if args.world_command != "build":
        raise CLIError("choose an action: `bridgedfast world build --out DIR` (see --help)")
    seed = _seed(args.seed)
    from ..world.build import build_world, is_world_build

    out = Path(args.out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not is_world_build(out))):
        raise CLIError(f"--out {args.out!r} exists and is not a previous world build; choose a new folder")
    build_world(out, quick=args.quick, seed=seed, progress=not args.no_progress, half=args.fp16)
    print(f"world: wrote {out / 'sd'} and {out / 'classifier'}")
    return 0
