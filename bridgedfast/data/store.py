"""ImageStore (memory-mapped reader) and ImageStoreWriter (crash-safe appender).

The format is described in `bridgedfast.data.format`. Pixels are never copied into RAM at open:
each shard is memory-mapped and `image(i)` of a raw store is a view into the mapping.
"""
from __future__ import annotations

import array
import errno
import fcntl
import io
import json
import mmap
import os
import shutil
import threading
import time
import uuid
import zlib
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from .format import (
    COMMIT_FILE,
    ENCODING_NAMES,
    ENCODINGS,
    HEADER_FILE,
    INDEX_FILE,
    INDEX_HEADER_SIZE,
    LOCK_FILE,
    META_FILE,
    RECORD_DTYPE,
    RECORD_SIZE,
    Commit,
    StoreCorruptError,
    StoreError,
    encode_commit,
    encode_header,
    encode_index_header,
    jpeg_size_problem,
    parse_commit,
    parse_header,
    parse_index_header,
    parse_records,
    record_crcs,
    shard_name,
)

__all__ = ["ImageStore", "ImageStoreWriter"]

PathLike = str | os.PathLike


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise StoreError(f"{path.parent} is not a complete ImageStore: {what} {path.name} is missing") from None


def _map_readonly(path: Path, size: int) -> torch.Tensor:
    """A lazily paged uint8 view of the file's first `size` bytes (private mapping: writes to
    the tensor never reach the file)."""
    if size == 0:
        return torch.empty(0, dtype=torch.uint8)
    with open(path, "rb") as f:
        mapping = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY)
    return torch.frombuffer(mapping, dtype=torch.uint8)


_TORCHVISION_JPEG: list = []  # [decode op or None], probed once


def _torchvision_decoder():
    if not _TORCHVISION_JPEG:
        try:
            import torchvision.io  # noqa: F401  (registers torch.ops.image)

            _TORCHVISION_JPEG.append((torch.ops.image.decode_jpeg, torchvision.io.ImageReadMode.RGB.value))
        except (ImportError, AttributeError, RuntimeError):
            _TORCHVISION_JPEG.append(None)
    return _TORCHVISION_JPEG[0]


def decode_jpeg(data: torch.Tensor) -> torch.Tensor:
    """Decodes JPEG bytes (a 1-D uint8 CPU tensor) to uint8 [H, W, 3] RGB.

    libjpeg-turbo through torchvision's decode op: one C++ call that holds no GIL, so a thread
    pool decodes in parallel, and the same pixels as Pillow (which is the fallback, for builds
    or future versions of torchvision without it, and for files torchvision will not take).
    """
    decoder = _torchvision_decoder()
    if decoder is not None:
        op, rgb = decoder
        try:
            return op(data, rgb, False).permute(1, 2, 0)
        except RuntimeError:
            pass
    from PIL import Image

    with Image.open(io.BytesIO(data.numpy().tobytes())) as img:
        return torch.from_numpy(np.array(img.convert("RGB")))


