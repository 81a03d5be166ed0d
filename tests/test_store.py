"""ImageStore / ImageStoreWriter: exact round trips, crash safety (kill -9), concurrent reads,
damage detection, and fuzzed index parsing (always a clean StoreError, never a crash)."""
import io
import json
import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from bridgedfast.data import ImageStore, ImageStoreWriter, StoreCorruptError, StoreError, StoreVersionError
from bridgedfast.data import format as fmt

ROOT = Path(__file__).resolve().parents[1]


def make_image(i: int, h: int | None = None, w: int | None = None) -> np.ndarray:
    """A deterministic smooth-ish image (JPEG-friendly) of a size that varies with i."""
    h = h or 5 + (i * 7) % 23
    w = w or 4 + (i * 11) % 29
    rng = np.random.default_rng(i)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([yy * 255 // max(h - 1, 1), xx * 255 // max(w - 1, 1), (yy + xx) * 127 // max(h + w - 2, 1)], -1)
    return np.clip(base + rng.integers(-3, 4, size=(h, w, 3)), 0, 255).astype(np.uint8)


def write_store(path, n=12, classes=("cat", "dog", "eel"), size=None, **kw):
    images = [make_image(i, *(size or (None, None))) for i in range(n)]
    with ImageStoreWriter(path, list(classes), **kw) as w:
        for i, img in enumerate(images):
            w.add(torch.from_numpy(img), i % len(classes), {"i": i, "prompt": f"p{i}"} if i % 4 else None)
    return images


def test_raw_round_trip_exact(tmp_path):
    images = write_store(tmp_path / "s", commit_every=5, shard_bytes=700)  # several shards
    store = ImageStore(tmp_path / "s")
    assert len(store) == 12 and store.classes == ["cat", "dog", "eel"]
    assert len(store.shards) > 1
    assert store.labels.dtype == torch.int64 and store.labels.tolist() == [i % 3 for i in range(12)]
    for i, img in enumerate(images):
        out = store.image(i)
        assert out.dtype == torch.uint8 and out.shape == img.shape
        assert np.array_equal(out.numpy(), img)
        assert store.meta(i) == ({"i": i, "prompt": f"p{i}"} if i % 4 else {})
        assert tuple(store.sizes[i].tolist()) == img.shape[:2]
    assert torch.equal(store[-1][0], torch.from_numpy(images[-1])) and store[-1][1] == 11 % 3
    assert store.verify() == 12
    with pytest.raises(IndexError, match="out of range"):
        store.image(12)


def test_store_is_picklable_by_path_for_worker_processes(tmp_path):
    import pickle

    images = write_store(tmp_path / "s", n=3)
    blob = pickle.dumps(ImageStore(tmp_path / "s"))
    assert len(blob) < 500  # the path, not the pixels
    clone = pickle.loads(blob)
    assert len(clone) == 3 and np.array_equal(clone.image(2).numpy(), images[2])


def test_jpeg_round_trip_matches_pil_decode(tmp_path):
    images = write_store(tmp_path / "s", n=4, encoding="jpeg", quality=95, size=(40, 52))
    store = ImageStore(tmp_path / "s")
    for i, img in enumerate(images):
        out = store.image(i).numpy()
        stored = store.encoded(i).numpy().tobytes()
        assert stored[:2] == b"\xff\xd8"  # a JPEG
        assert np.array_equal(out, np.array(Image.open(io.BytesIO(stored)).convert("RGB")))
        diff = np.abs(out.astype(int) - img.astype(int))
        assert diff.mean() < 3 and diff.max() < 40, (i, diff.mean(), diff.max())


def test_reopen_resumes_and_reports_contents(tmp_path):
    write_store(tmp_path / "s", n=5)
    with ImageStoreWriter(tmp_path / "s", ["cat", "dog", "eel"]) as w:
        assert len(w) == 5 and w.committed == 5
        assert [m.get("i") for m in w.metas()] == [None, 1, 2, 3, None]
        assert w.labels().tolist() == [0, 1, 2, 0, 1]
        w.add_batch(torch.from_numpy(np.stack([make_image(0, 6, 8)] * 2)), [2, 2], [{"i": 5}, {"i": 6}])
        assert len(w) == 7 and [m.get("i") for m in w.metas()][-2:] == [5, 6]
    store = ImageStore(tmp_path / "s")
    assert len(store) == 7 and store.labels.tolist()[-2:] == [2, 2]
    assert np.array_equal(store.image(6).numpy(), make_image(0, 6, 8))
    store.verify()


def test_writer_rejects_bad_arguments(tmp_path):
    write_store(tmp_path / "s", n=2)
    with pytest.raises(ValueError, match="has classes"):
        ImageStoreWriter(tmp_path / "s", ["cat", "dog"])
    with pytest.raises(ValueError, match="encoding must be one of"):
        ImageStoreWriter(tmp_path / "t", ["a"], encoding="png")
    with pytest.raises(ValueError, match="distinct strings"):
        ImageStoreWriter(tmp_path / "t", ["a", "a"])
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "x.jpg").write_bytes(b"x")
    with pytest.raises(StoreError, match="exists and is not an image store"):
        ImageStoreWriter(tmp_path / "photos", ["a"])
    assert [p.name for p in (tmp_path / "photos").iterdir()] == ["x.jpg"]  # left untouched
    with ImageStoreWriter(tmp_path / "s", ["cat", "dog", "eel"]) as w:
        with pytest.raises(ValueError, match="already open by another ImageStoreWriter"):
            ImageStoreWriter(tmp_path / "s", ["cat", "dog", "eel"])
        with pytest.raises(ValueError, match=r"uint8 \[H, W, 3\]"):
            w.add(torch.zeros(4, 4, 3), 0)
        with pytest.raises(ValueError, match=r"uint8 \[H, W, 3\]"):
            w.add(torch.zeros(4, 4, dtype=torch.uint8), 0)
        with pytest.raises(ValueError, match=r"label must be an int in \[0, 3\), got 3"):
            w.add(make_image(0), 3)
        with pytest.raises(ValueError, match="meta must be a dict"):
            w.add(make_image(0), 0, meta=["x"])
        with pytest.raises(ValueError, match="JSON-serialisable"):
            w.add(make_image(0), 0, meta={"x": object()})
        with pytest.raises(ValueError, match="must match"):
            w.add_batch([make_image(0)], [0, 1])
        assert len(w) == 2  # nothing half-added
    assert ImageStore(tmp_path / "s").verify() == 2


def test_reader_sees_committed_prefix_while_writer_appends(tmp_path):
    w = ImageStoreWriter(tmp_path / "s", ["a"], commit_every=10**6, commit_seconds=1e9)
    for i in range(3):
        w.add(make_image(i), 0)
    w.commit()
    for i in range(3, 5):
        w.add(make_image(i), 0)  # written, not committed
    reader = ImageStore(tmp_path / "s")
    assert len(reader) == 3
    assert all(np.array_equal(reader.image(i).numpy(), make_image(i)) for i in range(3))
    w.commit()
    assert len(reader) == 3 and len(reader.refresh()) == 5
    assert np.array_equal(reader.image(4).numpy(), make_image(4))
    w.close()


WRITER_SCRIPT = r"""
import sys, numpy as np
sys.path.insert(0, {tests!r})
from test_store import make_image
from bridgedfast.data import ImageStoreWriter
with ImageStoreWriter({path!r}, ["a", "b"], commit_every=7, commit_seconds=1e9) as w:
    done = {{m["image_index"] for m in w.metas()}}
    for i in range({total}):
        if i not in done:
            w.add(make_image(i), i % 2, {{"image_index": i}})
    print("finished", len(w), flush=True)
"""


def run_writer(path: Path, total: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    script = WRITER_SCRIPT.format(tests=str(ROOT / "tests"), path=str(path), total=total)
    return subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)


def test_kill_9_mid_write_then_resume(tmp_path):
    path, total = tmp_path / "s", 100_000
    proc = run_writer(path, total)
    deadline = time.monotonic() + 60
    committed = 0
    while committed < 50 and time.monotonic() < deadline:
        time.sleep(0.02)
        try:
            reader = ImageStore(path)  # while the writer appends: a consistent committed prefix
        except FileNotFoundError:
            continue
        committed = len(reader)
        if committed:
            assert reader.meta(committed - 1) == {"image_index": committed - 1}
            assert np.array_equal(reader.image(committed - 1).numpy(), make_image(committed - 1))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert committed >= 50, "the writer never committed"

    store = ImageStore(path)
    n = len(store)
    assert n >= committed and n % 7 == 0  # only whole commits survive
    assert store.verify() == n
    assert [store.meta(i)["image_index"] for i in range(n)] == list(range(n))
    for i in (0, n // 2, n - 1):
        assert np.array_equal(store.image(i).numpy(), make_image(i))

    # Resume to a small total: the resumed writer discards the torn tail and continues.
    more = n + 9
    proc = run_writer(path, more)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and f"finished {more}" in out
    store = ImageStore(path)
    assert len(store) == more and store.verify() == more
    assert [store.meta(i)["image_index"] for i in range(more)] == list(range(more))  # no duplicates
    assert np.array_equal(store.image(more - 1).numpy(), make_image(more - 1))
    assert (path / fmt.INDEX_FILE).stat().st_size == fmt.INDEX_HEADER_SIZE + more * fmt.RECORD_SIZE


def flip_byte(file: Path, offset: int) -> None:
    with open(file, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x10]))


