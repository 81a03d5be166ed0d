"""The on-disk layout of an ImageStore (format version 1). No pickle anywhere.

A store is a directory:

    store.json      header (JSON): magic, format version, class names, default encoding, and
                    the CRC32 of those fields (`header_checksum`; absent in older stores)
    index.bin       append-only: a 64-byte binary header, then one 64-byte little-endian
                    record per image (RECORD_DTYPE)
    meta.bin        append-only: the images' JSON metadata, back to back
    data-00000.bin  append-only shards: raw HWC RGB uint8 pixels or JPEG bytes, back to back
    COMMIT          32 bytes, replaced atomically (write temp + fsync + rename): how many
                    index records are committed and the CRC32 of exactly those records
    LOCK            flock'ed by the one writer

Readers trust only the committed prefix; writers fsync data, metadata and index before the
COMMIT that points at them, so a crash loses at most the uncommitted tail.
"""
from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass

import numpy as np

FORMAT_NAME = "bridgedfast.ImageStore"
FORMAT_VERSION = 1

HEADER_FILE = "store.json"
INDEX_FILE = "index.bin"
META_FILE = "meta.bin"
COMMIT_FILE = "COMMIT"
LOCK_FILE = "LOCK"

INDEX_MAGIC = b"BFSTIDX\x00"
COMMIT_MAGIC = b"BFSTCMT\x00"
INDEX_HEADER_SIZE = 64

ENCODINGS = {"raw": 0, "jpeg": 1}
ENCODING_NAMES = {v: k for k, v in ENCODINGS.items()}

RECORD_DTYPE = np.dtype(
    [
        ("offset", "<u8"),       # byte offset of the image in its shard
        ("nbytes", "<u8"),       # stored bytes (h*w*3 for raw)
        ("meta_offset", "<u8"),  # byte offset of the JSON metadata in meta.bin
        ("meta_len", "<u4"),     # 0 = no metadata
        ("shard", "<u4"),        # shard number: data-{shard:05d}.bin
        ("height", "<u4"),
        ("width", "<u4"),
        ("label", "<i4"),        # class index into the header's class list
        ("encoding", "u1"),      # ENCODINGS
        ("channels", "u1"),      # always 3 (RGB) in version 1
        ("reserved0", "<u2"),
        ("data_crc", "<u4"),     # CRC32 of the stored bytes
        ("meta_crc", "<u4"),     # CRC32 of the metadata bytes
        ("reserved1", "<u4"),
        ("record_crc", "<u4"),   # CRC32 of this record's first 60 bytes
    ]
)
RECORD_SIZE = RECORD_DTYPE.itemsize
assert RECORD_SIZE == 64

_INDEX_HEADER = struct.Struct("<8sII")    # magic, version, record size (then zero padding)
_COMMIT = struct.Struct("<8sIIQI")        # magic, version, reserved, count, index crc
COMMIT_SIZE = _COMMIT.size + 4             # + crc of the above


class StoreError(ValueError):
    """A store that cannot be read: not a store, a different format version, or damaged."""


class StoreVersionError(StoreError):
    """The store was written in a format version this bridgedfast cannot read."""


class StoreCorruptError(StoreError):
    """Stored bytes do not match their checksums (or are missing): names what is damaged."""


def shard_name(shard: int) -> str:
    return f"data-{shard:05d}.bin"


def encode_index_header() -> bytes:
    return _INDEX_HEADER.pack(INDEX_MAGIC, FORMAT_VERSION, RECORD_SIZE).ljust(INDEX_HEADER_SIZE, b"\0")


def parse_index_header(raw: bytes) -> None:
    """Checks index.bin's first 64 bytes; raises StoreError/StoreVersionError."""
    if len(raw) < INDEX_HEADER_SIZE:
        raise StoreError(f"index.bin is truncated: {len(raw)} header bytes, expected {INDEX_HEADER_SIZE}")
    magic, version, record_size = _INDEX_HEADER.unpack_from(raw)
    if magic != INDEX_MAGIC:
        raise StoreError(f"index.bin is not an ImageStore index (magic {magic!r})")
    if version != FORMAT_VERSION:
        raise StoreVersionError(f"index.bin has format version {version}; this bridgedfast reads version {FORMAT_VERSION}")
    if record_size != RECORD_SIZE:
        raise StoreError(f"index.bin records are {record_size} bytes, expected {RECORD_SIZE}")


