"""JPEG decoding for the loader (bridgedfast.data.decode): libjpeg's reduced sizes, the mapping of
crop boxes into them, the reduced-size loader against full-size decoding + torchvision, and
batched nvJPEG on CUDA."""
from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bridgedfast.augment import IMAGENET_MEAN, IMAGENET_STD, TrainAugment
from bridgedfast.data import ImageStore, ImageStoreWriter, MixedLoader
from bridgedfast.data import decode
from bridgedfast.data.format import StoreCorruptError
from bridgedfast.data.sampler import batch_seed

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_loader import photo_like  # noqa: E402  (the benchmark's photo-like images)

HAS_CUDA = torch.cuda.is_available()


def jpeg_bytes(image: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def full_decode(data: bytes) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_jpeg

    return decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)  # [3, H, W]


@pytest.fixture(scope="module")
def photo_store(tmp_path_factory) -> ImageStore:
    """Photo-like JPEGs of 120-200 px: with 32 px crops most images can be decoded at 1/2 or 1/4."""
    path = tmp_path_factory.mktemp("decode") / "store"
    with ImageStoreWriter(path, ["a", "b"], encoding="jpeg", quality=90) as writer:
        for i in range(24):
            rng = np.random.default_rng([7, i])
            h, w = int(rng.integers(120, 201)), int(rng.integers(120, 201))
            writer.add(photo_like(h, w, rng), i % 2)
    return ImageStore(path)


def test_dct_scales_pick_the_largest_scale_that_keeps_the_crop_at_least_the_output():
    bh = np.array([10, 63, 64, 127, 128, 255, 256, 4000, 300])
    bw = np.array([10, 64, 64, 200, 128, 300, 256, 4000, 40])
    # Hand computation for a 32x32 output: s*32 <= min(bh, bw) for s in 1, 2, 4, 8.
    assert decode.dct_scales(bh, bw, 32, 32).tolist() == [1, 1, 2, 2, 4, 4, 8, 8, 1]
    # A non-square output: the height needs s*16, the width s*64.
    assert decode.dct_scales(np.array([64, 64]), np.array([128, 127]), 16, 64).tolist() == [2, 1]


