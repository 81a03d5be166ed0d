"""The decode_jpegs op (libjpeg-turbo, cropped and scaled decoding into a packed buffer) against its
reference (torchvision's whole-image decode at scale 1, Pillow's DCT scaling at 1/2-1/8, then the
region sliced out), and the loader's cropped decoding against whole-image decoding."""
from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bridgedfast import ops
from bridgedfast.augment import TrainAugment
from bridgedfast.data import ImageStore, ImageStoreWriter, MixedLoader
from bridgedfast.data.format import StoreCorruptError
from bridgedfast.reference import decode_jpegs_reference

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_loader import photo_like  # noqa: E402

needs_op = pytest.mark.skipif(not ops.decode_jpegs_compiled(),
                              reason="bridgedfast._C was built without libjpeg-turbo (see setup.py)")


def encode(image: np.ndarray, **kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", **{"quality": 90, **kwargs})
    return buf.getvalue()


def batch(jpegs: list[bytes], rng: np.random.Generator, scales=(1,), size=None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One source holding every JPEG, and items with a random region and scale for each (each
    image's size read from its file, or `size` (h, w) for all)."""
    source = torch.frombuffer(bytearray(b"".join(jpegs)), dtype=torch.uint8)
    rows, at, dst = [], 0, 0
    for data in jpegs:
        if size is None:
            with Image.open(io.BytesIO(data)) as img:
                w, h = img.size
        else:
            h, w = size
        s = int(rng.choice(scales))
        h, w = -(-h // s), -(-w // s)
        top, left = int(rng.integers(0, h)), int(rng.integers(0, w))
        rh, rw = int(rng.integers(1, h - top + 1)), int(rng.integers(1, w - left + 1))
        rows.append([0, at, len(data), dst, h, w, s, top, left, rh, rw])
        at, dst = at + len(data), dst + rh * rw * 3 + 5  # a gap between slots: nothing may be written there
    return source, torch.tensor(rows, dtype=torch.int64), dst


def assert_matches_reference(source: torch.Tensor, items: torch.Tensor, **op_options) -> None:
    """The op (with op_options) and its reference on the same items (slots laid out anew, 5 bytes
    apart): the same statuses (all decoded) and the same bytes."""
    sizes = items[:, 9] * items[:, 10] * 3 + 5
    items[:, 3] = torch.cumsum(sizes, 0) - sizes
    ours, ref = torch.zeros(int(sizes.sum()), dtype=torch.uint8), torch.zeros(int(sizes.sum()), dtype=torch.uint8)
    assert ops.decode_jpegs([source], items, ours, threads=2, **op_options).eq(0).all()
    assert decode_jpegs_reference([source], items, ref).eq(0).all()
    assert torch.equal(ours, ref)


@needs_op
@pytest.mark.parametrize("subsampling", [0, 1, 2])  # 4:4:4, 4:2:2, 4:2:0
def test_regions_equal_a_whole_decode_sliced(subsampling):
    rng = np.random.default_rng(subsampling)
    images = [photo_like(int(rng.integers(40, 260)), int(rng.integers(40, 260)), rng) for _ in range(24)]
    images.append(np.repeat(photo_like(70, 90, rng)[..., :1], 3, 2))  # grey pixels in a colour JPEG
    source, items, size = batch([encode(im, subsampling=subsampling) for im in images], rng)
    ours, ref = torch.full((size,), 7, dtype=torch.uint8), torch.full((size,), 7, dtype=torch.uint8)
    status = ops.decode_jpegs([source], items, ours, threads=2)
    assert status.tolist() == decode_jpegs_reference([source], items, ref).tolist() == [0] * len(images)
    assert torch.equal(ours, ref)  # the same pixels, and the gaps between slots untouched


@needs_op
def test_scaled_regions_equal_pillows_dct_scaling_sliced():
    rng = np.random.default_rng(5)
    images = [photo_like(int(rng.integers(64, 300)), int(rng.integers(64, 300)), rng) for _ in range(24)]
    source, items, size = batch([encode(im) for im in images], rng, scales=(1, 2, 4, 8))
    assert set(items[:, 6].tolist()) == {1, 2, 4, 8}
    assert_matches_reference(source, items)


@needs_op
def test_greyscale_jpegs_decode_to_rgb():
    rng = np.random.default_rng(2)
    grey = photo_like(50, 60, rng)[..., 0]
    source, items, size = batch([encode(grey)], rng)
    ours, ref = torch.zeros(size, dtype=torch.uint8), torch.zeros(size, dtype=torch.uint8)
    assert ops.decode_jpegs([source], items, ours).tolist() == [0]
    decode_jpegs_reference([source], items, ref)
    assert torch.equal(ours, ref)


def test_statuses_name_what_failed_and_leave_the_slot_alone():
    rng = np.random.default_rng(3)
    good = encode(photo_like(64, 64, rng))
    cmyk = io.BytesIO()
    Image.fromarray(photo_like(64, 64, rng)).convert("CMYK").save(cmyk, format="JPEG")
    jpegs = [good, good[:300] + b"\x00" * 40, b"not a jpeg at all" * 4, good]
    source, items, size = batch(jpegs, rng, size=(64, 64))
    items[3, 4] += 1  # the index claims another height than the file's
    for fn in (lambda o: ops.decode_jpegs([source], items, o, threads=2), lambda o: decode_jpegs_reference([source], items, o)):
        out = torch.full((size,), 9, dtype=torch.uint8)
        assert fn(out).tolist() == [0, 1, 1, 2]
        first = int(items[0, 9] * items[0, 10] * 3)
        assert out[first:].eq(9).all()  # nothing written for the failed items
    # CMYK: libjpeg does not convert it to RGB (status 1, the loader then decodes it through
    # torchvision); the reference decodes it.
    source, items, size = batch([cmyk.getvalue()], rng)
    if ops.decode_jpegs_compiled():
        assert ops.decode_jpegs([source], items, torch.zeros(size, dtype=torch.uint8)).tolist() == [1]


@pytest.mark.parametrize("column,value", [(0, 1), (1, 10**6), (2, 10**6), (3, -1), (6, 3), (7, 10**4), (9, 0), (10, 10**4)])
def test_items_out_of_range_are_refused_before_anything_is_written(column, value):
    rng = np.random.default_rng(4)
    source, items, size = batch([encode(photo_like(32, 32, rng))], rng)
    items[0, column] = value
    out = torch.full((size,), 9, dtype=torch.uint8)
    with pytest.raises(ValueError, match="decode_jpegs: item 0"):
        ops.decode_jpegs([source], items, out)
    assert out.eq(9).all()
    with pytest.raises(ValueError, match="items must be a CPU int64"):
        ops.decode_jpegs([source], items[:, :10], out)


@pytest.fixture(scope="module")
def mixed_stores(tmp_path_factory):
    """A JPEG store (4:2:0 and 4:4:4, odd sizes, one CMYK) and a raw store."""
    root = tmp_path_factory.mktemp("decode_op")
    with ImageStoreWriter(root / "jpeg", ["a", "b"], encoding="jpeg") as w:
        for i in range(22):
            rng = np.random.default_rng([11, i])
            image = photo_like(int(rng.integers(60, 181)), int(rng.integers(60, 181)), rng)
            w.add_encoded(encode(image, subsampling=2 if i % 3 else 0), *image.shape[:2], i % 2, encoding="jpeg")
        cmyk = io.BytesIO()
        Image.fromarray(photo_like(77, 91, rng)).convert("CMYK").save(cmyk, format="JPEG")
        w.add_encoded(cmyk.getvalue(), 77, 91, 0, encoding="jpeg")
    with ImageStoreWriter(root / "raw", ["a", "b"]) as w:
        for i in range(12):
            w.add(photo_like(50 + i, 70, np.random.default_rng([12, i])), i % 2)
    return ImageStore(root / "jpeg"), ImageStore(root / "raw")


def batches(loader) -> list[torch.Tensor]:
    loader.set_epoch(2)
    return [x for x, _, _ in loader]


@pytest.mark.filterwarnings("ignore:MixedLoader.jpeg_decode=.reduced.")
@pytest.mark.parametrize("jpeg_decode", ["full", "reduced"])
def test_the_loader_decodes_crops_only_with_the_same_result(mixed_stores, monkeypatch, jpeg_decode):
    jpeg, raw = mixed_stores
    augment = TrainAugment(24, scale=(0.05, 1.0))
    kwargs = dict(batch_size=7, seed=4, prefetch=0, workers=2, jpeg_decode=jpeg_decode)
    cropped = MixedLoader(jpeg, raw, augment=augment, **kwargs)
    assert cropped._planned is not None
    ours = batches(cropped)
    # Whole images decoded (an augment that does not draw its crops first), through the op and
    # without it (torchvision / Pillow, one image at a time): the batches must be identical.
    whole = MixedLoader(jpeg, raw, augment=lambda packed, g, out=None: augment(packed, g, out=out), **kwargs)
    assert whole._planned is None
    # Three producer threads, each decoding and augmenting whole batches single-threaded.
    threaded = batches(MixedLoader(jpeg, raw, augment=augment, **{**kwargs, "prefetch": 2}, producers=3))
    assert len(threaded) == len(ours) and all(torch.equal(a, b) for a, b in zip(ours, threaded))
    if jpeg_decode == "full":
        assert all(torch.equal(a, b) for a, b in zip(ours, batches(whole)))
    monkeypatch.setattr(ops, "decode_jpegs_compiled", lambda: False)
    slow = MixedLoader(jpeg, raw, augment=augment, **kwargs)
    assert not slow._decode_op
    assert all(torch.equal(a, b) for a, b in zip(ours, batches(slow)))


def test_a_damaged_jpeg_is_still_named_when_only_its_crop_is_decoded(tmp_path):
    with ImageStoreWriter(tmp_path / "s", ["a"], encoding="jpeg") as w:
        for i in range(3):
            w.add(photo_like(80, 80, np.random.default_rng(i)), 0)
        good = encode(photo_like(80, 80, np.random.default_rng(8)))
        w.add_encoded(good[:220] + b"\x00" * 30, 80, 80, 0, encoding="jpeg")
    loader = MixedLoader(ImageStore(tmp_path / "s"), batch_size=4, augment=TrainAugment(16, scale=(0.9, 1.0)),
                         prefetch=0, shuffle=False)
    with pytest.raises(StoreCorruptError, match="image 3 is damaged: its JPEG does not decode"):
        list(loader)


# -- JPEGs with a restart marker after every MCU: only the MCUs around a region are decoded ---------------
def restarted(data: bytes) -> bytes:
    out = ops.jpeg_add_restarts(data)
    assert out is not None and b"\xff\xdd\x00\x04\x00\x01" in out  # DRI = 1 MCU
    return out


def whole(data: bytes) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_jpeg

    return decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)


@needs_op
def test_adding_restart_markers_is_lossless():
    rng = np.random.default_rng(21)
    cases = [encode(photo_like(67, 93, rng), subsampling=s) for s in (0, 1, 2)]
    cases.append(encode(photo_like(50, 41, rng)[..., 0]))                  # greyscale
    cases.append(encode(photo_like(80, 120, rng), progressive=True))       # progressive -> sequential
    for data in cases:
        assert torch.equal(whole(restarted(data)), whole(data))
    assert ops.jpeg_add_restarts(b"\xff\xd8 not a jpeg") is None


@needs_op
@pytest.mark.parametrize("subsampling", [0, 2])
def test_regions_cut_from_restart_marked_jpegs_equal_a_whole_decode(subsampling):
    rng = np.random.default_rng(30 + subsampling)
    images = [photo_like(int(rng.integers(20, 300)), int(rng.integers(20, 300)), rng) for _ in range(30)]
    images.append(photo_like(40, 50, rng)[..., 0])
    jpegs = [restarted(encode(im, subsampling=subsampling)) for im in images]
    for scales in ((1,), (1, 2, 4, 8)):
        source, items, size = batch(jpegs, rng, scales=scales)
        # regions touching each edge and the whole image too
        items[0, 7:] = torch.tensor([0, 0, items[0, 4], items[0, 5]])
        items[1, 7:] = torch.tensor([items[1, 4] - 1, items[1, 5] - 1, 1, 1])
        assert_matches_reference(source, items)


@needs_op
@pytest.mark.parametrize("subsampling", [0, 1, 2])
def test_the_ops_huffman_decoder_gives_libjpegs_pixels(subsampling):
    """Restart-marked JPEGs: MCUs Huffman-decoded by the op's own decoder (jpeg_entropy.h, forced on
    every image) and by libjpeg's give the bytes of a whole decode sliced, at every scale (where the
    band of MCUs around a region is the whole image, rows above the region are skipped: MCUs
    libjpeg discards)."""
    rng = np.random.default_rng(60 + subsampling)
    images = [photo_like(int(rng.integers(17, 260)), int(rng.integers(17, 260)), rng) for _ in range(24)]
    images.append(photo_like(45, 61, rng)[..., 0])
    images.append(np.full((40, 56, 3), 128, np.uint8))  # flat: end-of-block right after DC
    jpegs = [restarted(encode(im, subsampling=subsampling, quality=int(rng.choice([50, 90, 100]))))
             for im in images]
    for scales in ((1,), (1, 2, 4, 8)):
        source, items, _ = batch(jpegs, rng, scales=scales)
        items[0, 7:] = torch.tensor([0, 0, items[0, 4], items[0, 5]])
        assert_matches_reference(source, items, own_entropy_min_mcus=0)
        assert_matches_reference(source, items, own_entropy=False)


@needs_op
def test_damaged_restart_marked_jpegs_fail_cleanly_or_decode_as_libjpeg_does():
    """Random damage (flipped bits, 0xFF bytes put in, bytes dropped) in restart-marked JPEGs: the
    op never crashes, every status is 0, 1 or 2, and where both decoders decode, they agree."""
    rng = np.random.default_rng(70)
    clean = [restarted(encode(photo_like(int(rng.integers(30, 90)), int(rng.integers(30, 90)), rng),
                              subsampling=int(rng.integers(0, 3)))) for _ in range(6)]
    for trial in range(300):
        data = bytearray(clean[trial % len(clean)])
        h, w = Image.open(io.BytesIO(bytes(data))).size[::-1]
        for _ in range(int(rng.integers(1, 4))):
            at = int(rng.integers(len(data) // 3, len(data) - 2))  # in the entropy-coded data, mostly
            kind = int(rng.integers(0, 3))
            if kind == 0:
                data[at] ^= 1 << int(rng.integers(0, 8))
            elif kind == 1:
                data.insert(at, 0xFF)
            else:
                del data[at]
        source, items, size = batch([bytes(data)], rng, size=(h, w))
        ours, theirs = torch.zeros(size, dtype=torch.uint8), torch.zeros(size, dtype=torch.uint8)
        a = int(ops.decode_jpegs([source], items, ours, own_entropy_min_mcus=0)[0])
        b = int(ops.decode_jpegs([source], items, theirs, own_entropy=False)[0])
        assert a in (0, 1, 2) and b in (0, 1, 2)
        if a == b == 0:
            assert torch.equal(ours, theirs), trial


@needs_op
def test_a_restart_marked_jpeg_with_wrong_markers_is_decoded_as_it_is():
    rng = np.random.default_rng(40)
    data = bytearray(restarted(encode(photo_like(96, 96, rng))))
    at = data.index(b"\xff\xd3")  # the 4th restart marker claims to be the 6th
    data[at + 1] = 0xD5
    source, items, size = batch([bytes(data)], rng, size=(96, 96))
    items[0, 3], items[0, 7:] = 0, torch.tensor([60, 60, 30, 30])  # a region whose MCUs come after the bad marker
    status = ops.decode_jpegs([source], items, torch.zeros(30 * 30 * 3, dtype=torch.uint8))
    assert status.tolist() == [1]  # libjpeg warns about the marker: failed, for the loader's fallback to judge


def test_pack_and_the_writer_add_restart_markers_the_loader_uses(tmp_path):
    rng = np.random.default_rng(50)
    src = tmp_path / "src" / "a"
    src.mkdir(parents=True)
    for i in range(6):
        Image.fromarray(photo_like(int(rng.integers(70, 140)), int(rng.integers(70, 140)), rng)).save(src / f"{i}.jpg", quality=92)
    from bridgedfast.data.pack import pack

    marked = pack(tmp_path / "src", tmp_path / "marked", encoding="jpeg", progress=False)
    plain = pack(tmp_path / "src", tmp_path / "plain", encoding="jpeg", progress=False, restart_markers=False)
    with ImageStoreWriter(tmp_path / "written", ["a"], encoding="jpeg") as w:
        w.add(photo_like(90, 90, rng), 0)
    has = ops.decode_jpegs_compiled()
    assert all((b"\xff\xdd\x00\x04\x00\x01" in marked.encoded(i).numpy().tobytes()) == has for i in range(6))
    assert (b"\xff\xdd\x00\x04\x00\x01" in ImageStore(tmp_path / "written").encoded(0).numpy().tobytes()) == has
    kwargs = dict(batch_size=3, augment=TrainAugment(24, scale=(0.1, 0.5)), prefetch=0, seed=2)
    for a, b in zip(batches(MixedLoader(marked, **kwargs)), batches(MixedLoader(plain, **kwargs))):
        assert torch.equal(a, b)  # same pixels: same batches
