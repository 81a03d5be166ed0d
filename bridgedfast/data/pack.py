"""pack: a folder of class sub-folders -> an ImageStore, in parallel, all-or-nothing.

The store is written under a temporary name next to `dst` and renamed into place only when
every image is in, so a failed or interrupted pack never leaves a half-written store; the hidden
folder a killed pack leaves behind is removed by the next pack of the same destination.
"""
from __future__ import annotations

import glob
import io
import json
import os
import shutil
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import ops
from ..options import BOOL, INT, POSITIVE_INT, STR, Config, option, shared, spec, takes_options
from .folders import IMAGE_EXTENSIONS, scan_class_folders
from .format import ENCODINGS, LOCK_FILE
from .store import ImageStore, ImageStoreWriter

__all__ = ["ENCODING", "JPEG_QUALITY", "PackConfig", "PackReport", "pack", "pack_folder"]

# Options every step that writes a store shares (see bridgedfast.options).
ENCODING = spec("raw", STR, "how the store keeps the pixels: raw (fastest to load) or jpeg (smaller)",
                choices=tuple(ENCODINGS))
JPEG_QUALITY = spec(95, INT, "JPEG quality for encoding jpeg", min=1, max=100)


@dataclass
class PackConfig(Config):
    """How `pack` writes a store."""

    max_side: int | None = option(None, POSITIVE_INT, "shrink images so the longer side is at most N pixels")
    encoding: str = shared(ENCODING)
    quality: int = shared(JPEG_QUALITY, surfaces=("cli",))
    workers: int | None = option(None, POSITIVE_INT, "decode threads (default: up to 8, one per core)", surfaces=("cli",))
    restart_markers: bool = option(
        True, BOOL, "lossless re-encoding of JPEGs (encoding jpeg) with a restart marker after every 8-16 px "
        "block: the same pixels in slightly larger files, of which training decodes only the blocks around each "
        "random crop (a whole-image decode is slower); needs bridgedfast's libjpeg-turbo op", surfaces=("cli",))
    skip_bad: bool = option(False, BOOL, "skip unreadable images and non-image files, and list them", surfaces=("cli",))
    progress: bool = option(True, BOOL, "progress bar", flag="--no-progress", surfaces=("cli",), keyed=False)
    shard_bytes: int = option(1 << 30, INT, "bytes per shard file", min=1, surfaces=())


@dataclass
class PackReport:
    store: ImageStore
    classes: list[str]
    images: int
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)