def test_verify_names_image_with_flipped_pixel_byte(tmp_path):
    write_store(tmp_path / "s")
    store = ImageStore(tmp_path / "s")
    r = store.records[7]
    flip_byte(tmp_path / "s" / fmt.shard_name(int(r["shard"])), int(r["offset"]) + 5)
    with pytest.raises(StoreCorruptError, match=r"image 7 \(data-00000.bin bytes \d+\.\.\d+\): pixel data checksum"):
        ImageStore(tmp_path / "s").verify()


def test_verify_names_image_with_flipped_meta_byte(tmp_path):
    write_store(tmp_path / "s")
    r = ImageStore(tmp_path / "s").records[5]
    flip_byte(tmp_path / "s" / fmt.META_FILE, int(r["meta_offset"]) + 2)
    with pytest.raises(StoreCorruptError, match="image 5 .*metadata checksum"):
        ImageStore(tmp_path / "s").verify()


def test_store_json_checksum_catches_a_one_byte_class_rename(tmp_path):
    write_store(tmp_path / "s")
    opened = ImageStore(tmp_path / "s")
    header = tmp_path / "s" / fmt.HEADER_FILE
    raw = header.read_bytes()
    assert json.loads(raw)["checksum"] == "crc32:%08x" % zlib.crc32(
        b'{"classes":["cat","dog","eel"],"encoding":"raw","format":"bridgedfast.ImageStore","version":1}')
    header.write_bytes(raw.replace(b'"dog"', b'"dig"'))  # one byte: a valid header naming another class
    with pytest.raises(StoreCorruptError, match="store.json is damaged: its fields do not match its checksum"):
        opened.verify()  # a store opened before the edit: verify() re-reads the header
    with pytest.raises(StoreError, match="store.json is damaged: its fields do not match its checksum"):
        ImageStore(tmp_path / "s")
    header.write_bytes(raw.replace(b'"checksum"', b'"checksuM"'))  # the checksum's own key edited away
    with pytest.raises(StoreError, match=r"store.json is damaged: unknown field\(s\) \['checksuM'\]"):
        ImageStore(tmp_path / "s")
    # A store written before the checksum existed (exactly the four fields) still opens and verifies.
    legacy = {k: v for k, v in json.loads(raw).items() if k != "checksum"}
    header.write_text(json.dumps(legacy, indent=1))
    assert ImageStore(tmp_path / "s").verify() == 12