def encode_jpeg(image: np.ndarray, quality: int, restart_markers: bool = False) -> bytes:
    """Pillow's JPEG of image; with restart_markers, re-encoded losslessly with a restart marker
    after every MCU (`ops.jpeg_add_restarts`, where the decode op is built): the loader then
    decodes only the MCUs around each crop."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image, "RGB").save(buf, format="JPEG", quality=quality)
    if restart_markers:
        from ..ops import jpeg_add_restarts

        return jpeg_add_restarts(buf.getvalue()) or buf.getvalue()
    return buf.getvalue()


def _load_committed(path: Path) -> tuple[dict, Commit, np.ndarray]:
    """Header, commit and committed records of the store at `path`; raises StoreError."""
    header = parse_header(_read(path / HEADER_FILE, "header"))
    commit = parse_commit(_read(path / COMMIT_FILE, "commit record"))
    try:
        with open(path / INDEX_FILE, "rb") as f:
            parse_index_header(f.read(INDEX_HEADER_SIZE))
            raw = f.read(commit.count * RECORD_SIZE)
    except FileNotFoundError:
        raise StoreError(f"{path} is not a complete ImageStore: index {INDEX_FILE} is missing") from None
    records = parse_records(raw, commit.count, commit.index_crc, len(header["classes"]))
    return header, commit, records


def _check_store_dir(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"image store {str(path)!r} does not exist")
    if not path.is_dir():
        raise StoreError(f"{str(path)!r} is not an image store (not a directory)")


class ImageStore:
    """Read access to an image store: `len(store)`, `.classes`, `.labels`, `.image(i)`,
    `.meta(i)`, `.verify()`. Only the committed prefix is visible; `refresh()` picks up images
    a concurrent writer has committed since.

    Opening checks the header (its checksum), the COMMIT record, the committed index records
    (their joint CRC32 and every field's range) and that the shards hold the committed bytes.
    Reads are zero-copy and do not checksum the pixels, unless `verify_reads=True`: then each
    image's index record is checked at open, each shard's images (CRC32, JPEG frame sizes) before
    the shard's first use (`image`, `encoded` or `shards`, which a MixedLoader takes when it is
    made) and each metadata read against its CRC32; a damaged shard raises StoreCorruptError."""

    def __init__(self, path: PathLike, *, verify_reads: bool = False) -> None:
        self.path = Path(path)
        self.verify_reads = bool(verify_reads)
        self._verify_lock = threading.Lock()
        _check_store_dir(self.path)
        self._load()

    def _load(self) -> None:
        header, commit, records = _load_committed(self.path)
        self.classes: list[str] = list(header["classes"])
        self.encoding: str = header["encoding"]
        self._records = records
        self._count = commit.count
        ends = records["offset"] + records["nbytes"]
        num_shards = int(records["shard"].max()) + 1 if len(records) else 0
        self._shards: list[torch.Tensor] = []
        self._shard_need: list[int] = []
        for s in range(num_shards):
            need = int(ends[records["shard"] == s].max(initial=0))
            file = self.path / shard_name(s)
            have = file.stat().st_size if file.exists() else 0
            # A truncated shard maps only what exists; the images past it fail loudly, never SIGBUS.
            self._shards.append(_map_readonly(file, min(need, have)))
            self._shard_need.append(need)
        meta_end = int((records["meta_offset"] + records["meta_len"]).max(initial=0))
        meta_file = self.path / META_FILE
        meta_have = meta_file.stat().st_size if meta_file.exists() else 0
        self._meta = _map_readonly(meta_file, min(meta_end, meta_have)).numpy() if meta_end else np.empty(0, np.uint8)
        self.labels: torch.Tensor = torch.from_numpy(records["label"].astype(np.int64))
        self._verified = [False] * num_shards
        if self.verify_reads:
            bad = np.flatnonzero(record_crcs(records) != records["record_crc"])
            if len(bad):
                raise StoreCorruptError(f"{self.path}: image {int(bad[0])}: its index record fails its checksum "
                                        f"({len(bad)} such record(s))")

    def __getstate__(self) -> dict:
        # Worker processes (spawn) reopen the store by path instead of copying its mapped bytes.
        return {"path": str(self.path), "verify_reads": self.verify_reads}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], verify_reads=state.get("verify_reads", False))

    def refresh(self) -> "ImageStore":
        """Re-reads the commit record: images committed by a writer since opening become visible."""
        self._load()
        return self

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"ImageStore({str(self.path)!r}, images={len(self)}, classes={len(self.classes)}, encoding={self.encoding!r})"

    def _check_index(self, i: int) -> int:
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
            raise TypeError(f"image index must be an int, got {type(i).__name__}")
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"image index {i} out of range for a store of {n} images")
        return int(i) % n

    @property
    def records(self) -> np.ndarray:
        """The committed index records (numpy structured array, RECORD_DTYPE); read-only use."""
        return self._records

    @property
    def sizes(self) -> torch.Tensor:
        """int64 [N, 2]: (height, width) of every image."""
        return torch.from_numpy(np.stack([self._records["height"], self._records["width"]], 1).astype(np.int64))

    @property
    def shards(self) -> list[torch.Tensor]:
        """The memory-mapped shard files as flat uint8 tensors (what the gather op reads); with
        verify_reads, every shard is verified first."""
        for shard in range(len(self._shards)):
            self._verify_shard(shard)
        return self._shards

    def _verify_shard(self, shard: int) -> None:
        """With verify_reads: checks every image of `shard` once (see `_damage`)."""
        if not self.verify_reads or self._verified[shard]:
            return
        with self._verify_lock:
            if self._verified[shard]:
                return
            damaged = []
            for i in np.flatnonzero(self._records["shard"] == shard):
                why = self._damage(int(i))
                if why is not None:
                    damaged.append(why)
            if damaged:
                raise StoreCorruptError(f"{self.path}: {len(damaged)} damaged image(s) in {shard_name(shard)} "
                                        f"(checked before its first read): " + "; ".join(damaged[:10]))
            self._verified[shard] = True

    def _damage(self, i: int) -> str | None:
        """What is wrong with image i's stored bytes (truncated, checksum, JPEG frame size), or None."""
        r = self._records[i]
        shard, offset, nbytes = int(r["shard"]), int(r["offset"]), int(r["nbytes"])
        where = f"{shard_name(shard)} bytes {offset}..{offset + nbytes}"
        if offset + nbytes > self._shards[shard].numel():
            return f"image {i} ({where}): the shard is truncated at {self._shards[shard].numel()} bytes"
        data = self._shards[shard][offset : offset + nbytes]
        if zlib.crc32(data.numpy()) != int(r["data_crc"]):
            return f"image {i} ({where}): pixel data checksum mismatch"
        if int(r["encoding"]) == ENCODINGS["jpeg"]:
            why = jpeg_size_problem(data, int(r["height"]), int(r["width"]))
            if why is not None:
                return f"image {i} ({where}): {why}"
        return None

    def encoded(self, i: int) -> torch.Tensor:
        """The stored bytes of image i (raw pixels or JPEG) as a uint8 view into the mapping."""
        i = self._check_index(i)
        r = self._records[i]
        shard, offset, nbytes = int(r["shard"]), int(r["offset"]), int(r["nbytes"])
        self._verify_shard(shard)
        if offset + nbytes > self._shards[shard].numel():
            raise StoreCorruptError(
                f"image {i} is damaged: {shard_name(shard)} is truncated (needs bytes up to {offset + nbytes}, "
                f"file has {self._shards[shard].numel()})"
            )
        return self._shards[shard][offset : offset + nbytes]

    def image(self, i: int) -> torch.Tensor:
        """Image i as uint8 [H, W, 3] (RGB). Raw stores return a view into the memory map."""
        i = self._check_index(i)
        r = self._records[i]
        h, w = int(r["height"]), int(r["width"])
        data = self.encoded(i)
        if int(r["encoding"]) == ENCODINGS["raw"]:
            return data.view(h, w, 3)
        why = jpeg_size_problem(data, h, w)  # before the decoder allocates what the header claims
        if why is not None:
            raise StoreCorruptError(f"image {i} is damaged: {why}")
        try:
            pixels = decode_jpeg(data)
        except Exception as exc:  # Pillow raises several kinds for a broken file
            raise StoreCorruptError(f"image {i} is damaged: its JPEG does not decode ({exc})") from None
        if tuple(pixels.shape) != (h, w, 3):
            raise StoreCorruptError(f"image {i} is damaged: JPEG decodes to {tuple(pixels.shape)}, index says {(h, w, 3)}")
        return pixels

    def label(self, i: int) -> int:
        return int(self._records[self._check_index(i)]["label"])

    def meta(self, i: int) -> dict:
        """Image i's JSON metadata ({} if none)."""
        i = self._check_index(i)
        r = self._records[i]
        start, length = int(r["meta_offset"]), int(r["meta_len"])
        if length == 0:
            return {}
        if start + length > len(self._meta):
            raise StoreCorruptError(f"image {i} is damaged: {META_FILE} is truncated")
        raw = self._meta[start : start + length].tobytes()
        if self.verify_reads and zlib.crc32(raw) != int(r["meta_crc"]):
            raise StoreCorruptError(f"image {i} is damaged: its metadata in {META_FILE} fails its checksum")
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise StoreCorruptError(f"image {i} is damaged: its metadata in {META_FILE} is not valid JSON") from None

    def metas(self) -> Iterator[dict]:
        for i in range(len(self)):
            yield self.meta(i)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.image(i), self.label(i)

    def verify(self, *, progress: bool = False) -> int:
        """Checks the header (re-read: its checksum), every committed image's bytes, metadata and
        index record against their CRC32s, and every JPEG's frame size against the index.

        Returns the number of images checked; raises StoreCorruptError naming the damaged
        images (index, shard file and byte range) otherwise.
        """
        try:
            parse_header(_read(self.path / HEADER_FILE, "header"))
        except StoreError as exc:
            raise StoreCorruptError(f"{self.path}: {exc}") from None
        damaged: list[str] = []
        bad_records = np.flatnonzero(record_crcs(self._records) != self._records["record_crc"])
        for i in bad_records[:10]:
            damaged.append(f"image {i}: its index record fails its checksum")
        iterator: Any = range(len(self))
        if progress:
            from tqdm import tqdm

            iterator = tqdm(iterator, desc="verify", unit="img")
        for i in iterator:
            if len(damaged) >= 10:
                break
            why = self._damage(i)
            if why is not None:
                damaged.append(why)
                continue
            r = self._records[i]
            start, length = int(r["meta_offset"]), int(r["meta_len"])
            if start + length > len(self._meta):
                damaged.append(f"image {i}: {META_FILE} is truncated")
            elif length and zlib.crc32(self._meta[start : start + length]) != int(r["meta_crc"]):
                damaged.append(f"image {i} ({META_FILE} bytes {start}..{start + length}): metadata checksum mismatch")
        if damaged:
            more = " (and possibly more)" if len(damaged) >= 10 else ""
            raise StoreCorruptError(f"{self.path}: {len(damaged)} damaged image(s){more}: " + "; ".join(damaged))
        return len(self)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _as_hwc_uint8(image: Any, what: str) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    elif not isinstance(image, np.ndarray):
        from PIL import Image

        if isinstance(image, Image.Image):
            image = np.asarray(image.convert("RGB"))
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"{what} must be a uint8 [H, W, 3] RGB image, got {getattr(image, 'dtype', type(image))} "
            f"{tuple(getattr(image, 'shape', ()))}"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{what} is empty: shape {image.shape}")
    return np.ascontiguousarray(image)