def smooth_image(h: int, w: int, seed: int) -> np.ndarray:
    """Colour fields varying over ~12 px: no detail finer than the coarsest reduced grid."""
    coarse = np.random.default_rng(seed).integers(0, 256, (max(2, h // 12), max(2, w // 12), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC))


@pytest.mark.parametrize("scale", [1, 2, 4, 8])
@pytest.mark.parametrize("size", [(97, 131), (64, 64), (16, 16), (24, 40), (203, 150)])
def test_decode_jpeg_scaled_gives_libjpegs_size_and_the_area_average(scale, size):
    h, w = size
    data = jpeg_bytes(smooth_image(h, w, h * w), quality=95)
    small = decode.decode_jpeg_scaled(data, scale)
    assert small.shape == (-(-h // scale), -(-w // scale), 3)
    assert decode.decode_jpeg_scaled(jpeg_bytes(smooth_image(8, 9, 0)), scale).shape == (-(-8 // scale), -(-9 // scale), 3)
    assert tuple(decode.scaled_sizes(np.array([h]), np.array([w]), np.array([scale]))) == (small.shape[0], small.shape[1])
    # Reduced pixel j covers full-size pixels [j*s, (j+1)*s): it is close to their average, and
    # much closer than to the next block's (what a one-pixel misalignment would give).
    full = full_decode(data).permute(1, 2, 0).double()
    hc, wc = h // scale, w // scale
    blocks = full[: hc * scale, : wc * scale].reshape(hc, scale, wc, scale, 3).mean((1, 3))
    got = torch.from_numpy(small[:hc, :wc].astype(np.float64))
    err = (got - blocks).abs().mean().item()
    assert err < 2.0, err
    if hc > 2:
        assert (got[:-1] - blocks[1:]).abs().mean().item() > 3 * err + 2.0


def test_decode_jpeg_scaled_refuses_what_it_cannot_decode():
    with pytest.raises(ValueError, match="scale"):
        decode.decode_jpeg_scaled(jpeg_bytes(np.zeros((8, 8, 3), np.uint8)), 3)
    with pytest.raises(ValueError, match="does not decode"):
        decode.decode_jpeg_scaled(b"not a jpeg at all", 2)
    png = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(png, format="PNG")
    with pytest.raises(ValueError, match="not a JPEG"):
        decode.decode_jpeg_scaled(png.getvalue(), 2)


def test_snap_boxes_rounds_edges_to_the_reduced_grid_and_maps_them_exactly():
    rng = np.random.default_rng(0)
    for _ in range(300):
        s = int(rng.choice([1, 2, 4, 8]))
        h, w = int(rng.integers(s, 600)), int(rng.integers(s, 600))
        bh, bw = int(rng.integers(min(2 * s, h), h + 1)), int(rng.integers(min(2 * s, w), w + 1))
        top, left = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
        full, small = decode.snap_boxes(np.array([[top, left, bh, bw]]), np.array([s]), np.array([h]), np.array([w]))
        (ft, fl, fh, fw), (st, sl, sh, sw) = full[0].tolist(), small[0].tolist()
        assert 0 <= ft and 0 <= fl and fh >= 1 and fw >= 1 and ft + fh <= h and fl + fw <= w
        assert st + sh <= -(-h // s) and sl + sw <= -(-w // s) and sh >= 1 and sw >= 1
        # Exact: the reduced box is the full-size box divided by s (the far edge may be the image's).
        assert (ft, fl) == (st * s, sl * s)
        assert ft + fh in ((st + sh) * s, h) and fl + fw in ((sl + sw) * s, w)
        if s == 1:
            assert (ft, fl, fh, fw) == (top, left, bh, bw)
        if bh >= 2 * s and bw >= 2 * s:  # each edge moved by at most s/2
            assert abs(ft - top) <= s / 2 and abs(fl - left) <= s / 2
            assert abs(ft + fh - (top + bh)) <= s / 2 and abs(fl + fw - (left + bw)) <= s / 2
    # Hand computation: (top, left, height, width) at scales 4, 4, 2 in 50x50 images.
    full, small = decode.snap_boxes(np.array([[8, 16, 64, 32], [1, 2, 47, 48], [5, 2, 10, 7]]), np.array([4, 4, 2]),
                                    np.array([200, 50, 50]), np.array([200, 50, 50]))
    assert small.tolist() == [[2, 4, 16, 8], [0, 1, 12, 12], [3, 1, 5, 4]]
    assert full.tolist() == [[8, 16, 64, 32], [0, 4, 48, 46], [6, 2, 10, 8]]


def reference_batch(store: ImageStore, index: np.ndarray, boxes: torch.Tensor, flip: torch.Tensor, size: int) -> torch.Tensor:
    """Full-size decoding, then torchvision's resized_crop (antialias) and hflip, in 0-255 levels."""
    from torchvision.transforms.v2 import functional as F

    out = []
    for k, i in enumerate(index.tolist()):
        image = full_decode(store.encoded(i).numpy().tobytes()).float()
        t, l, h, w = boxes[k].tolist()
        crop = F.resized_crop(image, t, l, h, w, [size, size], antialias=True)
        out.append(crop.flip(-1) if bool(flip[k]) else crop)
    return torch.stack(out)


def to_levels(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x.float().cpu() * std + mean) * 255


def loader_and_reference(store: ImageStore, jpeg_decode: str, device: str = "cpu", size: int = 32):
    """The loader's batches beside the reference with the same draws; for reduced decoding the
    reference crops the box rounded to the reduced grid (what the loader crops)."""
    augment = TrainAugment(size, scale=(0.3, 1.0))
    loader = MixedLoader(store, batch_size=8, augment=augment, seed=3, prefetch=0, jpeg_decode=jpeg_decode,
                         device=device, shuffle=True)
    loader.set_epoch(1)
    plan = loader.sampler.plan()
    for b, ((images, targets, _), (_, index)) in enumerate(zip(loader, plan)):
        g = torch.Generator().manual_seed(batch_seed(3, 1, 0, b))
        sizes = store.sizes[torch.from_numpy(index)]
        boxes, flip = augment.draw(sizes[:, 0], sizes[:, 1], g)
        scales = decode.dct_scales(boxes[:, 2].numpy(), boxes[:, 3].numpy(), size, size)
        if jpeg_decode == "reduced":
            boxes = torch.from_numpy(decode.snap_boxes(boxes.numpy(), scales, sizes[:, 0].numpy(), sizes[:, 1].numpy())[0])
        yield images, reference_batch(store, index, boxes, flip, size), scales


def test_full_size_decoding_equals_torchvision_on_the_full_image(photo_store):
    for images, reference, _ in loader_and_reference(photo_store, "full"):
        assert (to_levels(images) - reference).abs().max().item() < 0.3  # the op's float32 tolerance, in levels


def test_reduced_size_decoding_stays_within_the_documented_tolerance(photo_store):
    reduced = 0
    for images, reference, scales in loader_and_reference(photo_store, "reduced"):
        reduced += int((scales > 1).sum())
        diff = (to_levels(images) - reference).abs()
        for d in diff:
            assert d.mean().item() <= decode.REDUCED_TOLERANCE["mean"]
            assert torch.quantile(d.flatten(), 0.99).item() <= decode.REDUCED_TOLERANCE["p99"]
    assert reduced >= 8  # the test exercised reduced decoding, not only full-size fallbacks


def test_reduced_decoding_of_a_raw_store_is_the_plain_augment(tmp_path):
    # Raw images are never "decoded": jpeg_decode="reduced" must not change a raw store's batches.
    path = tmp_path / "raw"
    with ImageStoreWriter(path, ["a"]) as writer:
        for i in range(8):
            writer.add(photo_like(90 + i, 120, np.random.default_rng(i)), 0)
    kwargs = dict(batch_size=4, seed=1, prefetch=0)
    a = [x for x, _, _ in MixedLoader(ImageStore(path), augment=TrainAugment(32), jpeg_decode="reduced", **kwargs)]
    b = [x for x, _, _ in MixedLoader(ImageStore(path), augment=TrainAugment(32), jpeg_decode="full", **kwargs)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_jpeg_decode_is_checked(photo_store):
    with pytest.raises(ValueError, match="jpeg_decode must be one of"):
        MixedLoader(photo_store, batch_size=4, augment=TrainAugment(32), jpeg_decode="fast")
    with pytest.raises(ValueError, match="needs device='cuda'"):
        MixedLoader(photo_store, batch_size=4, augment=TrainAugment(32), jpeg_decode="nvjpeg")
    with pytest.warns(RuntimeWarning, match="decoded at full size"):
        MixedLoader(photo_store, batch_size=4, augment=lambda packed, g: packed, jpeg_decode="reduced")


def test_a_damaged_jpeg_is_named_when_decoded_at_reduced_size(tmp_path):
    path = tmp_path / "store"
    with ImageStoreWriter(path, ["a"], encoding="jpeg") as writer:
        for i in range(4):
            writer.add(photo_like(160, 160, np.random.default_rng(i)), 0)
        good = jpeg_bytes(photo_like(160, 160, np.random.default_rng(9)))
        writer.add_encoded(good[:200] + b"\x00" * 50, 160, 160, 0, encoding="jpeg")  # header intact, data gone
    loader = MixedLoader(ImageStore(path), batch_size=5, augment=TrainAugment(32, scale=(0.9, 1.0)),
                         jpeg_decode="reduced", prefetch=0, shuffle=False)
    with pytest.raises(StoreCorruptError, match="image 4 is damaged"):
        list(loader)


# -- CUDA: batched nvJPEG ------------------------------------------------------------------------------------
@pytest.mark.cuda
def test_nvjpeg_decodes_like_libjpeg_turbo(photo_store):
    datas = [photo_store.encoded(i) for i in range(len(photo_store))]
    images = decode.decode_jpegs_cuda(datas, torch.device("cuda"))
    assert images is not None, "torchvision has no nvJPEG here"
    for data, image in zip(datas, images):
        cpu = full_decode(data.numpy().tobytes()).permute(1, 2, 0)
        assert image.device.type == "cuda" and image.shape == cpu.shape
        # Different IDCT and chroma upsampling: close, not equal.
        assert (image.cpu().float() - cpu.float()).abs().mean().item() < 2.0


@pytest.mark.cuda
def test_cuda_loader_with_nvjpeg_matches_cpu_decoding(photo_store):
    for (images, reference, _) in loader_and_reference(photo_store, "nvjpeg", device="cuda"):
        assert images.device.type == "cuda"
        diff = (to_levels(images) - reference).abs()
        assert diff.mean().item() < 2.0


@pytest.mark.cuda
def test_cuda_loader_mixing_raw_and_jpeg_stores_with_nvjpeg(photo_store, tmp_path):
    path = tmp_path / "raw"
    with ImageStoreWriter(path, ["a", "b"]) as writer:
        for i in range(8):
            writer.add(photo_like(100, 140, np.random.default_rng(100 + i)), i % 2)
    raw = ImageStore(path)
    kwargs = dict(batch_size=8, augment=TrainAugment(32), seed=2, prefetch=0, synthetic_fraction=0.5)
    gpu = [x.cpu() for x, _, _ in MixedLoader(raw, photo_store, device="cuda", jpeg_decode="nvjpeg", **kwargs)]
    cpu = [x for x, _, _ in MixedLoader(raw, photo_store, device="cpu", jpeg_decode="full", **kwargs)]
    assert len(gpu) == len(cpu) > 0
    for a, b in zip(gpu, cpu):
        assert (to_levels(a) - to_levels(b)).abs().mean().item() < 2.0


@pytest.mark.cuda
def test_cuda_loader_names_a_damaged_jpeg(tmp_path):
    path = tmp_path / "store"
    with ImageStoreWriter(path, ["a"], encoding="jpeg") as writer:
        for i in range(3):
            writer.add(photo_like(64, 64, np.random.default_rng(i)), 0)
        writer.add_encoded(b"\xff\xd8\xff" + b"\x00" * 100, 64, 64, 0, encoding="jpeg")
    loader = MixedLoader(ImageStore(path), batch_size=4, augment=TrainAugment(32), device="cuda", prefetch=0,
                         shuffle=False)
    with pytest.raises(StoreCorruptError, match="image 3 is damaged"):
        list(loader)


@pytest.mark.cuda
def test_gpu_resident_cache_of_a_jpeg_store_decoded_by_nvjpeg(photo_store):
    kwargs = dict(batch_size=8, augment=TrainAugment(32), seed=4, prefetch=0)
    cached = MixedLoader(photo_store, device="cuda", cache_on_device=True, jpeg_decode="nvjpeg", **kwargs)
    plain = MixedLoader(photo_store, device="cpu", jpeg_decode="full", **kwargs)
    batches = list(zip(cached, plain))
    assert len(batches) == len(photo_store) // 8
    for (a, ta, _), (b, tb, _) in batches:
        assert torch.equal(ta.cpu(), tb)
        assert (to_levels(a) - to_levels(b)).abs().mean().item() < 2.0