def test_verify_checks_jpeg_sizes_against_the_index(tmp_path):
    write_store(tmp_path / "s", n=4, encoding="jpeg", size=(33, 47))
    rewrite_record(tmp_path / "s", 2, height=60000, width=60000)  # signed, in range: opens
    store = ImageStore(tmp_path / "s")
    with pytest.raises(StoreCorruptError, match=r"image 2 \(data-00000.bin bytes \d+\.\.\d+\): its JPEG header says "
                                                r"33x47 \(height x width\), the index says 60000x60000"):
        store.verify()
    with pytest.raises(StoreCorruptError, match="image 2 is damaged: its JPEG header says 33x47"):
        store.image(2)  # refused before the decoder runs
    assert store.image(1).shape == (33, 47, 3)


def test_jpeg_size_reads_the_frame_header_of_every_kind():
    from PIL import Image

    for kw in ({}, {"progressive": True}, {"exif": b"Exif\0\0" + bytes(300)}, {"subsampling": 0}):
        buf = io.BytesIO()
        Image.fromarray(make_image(3, 29, 61)).save(buf, format="JPEG", **kw)
        assert fmt.jpeg_size(buf.getvalue()) == (29, 61)
        assert fmt.jpeg_size(torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)) == (29, 61)
    assert fmt.jpeg_size(b"\x89PNG\r\n\x1a\n" + bytes(40)) is None
    assert fmt.jpeg_size(b"\xff\xd8\xff\xda\x00\x08" + bytes(20)) is None  # scan data before any frame header
    huge = b"\xff\xd8\xff\xc0\x00\x11\x08\xea\x60\xea\x60\x03" + bytes(20)  # claims 60000x60000
    assert fmt.jpeg_size(huge) == (60000, 60000)
    assert "over the limit" in fmt.jpeg_size_problem(huge, 60000, 60000)