@dataclass(frozen=True)
class Commit:
    count: int
    index_crc: int


def encode_commit(commit: Commit) -> bytes:
    body = _COMMIT.pack(COMMIT_MAGIC, FORMAT_VERSION, 0, commit.count, commit.index_crc)
    return body + struct.pack("<I", zlib.crc32(body))


def parse_commit(raw: bytes) -> Commit:
    """Parses the COMMIT record; raises StoreError/StoreVersionError on anything unexpected."""
    if len(raw) != COMMIT_SIZE:
        raise StoreError(f"COMMIT is damaged: {len(raw)} bytes, expected {COMMIT_SIZE}")
    magic, version, _, count, index_crc = _COMMIT.unpack_from(raw)
    (crc,) = struct.unpack_from("<I", raw, _COMMIT.size)
    if magic != COMMIT_MAGIC:
        raise StoreError(f"COMMIT is damaged (magic {magic!r})")
    if crc != zlib.crc32(raw[: _COMMIT.size]):
        raise StoreError("COMMIT is damaged: checksum mismatch")
    if version != FORMAT_VERSION:
        raise StoreVersionError(f"COMMIT has format version {version}; this bridgedfast reads version {FORMAT_VERSION}")
    return Commit(count=int(count), index_crc=int(index_crc))


HEADER_KEYS = {"format", "version", "classes", "encoding"}


def header_checksum(header: dict) -> str:
    """'crc32:XXXXXXXX' of the header's fields other than 'checksum', in canonical JSON (sorted
    keys, no spaces): what store.json's 'checksum' holds."""
    body = {k: v for k, v in header.items() if k != "checksum"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    return f"crc32:{zlib.crc32(canonical):08x}"


def encode_header(classes: list[str], encoding: str) -> bytes:
    header = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "classes": list(classes), "encoding": encoding}
    header["checksum"] = header_checksum(header)
    return (json.dumps(header, indent=1) + "\n").encode()


def parse_header(raw: bytes) -> dict:
    """Parses store.json: returns {'classes': [...], 'encoding': ...}; raises StoreError.

    The checksum (stores written since it was added) covers every field, so an edited class
    name is caught; a header without one (an older store) must hold exactly the four fields."""
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"store.json is damaged: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise StoreError(f"store.json does not describe an ImageStore (format {header.get('format') if isinstance(header, dict) else None!r})")
    version = header.get("version")
    if version != FORMAT_VERSION:
        raise StoreVersionError(f"store has format version {version!r}; this bridgedfast reads version {FORMAT_VERSION}")
    unknown = sorted(set(header) - HEADER_KEYS - {"checksum"})
    if unknown:
        raise StoreError(f"store.json is damaged: unknown field(s) {unknown}")
    if "checksum" in header and header["checksum"] != header_checksum(header):
        raise StoreError(f"store.json is damaged: its fields do not match its checksum {header['checksum']!r} "
                         f"(computed {header_checksum(header)!r}); was it edited?")
    classes = header.get("classes")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes) or len(set(classes)) != len(classes):
        raise StoreError("store.json is damaged: 'classes' must be a list of distinct strings")
    if header.get("encoding") not in ENCODINGS:
        raise StoreError(f"store.json is damaged: unknown encoding {header.get('encoding')!r}")
    return header


# The largest JPEG (in pixels) a store may hold and the readers decode: 256 Mi pixels, 768 MiB
# as RGB; `pack` (Pillow's decompression-bomb limit, 179 M pixels) never writes a larger one.
MAX_JPEG_PIXELS = 1 << 28

_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame (not DHT, JPG, DAC)
_NO_LENGTH_MARKERS = frozenset([0x01, *range(0xD0, 0xD9)])      # TEM, RSTn, SOI