def _create_store(path: Path, classes: list[str], encoding: str, *, fsync: bool) -> None:
    """An empty store at `path`, made under a temporary name and renamed into place."""
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".{path.name}.creating-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        (tmp / HEADER_FILE).write_bytes(encode_header(classes, encoding))
        (tmp / INDEX_FILE).write_bytes(encode_index_header())
        (tmp / META_FILE).write_bytes(b"")
        (tmp / COMMIT_FILE).write_bytes(encode_commit(Commit(0, zlib.crc32(b""))))
        if fsync:
            for name in (HEADER_FILE, INDEX_FILE, META_FILE, COMMIT_FILE):
                with open(tmp / name, "rb+") as f:
                    os.fsync(f.fileno())
            _fsync_dir(tmp)
        try:
            os.rename(tmp, path)  # atomic; replaces an empty directory
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another writer created it first: open theirs
            return
        if fsync:
            _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_writer_args(classes: list[str], encoding: str, quality: int, commit_every: int, shard_bytes: int) -> None:
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {sorted(ENCODINGS)}, got {encoding!r}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    if not classes or not all(isinstance(c, str) for c in classes) or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be a non-empty list of distinct strings, got {classes!r}")
    if commit_every < 1 or shard_bytes < 1:
        raise ValueError(f"commit_every and shard_bytes must be >= 1, got {commit_every} and {shard_bytes}")