def test_checked_reads_verify_each_shard_before_its_first_use(tmp_path):
    import pickle

    write_store(tmp_path / "s", shard_bytes=700)  # several shards
    store = ImageStore(tmp_path / "s")
    r = store.records[7]
    bad_shard = int(r["shard"])
    assert bad_shard > 0 and int(store.records[0]["shard"]) == 0
    flip_byte(tmp_path / "s" / fmt.shard_name(bad_shard), int(r["offset"]) + 5)
    plain = ImageStore(tmp_path / "s")
    assert not np.array_equal(plain.image(7).numpy(), make_image(7))  # unchecked: the flipped byte reaches the reader
    checked = ImageStore(tmp_path / "s", verify_reads=True)
    assert np.array_equal(checked.image(0).numpy(), make_image(0))  # another shard: fine
    for _ in range(2):  # every read of the shard, not only the first
        with pytest.raises(StoreCorruptError, match=rf"1 damaged image\(s\) in {fmt.shard_name(bad_shard)} .*image 7 "
                                                    r"\(.*\): pixel data checksum mismatch"):
            checked.image(int(np.flatnonzero(checked.records["shard"] == bad_shard)[0]))
    with pytest.raises(StoreCorruptError, match="image 7"):
        checked.shards  # what a MixedLoader maps: every shard checked first
    assert pickle.loads(pickle.dumps(checked)).verify_reads is True
    from bridgedfast.data.subsets import StoreSubset

    view = StoreSubset(checked, [7, 0])  # a subset (a volume study's prefix) reads as checked as its store
    assert np.array_equal(view.image(1).numpy(), make_image(0))
    with pytest.raises(StoreCorruptError, match="pixel data checksum mismatch"):
        view.image(0)
    assert pickle.loads(pickle.dumps(view)).verify_reads is True
    assert not StoreSubset(plain, [7]).verify_reads
    flip_byte(tmp_path / "s" / fmt.shard_name(bad_shard), int(r["offset"]) + 5)  # repaired
    flip_byte(tmp_path / "s" / fmt.META_FILE, int(store.records[5]["meta_offset"]) + 2)
    checked = ImageStore(tmp_path / "s", verify_reads=True)
    assert len(checked.shards) == len(store.shards)
    with pytest.raises(StoreCorruptError, match="image 5 is damaged: its metadata in meta.bin fails its checksum"):
        checked.meta(5)