def _scan(src: Path) -> tuple[list[str], list[tuple[Path, int]], list[tuple[Path, str]]]:
    """Class names, (image path, label) in a fixed order, and non-image files found."""
    found = scan_class_folders(src, "source folder")
    if not found.classes:
        raise ValueError(f"source folder {str(src)!r} has no class sub-folders (expected SRC/<class>/<images>)")
    for label, name in enumerate(found.classes):
        if found.count(label) == 0:
            raise ValueError(f"class folder {str(src / name)!r} is empty: it holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    not_images = [(p, f"not an image file (extension {p.suffix or 'none'!r})") for p in found.not_images]
    return found.classes, found.images, not_images


def _load(path: Path, max_side: int | None, encoding: str, quality: int, restart_markers: bool = False
          ) -> tuple[object, int, int, str]:
    """Decodes (fully: truncated files fail here), converts to RGB, shrinks so the longer side
    is at most max_side, and encodes. JPEG sources that need no change keep their pixels (and
    their bytes, unless restart markers are added losslessly)."""
    data, h, w, enc = _load_pixels(path, max_side, encoding, quality)
    if enc == "jpeg" and restart_markers:
        data = ops.jpeg_add_restarts(data) or data
    return data, h, w, enc


def _load_pixels(path: Path, max_side: int | None, encoding: str, quality: int) -> tuple[object, int, int, str]:
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        source_format = img.format
        rgb = img if img.mode == "RGB" else img.convert("RGB")
        w, h = rgb.size
        resized = False
        if max_side is not None and max(w, h) > max_side:
            scale = max_side / max(w, h)
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            rgb = rgb.resize(size, Image.Resampling.BICUBIC)
            w, h = size
            resized = True
        if encoding == "raw":
            return np.asarray(rgb), h, w, "raw"
        if source_format == "JPEG" and not resized and img.mode == "RGB":
            return path.read_bytes(), h, w, "jpeg"
        buf = io.BytesIO()
        rgb.save(buf, format="JPEG", quality=quality)
        return buf.getvalue(), h, w, "jpeg"


def _remove_abandoned(dst: Path) -> list[Path]:
    """Removes the hidden `.DST.packing-*` folders that killed packs of `dst` left behind. A
    pack holds its folder's writer lock (LOCK) until the store is renamed into place, so a
    folder whose lock can be taken belongs to no running pack. Returns the folders removed."""
    import fcntl

    removed = []
    for folder in sorted(dst.parent.glob(f".{glob.escape(dst.name)}.packing-*")):
        if folder.is_symlink() or not folder.is_dir():
            continue
        try:
            fd = os.open(folder / LOCK_FILE, os.O_RDONLY)
        except OSError:
            continue  # no lock file yet: a pack is creating it this instant
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a running pack
        finally:
            os.close(fd)  # (closing releases the lock again)
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _pack_into(tmp: Path, dst: Path, src: Path, classes: list[str], files: list[tuple[Path, int]],
               skipped: list[tuple[str, str]], cfg: PackConfig) -> int:
    """Writes the store at `tmp` and renames it to `dst` while still holding its writer lock."""
    from tqdm import tqdm

    workers = cfg.workers or min(8, os.cpu_count() or 1)
    with ImageStoreWriter(tmp, classes, encoding=cfg.encoding, quality=cfg.quality, commit_every=10**9,
                          commit_seconds=30.0, shard_bytes=cfg.shard_bytes) as writer, \
            ThreadPoolExecutor(workers, thread_name_prefix="bridgedfast-pack") as pool, \
            tqdm(total=len(files), desc=f"pack {src.name}", unit="img", disable=not cfg.progress) as bar:
        window = 4 * workers  # bounded look-ahead: memory stays flat for any dataset size
        load = (cfg.max_side, cfg.encoding, cfg.quality, cfg.restart_markers)
        futures = [pool.submit(_load, p, *load) for p, _ in files[:window]]
        for k, (path, label) in enumerate(files):
            if k + window < len(files):
                futures.append(pool.submit(_load, files[k + window][0], *load))
            try:
                data, h, w, enc = futures[k].result()
                futures[k] = None
            except Exception as exc:  # PIL raises many kinds for a bad file
                futures[k] = None
                why = f"cannot read image: {type(exc).__name__}: {exc}"
                if not cfg.skip_bad:
                    raise ValueError(f"{path}: {why} (use --skip-bad / skip_bad=True to skip bad images)") from None
                skipped.append((str(path), why))
                bar.update(1)
                continue
            writer.add_encoded(data, h, w, label, {"path": str(path.relative_to(src))}, encoding=enc)
            bar.update(1)
        writer.commit()
        count = len(writer)
        report = {"source": str(src.resolve()), "classes": classes, "images": count, "encoding": cfg.encoding,
                  "max_side": cfg.max_side, "quality": cfg.quality,
                  "restart_markers": cfg.restart_markers and cfg.encoding == "jpeg" and ops.decode_jpegs_compiled(),
                  "skipped": [{"path": p, "why": w} for p, w in skipped]}
        (tmp / "pack.json").write_text(json.dumps(report, indent=1) + "\n")
        if dst.exists():
            raise ValueError(f"destination {str(dst)!r} appeared while packing; the new store was not moved there")
        os.rename(tmp, dst)  # the writer's lock is held until after this: see _remove_abandoned
    return count


@takes_options(PackConfig)
def pack_folder(src_dir: str | os.PathLike, dst: str | os.PathLike, **options: Any) -> PackReport:
    """`pack`, returning a PackReport with what was skipped (see `pack`)."""
    cfg = PackConfig(**options).validate()
    src, dst = Path(src_dir), Path(dst)
    if dst.exists():
        raise ValueError(f"destination {str(dst)!r} already exists; pack into a new path")
    classes, files, not_images = _scan(src)
    if not_images and not cfg.skip_bad:
        path, why = not_images[0]
        raise ValueError(f"{path}: {why} (use --skip-bad / skip_bad=True to skip {len(not_images)} such file(s))")
    skipped = [(str(p), why) for p, why in not_images]
    dst.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(dst)
    tmp = dst.parent / f".{dst.name}.packing-{uuid.uuid4().hex[:8]}"
    try:
        count = _pack_into(tmp, dst, src, classes, files, skipped, cfg)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PackReport(ImageStore(dst), classes, count, skipped)


@takes_options(PackConfig)
def pack(src_dir: str | os.PathLike, dst: str | os.PathLike, **options: Any) -> ImageStore:
    """Packs SRC/<class>/<image files> into a new ImageStore at dst (class = sub-folder name,
    sorted; files in sorted order, found recursively; each image's meta holds its source path).

    Options (`PackConfig`): max_side: shrink (bicubic, antialiased) so the longer side is at most
    this; encoding: 'raw' (pixels, fastest to load) or 'jpeg' (quality); workers: decode threads.
    A bad image or a non-image file stops the pack before anything is written at dst, naming the
    file, unless skip_bad, which skips and lists them (warning and dst/pack.json).
    """
    report = pack_folder(src_dir, dst, **options)
    if report.skipped:
        listed = "; ".join(f"{p} ({why})" for p, why in report.skipped[:20])
        warnings.warn(f"pack skipped {len(report.skipped)} file(s): {listed}", RuntimeWarning, stacklevel=2)
    return report.store