def _discard_uncommitted(path: Path, shard: int, shard_pos: int, meta_pos: int) -> None:
    """Checks the committed bytes are all there and removes shards begun after the last commit."""
    for name, need in ((shard_name(shard), shard_pos), (META_FILE, meta_pos)):
        have = (path / name).stat().st_size if (path / name).exists() else 0
        if have < need:
            raise StoreCorruptError(
                f"cannot resume {str(path)!r}: {name} holds {have} bytes but the committed images need {need}"
            )
    for f in path.glob("data-*.bin"):
        try:
            number = int(f.stem.split("-", 1)[1])
        except ValueError:
            continue
        if number > shard:
            f.unlink()


class ImageStoreWriter:
    """Appends images to a store, committing atomically every `commit_every` images or
    `commit_seconds` seconds (checked on each add) and on `commit()`/`close()`.

    A crash (even kill -9) loses at most the uncommitted tail; reopening the same path resumes
    after the last commit (the tail is discarded). `len(writer)` counts every image in the
    store, `writer.metas()` iterates their metadata: how a resuming producer learns what is
    already there. One writer at a time (a lock file); readers may open the store meanwhile.
    """

    def __init__(
        self,
        path: PathLike,
        classes: Sequence[str],
        *,
        encoding: str = "raw",
        quality: int = 95,
        commit_every: int = 1000,
        commit_seconds: float = 5.0,
        shard_bytes: int = 1 << 30,
        fsync: bool = True,
        restart_markers: bool = True,
    ) -> None:
        classes = list(classes)
        _check_writer_args(classes, encoding, quality, commit_every, shard_bytes)
        self.path = Path(path)
        self.classes = classes
        self.encoding = encoding
        self.quality = quality
        self.restart_markers = restart_markers  # for add()'s JPEGs: see encode_jpeg
        self.commit_every = commit_every
        self.commit_seconds = commit_seconds
        self.shard_bytes = shard_bytes
        self._fsync = fsync
        self._closed = True
        if not self.path.exists() or (self.path.is_dir() and not any(self.path.iterdir())):
            _create_store(self.path, self.classes, self.encoding, fsync=self._fsync)
        _check_store_dir(self.path)
        if not (self.path / HEADER_FILE).exists():
            raise StoreError(f"{str(self.path)!r} exists and is not an image store (no {HEADER_FILE}); choose a new path")
        self._lock_fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise ValueError(f"image store {str(self.path)!r} is already open by another ImageStoreWriter") from None
        try:
            self._open_existing()
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._closed = False

    def _open_existing(self) -> None:
        header, commit, records = _load_committed(self.path)
        if header["classes"] != self.classes:
            raise ValueError(
                f"image store {str(self.path)!r} has classes {header['classes']!r}, not the given {self.classes!r}"
            )
        # Compact growable columns: a resuming producer may hold 100k+ images.
        self._labels = array.array("q", records["label"].astype(np.int64).tobytes())
        self._meta_offsets = array.array("q", records["meta_offset"].astype(np.int64).tobytes())
        self._meta_lens = array.array("q", records["meta_len"].astype(np.int64).tobytes())
        self._count = commit.count
        self._committed = commit.count
        self._index_crc = commit.index_crc
        # Discard the uncommitted tail a crash may have left, then append after the commit.
        if len(records):
            last = records[-1]
            self._shard = int(last["shard"])
            self._shard_pos = int(last["offset"] + last["nbytes"])
            self._meta_pos = int((records["meta_offset"] + records["meta_len"]).max())
        else:
            self._shard, self._shard_pos, self._meta_pos = 0, 0, 0
        _discard_uncommitted(self.path, self._shard, self._shard_pos, self._meta_pos)
        self._index_f = open(self.path / INDEX_FILE, "r+b")
        self._index_f.truncate(INDEX_HEADER_SIZE + self._count * RECORD_SIZE)
        self._index_f.seek(0, os.SEEK_END)
        self._meta_f = open(self.path / META_FILE, "a+b")
        self._meta_f.truncate(self._meta_pos)
        self._data_f = self._open_shard(self._shard, self._shard_pos)
        self._dirty: set[Any] = set()
        self._last_commit = time.monotonic()

    def _open_shard(self, shard: int, pos: int):
        f = open(self.path / shard_name(shard), "a+b")
        f.truncate(pos)
        return f

    # -- what is already there -------------------------------------------------------------
    def __len__(self) -> int:
        """Images in the store: committed ones plus those added since the last commit."""
        return self._count

    @property
    def committed(self) -> int:
        return self._committed

    def labels(self) -> torch.Tensor:
        """int64 [len(writer)]: every image's label."""
        return torch.tensor(np.frombuffer(self._labels, dtype=np.int64), dtype=torch.int64)

    def metas(self) -> Iterator[dict]:
        """Every image's metadata, in store order ({} where none)."""
        self._meta_f.flush()
        with open(self.path / META_FILE, "rb") as f:
            blob = f.read()
        for start, length in zip(self._meta_offsets, self._meta_lens):
            yield json.loads(blob[start : start + length]) if length else {}

    # -- appending -------------------------------------------------------------------------
    def add(self, image: Any, label: int, meta: dict | None = None) -> int:
        """Appends one uint8 [H, W, 3] RGB image (torch, numpy or PIL); returns its index."""
        pixels = _as_hwc_uint8(image, "image")
        h, w = pixels.shape[:2]
        if self.encoding == "jpeg":
            data = encode_jpeg(pixels, self.quality, self.restart_markers)
            return self.add_encoded(data, h, w, label, meta, encoding="jpeg")
        return self.add_encoded(pixels, h, w, label, meta, encoding="raw")

    def add_batch(self, images: Any, labels: Sequence[int] | torch.Tensor, metas: Sequence[dict | None] | None = None) -> None:
        """Appends images (a uint8 [N, H, W, 3] tensor/array or a sequence of [H, W, 3])."""
        if isinstance(labels, torch.Tensor):
            labels = labels.tolist()
        labels = list(labels)
        if len(images) != len(labels) or (metas is not None and len(metas) != len(labels)):
            raise ValueError(
                f"add_batch: {len(images)} images, {len(labels)} labels and "
                f"{'no' if metas is None else len(metas)} metas must match"
            )
        for k in range(len(labels)):
            self.add(images[k], labels[k], None if metas is None else metas[k])

    def add_encoded(
        self, data: Any, height: int, width: int, label: int, meta: dict | None = None, *, encoding: str = "raw"
    ) -> int:
        """Appends already-encoded bytes (raw HWC pixels or a JPEG of height x width)."""
        if self._closed:
            raise ValueError(f"ImageStoreWriter for {str(self.path)!r} is closed")
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {sorted(ENCODINGS)}, got {encoding!r}")
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= label < len(self.classes):
            raise ValueError(f"label must be an int in [0, {len(self.classes)}), got {label!r}")
        if meta is None:
            meta_bytes = b""
        elif isinstance(meta, dict):
            try:
                meta_bytes = json.dumps(meta, separators=(",", ":"), sort_keys=True).encode("utf-8")
            except (TypeError, ValueError) as exc:
                raise ValueError(f"meta must be JSON-serialisable: {exc}") from None
        else:
            raise ValueError(f"meta must be a dict or None, got {type(meta).__name__}")
        if isinstance(data, torch.Tensor):
            data = data.detach().cpu().numpy()
        if isinstance(data, np.ndarray):
            view = memoryview(np.ascontiguousarray(data).reshape(-1).view(np.uint8))
        else:
            view = memoryview(data).cast("B")
        nbytes = view.nbytes
        if encoding == "raw" and nbytes != height * width * 3:
            raise ValueError(f"raw image of {height}x{width} must have {height * width * 3} bytes, got {nbytes}")
        if self._shard_pos > 0 and self._shard_pos + nbytes > self.shard_bytes:
            self._rotate_shard()
        record = np.zeros(1, dtype=RECORD_DTYPE)
        record["offset"], record["nbytes"], record["shard"] = self._shard_pos, nbytes, self._shard
        record["meta_offset"], record["meta_len"] = self._meta_pos, len(meta_bytes)
        record["height"], record["width"], record["label"] = height, width, label
        record["encoding"], record["channels"] = ENCODINGS[encoding], 3
        record["data_crc"], record["meta_crc"] = zlib.crc32(view), zlib.crc32(meta_bytes)
        record["record_crc"] = zlib.crc32(record.tobytes()[:60])
        raw_record = record.tobytes()
        self._data_f.write(view)
        self._meta_f.write(meta_bytes)
        self._index_f.write(raw_record)
        self._dirty.update((self._data_f, self._meta_f, self._index_f))
        self._index_crc = zlib.crc32(raw_record, self._index_crc)
        self._labels.append(int(label))
        self._meta_offsets.append(self._meta_pos)
        self._meta_lens.append(len(meta_bytes))
        self._shard_pos += nbytes
        self._meta_pos += len(meta_bytes)
        self._count += 1
        if self._count - self._committed >= self.commit_every or time.monotonic() - self._last_commit >= self.commit_seconds:
            self.commit()
        return self._count - 1

    def _rotate_shard(self) -> None:
        self._data_f.flush()
        if self._fsync:
            os.fsync(self._data_f.fileno())
        self._dirty.discard(self._data_f)
        self._data_f.close()
        self._shard += 1
        self._shard_pos = 0
        self._data_f = self._open_shard(self._shard, 0)

    def commit(self) -> None:
        """Makes everything added so far durable: data, metadata and index are flushed and
        fsync'ed, then the COMMIT record is replaced atomically."""
        if self._closed or self._count == self._committed:
            self._last_commit = time.monotonic()
            return
        for f in self._dirty:
            f.flush()
            if self._fsync:
                os.fsync(f.fileno())
        self._dirty.clear()
        tmp = self.path / f"{COMMIT_FILE}.tmp"
        with open(tmp, "wb") as f:
            f.write(encode_commit(Commit(self._count, self._index_crc)))
            f.flush()
            if self._fsync:
                os.fsync(f.fileno())
        os.replace(tmp, self.path / COMMIT_FILE)
        if self._fsync:
            _fsync_dir(self.path)
        self._committed = self._count
        self._last_commit = time.monotonic()

    def close(self) -> None:
        """Commits and releases the store. Safe to call twice."""
        if self._closed:
            return
        try:
            self.commit()
        finally:
            self._closed = True
            for f in (self._data_f, self._meta_f, self._index_f):
                f.close()
            os.close(self._lock_fd)

    def __enter__(self) -> "ImageStoreWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        # Images added before an exception are complete and valid: commit them too.
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            try:
                self.close()
            except Exception:
                pass

    def __repr__(self) -> str:
        return f"ImageStoreWriter({str(self.path)!r}, images={len(self)}, committed={self._committed})"