def test_truncated_shard_named_by_verify_and_never_read(tmp_path):
    write_store(tmp_path / "s")
    store = ImageStore(tmp_path / "s")
    last = store.records[-1]
    with open(tmp_path / "s" / fmt.shard_name(0), "r+b") as f:
        f.truncate(int(last["offset"]) + 3)
    damaged = ImageStore(tmp_path / "s")
    with pytest.raises(StoreCorruptError, match="image 11 .*truncated"):
        damaged.verify()
    with pytest.raises(StoreCorruptError, match="image 11 is damaged: data-00000.bin is truncated"):
        damaged.image(11)
    assert np.array_equal(damaged.image(10).numpy(), make_image(10))
    with pytest.raises(StoreCorruptError, match="cannot resume"):
        ImageStoreWriter(tmp_path / "s", ["cat", "dog", "eel"])


def test_damaged_index_record_is_a_clear_error_at_open(tmp_path):
    write_store(tmp_path / "s")
    flip_byte(tmp_path / "s" / fmt.INDEX_FILE, fmt.INDEX_HEADER_SIZE + 3 * fmt.RECORD_SIZE + 2)
    with pytest.raises(StoreError, match="index.bin is damaged"):
        ImageStore(tmp_path / "s")


def rewrite_record(path: Path, i: int, **fields) -> None:
    """Sets fields of committed record i and re-signs it (record, index and COMMIT checksums),
    as a bad writer or a crafted file would: only the range checks can catch it."""
    raw = bytearray((path / fmt.INDEX_FILE).read_bytes())
    count = fmt.parse_commit((path / fmt.COMMIT_FILE).read_bytes()).count
    records = np.frombuffer(raw, dtype=fmt.RECORD_DTYPE, offset=fmt.INDEX_HEADER_SIZE, count=count).copy()
    for name, value in fields.items():
        records[i][name] = value
    records["record_crc"] = fmt.record_crcs(records)
    body = records.tobytes()
    (path / fmt.INDEX_FILE).write_bytes(bytes(raw[: fmt.INDEX_HEADER_SIZE]) + body)
    (path / fmt.COMMIT_FILE).write_bytes(fmt.encode_commit(fmt.Commit(count, zlib.crc32(body))))


@pytest.mark.parametrize(
    "fields, match",
    [
        ({"shard": 10**6}, "record 2 has shard number out of range"),  # would map a million shard files
        ({"shard": 3}, "record 2 has shard number out of range"),
        ({"encoding": 1, "height": 2**31, "width": 2**31}, "record 2 has height\\*width\\*3 out of range"),
    ],
)
def test_signed_but_impossible_record_is_a_clear_error_at_open(tmp_path, fields, match):
    write_store(tmp_path / "s", n=4)
    rewrite_record(tmp_path / "s", 2, **fields)
    with pytest.raises(StoreError, match=match):
        ImageStore(tmp_path / "s")


@pytest.mark.parametrize(
    "damage, error, match",
    [
        (lambda p: (p / "store.json").write_text('{"format": "bridgedfast.ImageStore", "version": 2}'), StoreVersionError, "format version 2"),
        (lambda p: (p / "store.json").write_text("{not json"), StoreError, "store.json is damaged"),
        (lambda p: (p / "store.json").unlink(), StoreError, "header store.json is missing"),
        (lambda p: (p / "COMMIT").write_bytes(b"garbage"), StoreError, "COMMIT is damaged"),
        (lambda p: (p / "index.bin").unlink(), StoreError, "index.bin is missing"),
        (lambda p: flip_byte(p / "index.bin", 8), StoreVersionError, "index.bin has format version"),
        (lambda p: open(p / "index.bin", "r+b").truncate(200), StoreError, "index.bin is truncated"),
    ],
)
def test_damaged_or_foreign_store_gives_clear_error(tmp_path, damage, error, match):
    write_store(tmp_path / "s")
    damage(tmp_path / "s")
    with pytest.raises(error, match=match):
        ImageStore(tmp_path / "s")