def jpeg_size(data) -> tuple[int, int] | None:
    """(height, width) from a JPEG's start-of-frame header, read from its first segments without
    decoding anything (`data`: bytes, a memoryview or a 1-D uint8 array/tensor); None when no
    frame header comes before the image data (not a JPEG, or damaged)."""
    if hasattr(data, "numpy"):
        data = data.numpy()
    buf = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
    n = len(buf)
    if n < 4 or buf[0] != 0xFF or buf[1] != 0xD8:
        return None
    pos = 2
    while pos + 4 <= n:
        if buf[pos] != 0xFF:
            return None
        marker = buf[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _NO_LENGTH_MARKERS:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            return None
        length = (buf[pos + 2] << 8) | buf[pos + 3]
        if length < 2:
            return None
        if marker in _SOF_MARKERS:
            if length < 7 or pos + 9 > n:
                return None
            height = (buf[pos + 5] << 8) | buf[pos + 6]
            width = (buf[pos + 7] << 8) | buf[pos + 8]
            return height, width
        pos += 2 + length
    return None


def jpeg_size_problem(data, height: int, width: int) -> str | None:
    """Why a stored JPEG cannot be decoded into a buffer of the index's height x width (its header
    says another size, has none, or is over MAX_JPEG_PIXELS), or None when it can."""
    size = jpeg_size(data)
    if size is None:
        return "its JPEG does not decode (no frame header before the image data)"
    if size[0] * size[1] > MAX_JPEG_PIXELS:
        return f"its JPEG header says {size[0]}x{size[1]} pixels, over the limit of {MAX_JPEG_PIXELS} pixels"
    if size != (int(height), int(width)):
        return f"its JPEG header says {size[0]}x{size[1]} (height x width), the index says {int(height)}x{int(width)}"
    return None


def record_crcs(records: np.ndarray) -> np.ndarray:
    """CRC32 of each record's first 60 bytes (what `record_crc` must hold)."""
    raw = records.view(np.uint8).reshape(-1, RECORD_SIZE)
    return np.fromiter((zlib.crc32(row[:60].tobytes()) for row in raw), dtype=np.uint32, count=len(records))


def parse_records(raw: bytes | memoryview, count: int, index_crc: int, num_classes: int) -> np.ndarray:
    """The committed records from index.bin's bytes after the header; raises StoreError.

    Checks the CRC of the whole prefix, then every field's range, so a damaged index gives a
    clear error instead of garbage pixels or out-of-bounds reads.
    """
    need = count * RECORD_SIZE
    if len(raw) < need:
        raise StoreError(f"index.bin is truncated: {count} images committed but only {len(raw) // RECORD_SIZE} records present")
    prefix = memoryview(raw)[:need]
    if zlib.crc32(prefix) != index_crc:
        raise StoreError("index.bin is damaged: the committed records do not match the checksum in COMMIT")
    records = np.frombuffer(prefix, dtype=RECORD_DTYPE, count=count).copy()
    bad = None
    if count:
        checks = [
            (~np.isin(records["encoding"], list(ENCODINGS.values())), "unknown encoding"),
            (records["channels"] != 3, "channels != 3"),
            ((records["height"] == 0) | (records["width"] == 0), "zero height or width"),
            ((records["label"] < 0) | (records["label"] >= num_classes), f"label outside [0, {num_classes})"),
            (
                (records["encoding"] == ENCODINGS["raw"])
                & (records["nbytes"] != records["height"].astype(np.uint64) * records["width"].astype(np.uint64) * 3),
                "raw size != height*width*3",
            ),
            (
                records["height"].astype(np.uint64) * records["width"].astype(np.uint64) > np.uint64((1 << 40) // 3),
                "height*width*3 out of range",
            ),
            # A writer starts a shard only for an image that goes into it: record i is in shard <= i.
            (records["shard"].astype(np.int64) > np.arange(count, dtype=np.int64), "shard number out of range"),
            (records["offset"] > np.uint64(1 << 62), "offset out of range"),
            (records["nbytes"] > np.uint64(1 << 40), "size out of range"),
            (records["meta_offset"] > np.uint64(1 << 62), "metadata offset out of range"),
        ]
        for mask, why in checks:
            if mask.any():
                bad = (int(np.flatnonzero(mask)[0]), why)
                break
    if bad is not None:
        raise StoreError(f"index.bin is damaged: record {bad[0]} has {bad[1]}")
    return records
