"""`bridgedfast pack SRC DST`: a folder of class sub-folders -> an ImageStore."""
from __future__ import annotations

import argparse
import sys
import time

HELP = "pack a folder of class sub-folders (jpg/png/webp/...) into an image store"
DESCRIPTION = (
    "Pack SRC/<class>/<image files> into a new image store at DST (class = sub-folder name, sorted). "
    "A bad image or a non-image file stops the pack before anything is written at DST, unless "
    "--skip-bad, which skips and lists them."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..data.pack import PackConfig

    p.add_argument("src", metavar="SRC", help="folder with one sub-folder of images per class")
    p.add_argument("dst", metavar="DST", help="the store to create (must not exist)")
    PackConfig.add_arguments(p)


def run(args: argparse.Namespace) -> int:
    from . import check_output
    from ..data.pack import PackConfig, pack_folder
    from ..options import flag_name

    cfg = PackConfig.from_args(args).validate(flag_name)
    check_output(args.dst, "DST", folder=True, store_ok=True)  # an existing DST: pack says it exists
    start = time.perf_counter()
    report = pack_folder(args.src, args.dst, **cfg.values())
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in report.store.path.iterdir() if p.is_file())
    print(
        f"packed {report.images} images in {len(report.classes)} classes into {args.dst} "
        f"({size / 2**20:.1f} MiB, {args.encoding}, {report.images / max(seconds, 1e-9):.0f} images/s)"
    )
    if report.skipped:
        print(f"skipped {len(report.skipped)} file(s):", file=sys.stderr)
        for path, why in report.skipped:
            print(f"  {path}: {why}", file=sys.stderr)
    return 0