def test_missing_and_non_store_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageStore(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="not a directory"):
        ImageStore(tmp_path / "file")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "x.txt").write_text("x")
    with pytest.raises(StoreError, match="not a complete ImageStore"):
        ImageStore(tmp_path / "dir")


# -- fuzzing: random bytes where the index, commit and header go ------------------------------

@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_fuzz_parse_commit_and_index_header(raw):
    for parse in (fmt.parse_commit, fmt.parse_index_header, fmt.parse_header):
        try:
            parse(raw)
        except StoreError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=5 * 64), st.integers(0, 6), st.integers(1, 5))
def test_fuzz_parse_records_with_valid_checksum(raw, count, num_classes):
    # Even records whose checksum matches (the worst case) parse cleanly or raise StoreError.
    try:
        records = fmt.parse_records(raw, count, zlib.crc32(raw[: count * 64]), num_classes)
    except StoreError:
        return
    assert len(records) == count


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_whole_store_never_garbage(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "s"
    images = write_store(path, n=4)
    which = data.draw(st.sampled_from(["index", "commit", "records"]))
    if which == "commit":
        (path / "COMMIT").write_bytes(data.draw(st.binary(max_size=64)))
    elif which == "index":
        (path / "index.bin").write_bytes(data.draw(st.binary(max_size=400)))
    else:  # random records with a matching commit checksum: the reader must still never misread
        raw = data.draw(st.binary(min_size=64, max_size=3 * 64))
        count = len(raw) // 64
        (path / "index.bin").write_bytes(fmt.encode_index_header() + raw)
        (path / "COMMIT").write_bytes(fmt.encode_commit(fmt.Commit(count, zlib.crc32(raw[: count * 64]))))
    try:
        store = ImageStore(path)
    except StoreError:
        return
    for i in range(len(store)):
        try:
            img = store.image(i)
        except StoreError:
            continue
        r = store.records[i]
        assert tuple(img.shape) == (int(r["height"]), int(r["width"]), 3)
    assert len(images) == 4


def test_jpeg_decoders_agree_and_fallback_works(tmp_path, monkeypatch):
    from bridgedfast.data import store as store_module

    write_store(tmp_path / "s", n=3, encoding="jpeg", size=(33, 47))
    store = ImageStore(tmp_path / "s")
    fast = [store.image(i).clone() for i in range(3)]
    monkeypatch.setattr(store_module, "_TORCHVISION_JPEG", [None])  # as without torchvision's decoder
    for i in range(3):
        assert torch.equal(store.image(i), fast[i])


def test_undecodable_jpeg_is_a_store_error(tmp_path):
    write_store(tmp_path / "s", n=2, encoding="jpeg", size=(33, 47))
    r = ImageStore(tmp_path / "s").records[1]
    with open(tmp_path / "s" / "data-00000.bin", "r+b") as f:
        f.seek(int(r["offset"]))
        f.write(b"\0" * 64)  # wipe the JPEG header
    with pytest.raises(StoreCorruptError, match="image 1 is damaged: its JPEG does not decode"):
        ImageStore(tmp_path / "s").image(1)


def test_the_loser_of_two_writers_creating_one_store_gets_a_clear_error(tmp_path, monkeypatch):
    from bridgedfast.data import store as store_module

    path = tmp_path / "s"
    real_create = store_module._create_store
    first = []

    def race(p, classes, encoding, *, fsync):
        # The other writer creates the store (and holds it) after this one saw no store there.
        if not first:
            monkeypatch.setattr(store_module, "_create_store", real_create)
            first.append(ImageStoreWriter(path, classes))
        real_create(p, classes, encoding, fsync=fsync)

    monkeypatch.setattr(store_module, "_create_store", race)
    with pytest.raises(ValueError, match="is already open by another ImageStoreWriter"):
        ImageStoreWriter(path, ["a", "b"])
    first[0].add(make_image(0), 1)
    first[0].close()
    assert len(ImageStore(path)) == 1 and [p.name for p in tmp_path.iterdir()] == ["s"]  # no temporary left
