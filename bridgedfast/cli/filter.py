"""`bridgedfast filter`: keep each class's best-scored synthetic images in a new store."""
from __future__ import annotations

import argparse
import json

HELP = "keep each class's best synthetic images (CLIP or classifier score) in a new image store (resumable)"

DESCRIPTION = (
    "Scores every image of the image store SYNTHETIC and writes the round(KEEP x n) best-scored images of each class "
    "(at least one) to the new store OUT: their encoded bytes and metadata copied unchanged, plus the score "
    "(filter_score), in SYNTHETIC's order. --by clip scores the cosine similarity between the CLIP embeddings of the "
    "image and of its class prompt (--score-template) with a local transformers CLIP folder (--clip-model); --by "
    "classifier scores the probability of the image's own class under a model trained with `bridgedfast train` on "
    "the real images (--classifier RUN_DIR). Scores are computed in batches on --device and saved as they come "
    "(OUT/filter-scores.f32, OUT/filter.json): re-running the same command resumes; other options against an "
    "existing OUT are refused."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..filter.config import FilterConfig

    p.add_argument("synthetic", metavar="SYNTHETIC", help="the image store to filter (e.g. from `bridgedfast generate`)")
    p.add_argument("--out", required=True, help="output image store folder (resumed when it exists)")
    FilterConfig.add_arguments(p)
    p.add_argument("--json", action="store_true", help="print the final report as one JSON object")


def run(args: argparse.Namespace) -> int:
    from ..filter import FilterConfig, filter_store
    from ..options import flag_name

    from . import check_output

    cfg = FilterConfig.from_args(args).validate(flag_name)
    check_output(args.out, "--out", folder=True, store_ok=True)  # a store: re-running resumes it
    report = filter_store(args.synthetic, args.out, **cfg.values())
    print(json.dumps(report.as_dict()) if args.json else f"bridgedfast filter: {report} -> {report.out}")
    return 0
