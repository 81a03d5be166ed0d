"""`filter_store`: scores every image of a synthetic store, keeps each class's best-scored
fraction, and writes them to a new store: the kept images' encoded bytes and metadata copied
unchanged, plus `filter_score`, in the source's order.

Resumable: OUT/filter.json holds the configuration (what decides the kept set) and how many
images are scored; the scores go to OUT/filter-scores.f32 (float32, source order), appended and
flushed batch by batch before the count is advanced, so a crash (kill -9) loses at most the
batch in flight. The kept images are then appended to the store at OUT, which itself resumes
after its last commit. A different configuration against an existing OUT is refused.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..files import atomic_write_json
from ..options import takes_options
from .config import FilterConfig

__all__ = ["FilterReport", "filter_store", "kept_indices", "MANIFEST_NAME", "SCORES_NAME"]

MANIFEST_NAME = "filter.json"
SCORES_NAME = "filter-scores.f32"
FORMAT = 1


@dataclass
class FilterReport:
    images: int                 # images in the source store
    kept: int                   # images in the filtered store
    scored: int                 # images scored by this call (the rest were scored by an interrupted one)
    seconds: float
    images_per_s: float         # scored per second
    out: str = ""
    per_class: dict[str, list[int]] = field(default_factory=dict)  # class -> [kept, total]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return (f"kept {self.kept} of {self.images} images ({self.scored} scored in {self.seconds:.1f} s, "
                f"{self.images_per_s:.1f} images/s)")


def kept_indices(scores: np.ndarray, labels: np.ndarray, keep: float) -> np.ndarray:
    """Source indices (sorted) of each class's round(keep x n) best-scored images (at least one;
    ties go to the earlier image)."""
    kept = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        k = max(1, math.floor(keep * len(members) + 0.5))
        order = np.argsort(-scores[members], kind="stable")
        kept.append(members[order[:k]])
    return np.sort(np.concatenate(kept)) if kept else np.empty(0, np.int64)


class ScoreLog:
    """The scores computed so far: float32 appended to OUT/filter-scores.f32 and made durable
    before `filter.json` advances its count (the file may run ahead of the count after a crash:
    the excess is cut off on reopening)."""

    def __init__(self, out: Path, manifest: dict) -> None:
        self.out, self.manifest = out, manifest
        self.path = out / SCORES_NAME
        self.count = int(manifest.get("scored", 0))
        with open(self.path, "ab") as f:
            f.truncate(4 * self.count)

    def append(self, scores: np.ndarray) -> None:
        with open(self.path, "ab") as f:
            f.write(np.ascontiguousarray(scores, dtype="<f4").tobytes())
            f.flush()
            os.fsync(f.fileno())
        self.count += len(scores)
        self.manifest["scored"] = self.count
        write_manifest(self.out, self.manifest)

    def scores(self) -> np.ndarray:
        return np.fromfile(self.path, dtype="<f4", count=self.count)


def write_manifest(out: Path, manifest: dict) -> None:
    atomic_write_json(out / MANIFEST_NAME, manifest, indent=1, sort_keys=True)


def _source_fingerprint(store: Any) -> str:
    h = hashlib.sha256(repr(list(store.classes)).encode())
    for column in ("label", "data_crc", "meta_crc"):
        h.update(np.ascontiguousarray(store.records[column]).tobytes())
    return h.hexdigest()


def _check_out(out: Path, config: dict) -> dict | None:
    """The existing manifest (None for a fresh OUT); refuses another configuration or a folder
    that holds something else."""
    from ..generate.manifest import check_same_config

    if out.exists() and not out.is_dir():
        raise ValueError(f"output {str(out)!r} exists and is not a folder")
    path = out / MANIFEST_NAME
    if path.is_file():
        try:
            found = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not a readable filter manifest: {exc}") from None
        check_same_config(out, found.get("config", {}), config)
        return found
    if out.is_dir() and any(out.iterdir()):
        from ..generate.sink import existing_store_size

        if existing_store_size(out) == 0:
            return None  # a crash between creating the store and writing the manifest
        raise ValueError(f"output {str(out)!r} is not empty and holds no bridgedfast filter output: choose a new folder")
    return None


@takes_options(FilterConfig)
def filter_store(synthetic: str | Path, out: str | Path, **options: Any) -> FilterReport:
    """Keeps the best-scored `keep` fraction of each class of the store `synthetic` and writes
    them to a new store at `out` (see the module docstring); options: `FilterConfig`."""
    from ..devices import resolve_device
    from ..transfer.data import generated_per_class, open_store
    from .scorers import make_scorer

    t0 = time.perf_counter()
    cfg = FilterConfig(**options).validate()
    src = open_store(synthetic, "synthetic")
    out = Path(out).expanduser()
    if out.exists() and out.resolve() == src.path.resolve():
        raise ValueError(f"output {str(out)!r} is the synthetic store itself: choose a new folder")
    scorer = make_scorer(cfg, src.classes, resolve_device(cfg.device))
    config = {"format": FORMAT, "source": {"fingerprint": _source_fingerprint(src), "images": len(src)},
              **cfg.values(exclude=[n for n, o in FilterConfig.options().items() if o.keyed is False]),
              "scorer": scorer.identity}
    config.pop("clip_model"), config.pop("classifier")  # by content (scorer), not by path
    if cfg.by != "clip":
        config.pop("score_template")
    manifest = _check_out(out, config) or {"config": config, "scored": 0, "source": str(src.path.resolve()),
                                           "source_per_class": generated_per_class(src.path), "status": "scoring"}
    from ..data import ImageStoreWriter

    writer = ImageStoreWriter(out, src.classes, encoding=src.encoding)
    try:
        write_manifest(out, manifest)
        log = ScoreLog(out, manifest)
        before = log.count
        _score(src, scorer, log, cfg)
        scores = log.scores()
        labels = src.labels.numpy()
        kept = kept_indices(scores, labels, cfg.keep)
        _copy(src, kept, scores, writer)
    finally:
        writer.close()
    seconds = time.perf_counter() - t0
    per_class = {name: [int((labels[kept] == c).sum()), int((labels == c).sum())] for c, name in enumerate(src.classes)}
    report = FilterReport(images=len(src), kept=len(kept), scored=log.count - before, seconds=seconds,
                          images_per_s=(log.count - before) / seconds if seconds > 0 else 0.0, out=str(out),
                          per_class=per_class)
    manifest.update(status="complete", report=report.as_dict())
    write_manifest(out, manifest)
    return report


def _score(src: Any, scorer: Any, log: ScoreLog, cfg: FilterConfig) -> None:
    from tqdm.auto import tqdm

    n = len(src)
    labels = src.labels.numpy()
    with tqdm(total=n, initial=log.count, unit="img", desc="filter", disable=not cfg.progress) as bar:
        for start in range(log.count, n, cfg.batch_size):
            stop = min(start + cfg.batch_size, n)
            images = [src.image(i).numpy() for i in range(start, stop)]
            log.append(scorer.scores(images, labels[start:stop]))
            bar.update(stop - start)


def _copy(src: Any, kept: np.ndarray, scores: np.ndarray, writer: Any) -> None:
    """Appends the kept images not yet in the store (bytes and metadata as they are, plus the score)."""
    from ..data.format import ENCODING_NAMES

    records = src.records
    for i in kept[len(writer):].tolist():
        r = records[i]
        meta = {**src.meta(i), "filter_score": float(scores[i])}
        writer.add_encoded(src.encoded(i).numpy().tobytes(), int(r["height"]), int(r["width"]), int(r["label"]), meta,
                           encoding=ENCODING_NAMES[int(r["encoding"])])
