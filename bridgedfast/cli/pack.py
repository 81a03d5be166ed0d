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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", metavar="SRC", help="folder with one sub-folder of images per class")
    p.add_argument("dst", metavar="DST", help="the store to create (must not exist)")
    p.add_argument("--max-side", type=_positive_int, default=None, help="shrink images so the longer side is at most N pixels")
    p.add_argument("--encoding", choices=["raw", "jpeg"], default="raw", help="store pixels (fastest to load) or JPEG (smaller)")
    p.add_argument("--quality", type=_positive_int, default=95, help="JPEG quality for --encoding jpeg (1-100)")
    p.add_argument("--workers", type=_positive_int, default=None, help="decode threads (default: up to 8, one per core)")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images and non-image files, and list them")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..data.pack import pack_folder

    start = time.perf_counter()
    report = pack_folder(
        args.src,
        args.dst,
        max_side=args.max_side,
        encoding=args.encoding,
        quality=args.quality,
        workers=args.workers,
        skip_bad=args.skip_bad,
        progress=not args.no_progress,
    )
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
