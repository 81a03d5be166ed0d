"""bridgedfast.ops.resized_crop / resize_center_crop against torchvision.transforms.v2 on float
images (crop + bilinear resize with and without antialias, hflip, normalize)."""
import math
import warnings

import pytest
import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as F

from bridgedfast import _ext, ops
from bridgedfast.augment import TrainAugment
from bridgedfast.packed import PackedImages
from bridgedfast.reference import resized_crop_reference
from conftest import DEVICES

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def torchvision_resized_crop(img_hwc, box, size, flip, mean, std, antialias):
    """The contract's definition, with torchvision's own functions on the float CHW image."""
    x = F.resized_crop(img_hwc.permute(2, 0, 1).float(), *[int(v) for v in box], list(size), antialias=antialias)
    if flip:
        x = F.hflip(x)
    x = x / 255.0
    return F.normalize(x, list(mean), list(std)) if mean is not None else x


def random_case(seed, n, max_side=48):
    """n (image, box) pairs with odd sizes and the boxes that break resamplers: 1-pixel, full
    image, single rows/columns, extreme aspect ratios, and ordinary random ones."""
    g = torch.Generator().manual_seed(seed)
    images, boxes = [], []
    for i in range(n):
        h, w = (int(v) for v in torch.randint(1, max_side + 1, (2,), generator=g))
        if i % 11 == 0:
            h, w = 1 + 2 * h, max(1, w // 8)  # tall and thin
        images.append(torch.randint(0, 256, (h, w, 3), dtype=torch.uint8, generator=g))
        kind = i % 6
        if kind == 0:
            box = (0, 0, h, w)
        elif kind == 1:
            box = (int(torch.randint(0, h, (1,), generator=g)), int(torch.randint(0, w, (1,), generator=g)), 1, 1)
        elif kind == 2:
            box = (int(torch.randint(0, h, (1,), generator=g)), 0, 1, w)
        else:
            bh = int(torch.randint(1, h + 1, (1,), generator=g))
            bw = int(torch.randint(1, w + 1, (1,), generator=g))
            top = int(torch.randint(0, h - bh + 1, (1,), generator=g))
            left = int(torch.randint(0, w - bw + 1, (1,), generator=g))
            box = (top, left, bh, bw)
        boxes.append(box)
    flip = torch.rand(n, generator=g) < 0.5
    return images, torch.tensor(boxes, dtype=torch.int64), flip


def reference_batch(images, boxes, size, flip, mean, std, antialias):
    return torch.stack(
        [torchvision_resized_crop(img, b, size, bool(f), mean, std, antialias) for img, b, f in zip(images, boxes, flip)]
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("antialias", [True, False])
@pytest.mark.parametrize("size", [(17, 23), (40, 9), (1, 1)])
def test_matches_torchvision_on_random_boxes(device, antialias, size):
    images, boxes, flip = random_case(seed=hash(size) % 1000, n=120)
    out = ops.resized_crop([im.to(device) for im in images], boxes, size, flip=flip, mean=MEAN, std=STD, antialias=antialias)
    assert out.shape == (120, 3, *size) and out.dtype == torch.float32 and out.device.type == device
    ref = reference_batch(images, boxes, size, flip, MEAN, STD, antialias)
    assert (out.cpu() - ref).abs().max().item() <= 1e-3


@pytest.mark.parametrize("antialias", [True, False])
def test_strong_downscale_and_upscale(antialias):
    g = torch.Generator().manual_seed(5)
    big = torch.randint(0, 256, (301, 263, 3), dtype=torch.uint8, generator=g)
    small = torch.randint(0, 256, (3, 2, 3), dtype=torch.uint8, generator=g)
    images = [big, big, big, small, small]
    boxes = torch.tensor([[0, 0, 301, 263], [5, 7, 290, 11], [100, 3, 2, 250], [0, 0, 3, 2], [1, 1, 2, 1]])
    flip = torch.tensor([False, True, False, True, False])
    for size in [(7, 5), (64, 61)]:
        out = ops.resized_crop(images, boxes, size, flip=flip, antialias=antialias)
        ref = reference_batch(images, boxes, size, flip, None, None, antialias)
        assert (out - ref).abs().max().item() <= 1e-3 / 255 * 4


def test_identity_and_hand_computed_values():
    img = torch.arange(2 * 4 * 3, dtype=torch.uint8).view(2, 4, 3) * 10
    # Same size, no normalisation: the crop itself (x * (1/255) may differ from x / 255 by an ulp).
    out = ops.resized_crop([img], [[0, 1, 2, 3]], (2, 3))
    torch.testing.assert_close(out[0], img[:, 1:].permute(2, 0, 1).float() / 255, rtol=0, atol=1e-7)
    # Flip mirrors the columns.
    out = ops.resized_crop([img], [[0, 0, 2, 4]], (2, 4), flip=[True])
    torch.testing.assert_close(out[0], img.flip(1).permute(2, 0, 1).float() / 255, rtol=0, atol=1e-7)
    # 2x1 -> 1x1 box average (antialias: both rows weigh 1/2), normalised by hand.
    out = ops.resized_crop([img], [[0, 2, 2, 1]], 1, mean=[0.5, 0.5, 0.5], std=[0.25, 0.5, 1.0])
    avg = (img[0, 2].float() + img[1, 2].float()) / 2 / 255
    expected = (avg - 0.5) / torch.tensor([0.25, 0.5, 1.0])
    torch.testing.assert_close(out[0, :, 0, 0], expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_input_forms_agree(device):
    g = torch.Generator().manual_seed(2)
    batch = torch.randint(0, 256, (6, 31, 27, 3), dtype=torch.uint8, generator=g).to(device)
    boxes = torch.tensor([[0, 0, 31, 27], [3, 4, 10, 20], [30, 26, 1, 1], [1, 0, 29, 5], [0, 7, 12, 12], [5, 5, 5, 5]])
    flip = torch.tensor([True, False, True, True, False, False])
    from_batch = ops.resized_crop(batch, boxes, (12, 14), flip=flip)
    from_list = ops.resized_crop(list(batch.unbind(0)), boxes, (12, 14), flip=flip)
    from_packed = ops.resized_crop(PackedImages.from_images(list(batch.unbind(0))), boxes, (12, 14), flip=flip)
    torch.testing.assert_close(from_batch, from_list, rtol=0, atol=0)
    torch.testing.assert_close(from_batch, from_packed, rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("out_dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_dtypes_and_layouts(device, out_dtype, channels_last):
    images, boxes, flip = random_case(seed=9, n=40)
    out = ops.resized_crop(
        [im.to(device) for im in images], boxes, (15, 18), flip=flip, mean=MEAN, std=STD,
        out_dtype=out_dtype, channels_last=channels_last,
    )
    assert out.dtype == out_dtype and out.shape == (40, 3, 15, 18)
    assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    ref = reference_batch(images, boxes, (15, 18), flip, MEAN, STD, True).double()
    # Within twice the error of rounding the float32 reference to the dtype (plus fp32 slack).
    rounding = (ref.float().to(out_dtype).double() - ref).abs().max().item()
    assert (out.cpu().double() - ref).abs().max().item() <= 2 * rounding + 1e-3


def test_eval_transform_matches_torchvision():
    g = torch.Generator().manual_seed(4)
    sizes = [(40, 40), (33, 57), (61, 29), (28, 28), (45, 31)]
    images = [torch.randint(0, 256, (h, w, 3), dtype=torch.uint8, generator=g) for h, w in sizes]
    for resize, size, antialias in [(28, 24, True), (32, (24, 20), False), (24, 24, True)]:
        pipeline = T.Compose([T.Resize(resize, antialias=antialias), T.CenterCrop(size), T.Normalize(MEAN, STD)])
        ref = torch.stack([pipeline(im.permute(2, 0, 1).float() / 255) for im in images])
        out = ops.resize_center_crop(images, size, resize, mean=MEAN, std=STD, antialias=antialias)
        assert out.shape == ref.shape
        assert (out - ref).abs().max().item() <= 1e-3


def test_reference_twin_matches_torchvision():
    images, boxes, flip = random_case(seed=12, n=30)
    packed = PackedImages.from_images(images)
    for antialias in (True, False):
        out = resized_crop_reference(packed.data, packed.index, boxes, flip, [11, 13], list(MEAN), list(STD), antialias,
                                     torch.float32, False)
        ref = reference_batch(images, boxes, (11, 13), flip, MEAN, STD, antialias)
        assert (out - ref).abs().max().item() <= 1e-5


def test_falls_back_to_reference_without_kernel(monkeypatch):
    images, boxes, flip = random_case(seed=13, n=8)
    fast = ops.resized_crop(images, boxes, (9, 10), flip=flip, mean=MEAN, std=STD)
    monkeypatch.setattr(_ext, "has_kernel", lambda op, device_type: False)
    _ext.warn_fallback.cache_clear()
    with pytest.warns(RuntimeWarning, match="resized_crop.*reference"):
        slow = ops.resized_crop(images, boxes, (9, 10), flip=flip, mean=MEAN, std=STD)
    assert (fast - slow).abs().max().item() <= 1e-4
    _ext.warn_fallback.cache_clear()


def opcheck_args(device):
    images, boxes, flip = random_case(seed=14, n=5, max_side=12)
    packed = PackedImages.from_images(images).to(device)
    return packed.data, packed.index, boxes, flip


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("out_dtype, channels_last, with_resize", [(torch.float32, False, False), (torch.bfloat16, True, True)])
def test_opcheck(device, out_dtype, channels_last, with_resize):
    data, index, boxes, flip = opcheck_args(device)
    resize = None
    if with_resize:
        boxes = torch.stack([torch.zeros_like(index[:, 1]), torch.zeros_like(index[:, 1]), index[:, 1], index[:, 2]], 1)
        resize = torch.tensor([[9, 8, 1, 0]] * len(index))
    args = (data, index, boxes, flip, [7, 8], list(MEAN), list(STD), True, out_dtype, channels_last, resize)
    torch.library.opcheck(torch.ops.bridgedfast.resized_crop.default, args)


def test_under_torch_compile():
    data, index, boxes, flip = opcheck_args("cpu")

    def fn(d):
        return torch.ops.bridgedfast.resized_crop.default(d, index, boxes, flip, [6, 6], [0.0] * 3, [1.0] * 3, True,
                                                          torch.float32, False, None) * 2

    compiled = torch.compile(fn, fullgraph=True)
    torch.testing.assert_close(compiled(data), fn(data))


@pytest.mark.cuda
def test_cuda_matches_cpu():
    images, boxes, flip = random_case(seed=15, n=64, max_side=96)
    for antialias in (True, False):
        for channels_last in (False, True):
            kw = dict(flip=flip, mean=MEAN, std=STD, antialias=antialias, channels_last=channels_last)
            cpu = ops.resized_crop(images, boxes, (33, 29), **kw)
            gpu = ops.resized_crop([im.cuda() for im in images], boxes, (33, 29), **kw)
            assert gpu.is_cuda and gpu.is_contiguous(memory_format=torch.channels_last) == channels_last
            assert (gpu.cpu() - cpu).abs().max().item() <= 1e-4


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n, size", [(1, (600_000, 2)), (70_000, (2, 3))])
def test_more_rows_or_images_than_one_grid_dimension(device, n, size):
    # CUDA grid.y and grid.z stop at 65535: 600k rows are 75k row blocks, 70k images 70k slices.
    g = torch.Generator().manual_seed(6)
    images = torch.randint(0, 256, (n, 3, 4, 3), dtype=torch.uint8, generator=g)
    boxes = torch.tensor([[0, 1, 3, 3]]).expand(n, 4)
    flip = torch.arange(n) % 2 == 1
    want = ops.resized_crop(images, boxes, size, flip=flip, mean=MEAN, std=STD)
    got = ops.resized_crop(images.to(device), boxes, size, flip=flip, mean=MEAN, std=STD)
    assert (got.cpu() - want).abs().max().item() <= 1e-4
    if n == 1:
        ref = reference_batch(list(images), boxes, size, flip, MEAN, STD, True)
        assert (got.cpu() - ref).abs().max().item() <= 1e-3


def test_cpu_output_bits_do_not_depend_on_thread_count():
    # Few images are split into row bands by thread count; batches must not change by a bit.
    g = torch.Generator().manual_seed(0)
    sizes = torch.randint(40, 300, (6, 2), generator=g).tolist()
    images = [torch.randint(0, 256, (h, w, 3), dtype=torch.uint8, generator=g) for h, w in sizes]
    augment = TrainAugment(64)
    before = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2, 3, 8):
            torch.set_num_threads(threads)
            outs.append(augment(images, torch.Generator().manual_seed(1)))
    finally:
        torch.set_num_threads(before)
    for out in outs[1:]:
        assert torch.equal(out, outs[0])


@pytest.mark.cuda
def test_cuda_augment_only_enqueues():
    # The per-image table goes up through pinned memory: the call never waits for earlier work.
    images, boxes, flip = random_case(seed=8, n=12)
    packed = PackedImages.from_images(images).to("cuda")
    ops.resized_crop(packed, boxes, (20, 24), flip=flip, mean=MEAN, std=STD)  # warm-up
    torch.cuda.synchronize()
    stream = torch.cuda.current_stream()
    torch.cuda._sleep(2_000_000_000)  # about a second of GPU clock cycles
    out = ops.resized_crop(packed, boxes, (20, 24), flip=flip, mean=MEAN, std=STD)
    assert not stream.query(), "resized_crop waited for earlier GPU work"
    want = ops.resized_crop(images, boxes, (20, 24), flip=flip, mean=MEAN, std=STD)
    assert (out.cpu() - want).abs().max().item() <= 1e-4


IMG = [torch.zeros(10, 12, 3, dtype=torch.uint8), torch.zeros(8, 8, 3, dtype=torch.uint8)]
BOXES = [[0, 0, 10, 12], [0, 0, 8, 8]]


@pytest.mark.parametrize(
    "images, boxes, kwargs, match",
    [
        ([IMG[0].float(), IMG[1]], BOXES, {}, "image 0 must be a uint8 \\[H, W, 3\\]"),
        ([IMG[0], torch.zeros(8, 8, 4, dtype=torch.uint8)], BOXES, {}, "image 1 must be a uint8 \\[H, W, 3\\]"),
        (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), BOXES, {}, "uint8 \\[N, H, W, 3\\]"),
        (torch.zeros(2, 8, 8, 3), BOXES, {}, "uint8 \\[N, H, W, 3\\]"),
        ("not images", BOXES, {}, "images must be PackedImages"),
        (IMG, [[0, 0, 10, 12], [1, 0, 8, 8]], {}, "box 1 \\(top=1, left=0, height=8, width=8\\) is not inside image 1 of size 8x8"),
        (IMG, [[0, 0, 10, 13], [0, 0, 8, 8]], {}, "box 0 .* not inside image 0 of size 10x12"),
        (IMG, [[-1, 0, 5, 5], [0, 0, 8, 8]], {}, "box 0 \\(top=-1"),
        (IMG, [[0, 0, 0, 5], [0, 0, 8, 8]], {}, "box 0 .*height=0"),
        (IMG, [[0, 0, 10, 12]], {}, "boxes must have shape \\[2, 4\\], got \\[1, 4\\]"),
        (IMG, [[0.0, 0.0, 10.0, 12.0], [0.0, 0.0, 8.0, 8.0]], {}, "boxes must be integers"),
        (IMG, BOXES, {"flip": [True]}, "flip must be a bool \\[N\\] tensor with N = 2"),
        (IMG, BOXES, {"size": 0}, "size must be a positive int"),
        (IMG, BOXES, {"size": (4, 4, 4)}, "size must be a positive int"),
        (IMG, BOXES, {"mean": [0.5, 0.5]}, "mean and std must have 3 values"),
        (IMG, BOXES, {"mean": MEAN, "std": [0.2, 0.0, 0.2]}, "std must be non-zero"),
        (IMG, BOXES, {"out_dtype": torch.float64}, "out_dtype must be"),
    ],
)
def test_rejects_bad_inputs(images, boxes, kwargs, match):
    kwargs = dict(kwargs)
    size = kwargs.pop("size", 5)
    with pytest.raises(ValueError, match=match):
        ops.resized_crop(images, boxes, size, **kwargs)


def test_rejects_images_on_two_devices_and_bad_packing():
    with pytest.raises(ValueError, match="does not fit the 300-byte buffer"):
        ops.resized_crop(PackedImages(torch.zeros(300, dtype=torch.uint8), torch.tensor([[0, 11, 10]])), [[0, 0, 1, 1]], 4)
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="one device"):
            ops.resized_crop([IMG[0], IMG[1].cuda()], BOXES, 4)


def test_eval_rejects_resize_smaller_than_crop():
    with pytest.raises(ValueError, match="resize must be an int >= the crop size"):
        ops.resize_center_crop(IMG, 24, 20)
    with pytest.raises(ValueError, match="resize must be an int"):
        ops.resize_center_crop(IMG, 24, 25.5)


def test_op_level_checks_name_the_problem():
    packed = PackedImages.from_images(IMG)
    flip = torch.zeros(2, dtype=torch.bool)
    op = torch.ops.bridgedfast.resized_crop.default
    base = dict(size=[4, 4], mean=[0.0] * 3, std=[1.0] * 3, antialias=True, out_dtype=torch.float32, channels_last=False)

    def call(data=packed.data, index=packed.index, boxes=torch.tensor(BOXES), flip=flip, **over):
        kw = {**base, **over}
        return op(data, index, boxes, flip, kw["size"], kw["mean"], kw["std"], kw["antialias"], kw["out_dtype"],
                  kw["channels_last"], kw.get("resize"))

    with pytest.raises(RuntimeError, match="box 1 \\(top 0, left 2, height 8, width 8\\) is not inside its 8x8 image"):
        call(boxes=torch.tensor([[0, 0, 10, 12], [0, 2, 8, 8]]))
    with pytest.raises(RuntimeError, match="data must be a contiguous 1-D uint8"):
        call(data=packed.data.float())
    with pytest.raises(RuntimeError, match="boxes must be a CPU int64 \\[N, 4\\]"):
        call(boxes=torch.tensor(BOXES, dtype=torch.int32))
    with pytest.raises(RuntimeError, match="flip must be a CPU bool \\[N\\]"):
        call(flip=torch.zeros(3, dtype=torch.bool))
    with pytest.raises(RuntimeError, match="image 1 .* does not fit"):
        call(index=torch.tensor([[0, 10, 12], [400, 8, 8]]))
    with pytest.raises(RuntimeError, match="resize 0 .* does not contain a 4x4 window"):
        call(resize=torch.tensor([[4, 4, 1, 0], [4, 4, 0, 0]]))
    with pytest.raises(RuntimeError, match="unsupported floating dtype"):
        call(out_dtype=torch.float64)
    with pytest.raises(RuntimeError, match="std must be non-zero"):
        call(std=[1.0, 0.0, 1.0])


BIG = 2**63 - 1  # a sum with anything positive wraps around in int64


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "boxes, resize, match",
    [
        ([[BIG, 0, 1, 8], [0, 0, 8, 8]], None, "box 0 .* is not inside its 10x12 image"),
        ([[0, 0, 10, 12], [0, BIG, 8, 1]], None, "box 1 .* is not inside its 8x8 image"),
        ([[1, 0, BIG, 8], [0, 0, 8, 8]], None, "box 0 .* is not inside its 10x12 image"),
        (BOXES, [[4, 4, BIG, 0], [4, 4, 0, 0]], "resize 0 .* does not contain a 4x4 window"),
    ],
)
def test_op_level_checks_do_not_overflow(device, boxes, resize, match):
    # Huge int64 boxes must be refused, not wrap past the bounds check into out-of-range reads.
    packed = PackedImages.from_images(IMG).to(device)
    op = torch.ops.bridgedfast.resized_crop.default
    resize_t = None if resize is None else torch.tensor(resize)
    with pytest.raises(RuntimeError, match=match):
        op(packed.data, packed.index, torch.tensor(boxes), torch.zeros(2, dtype=torch.bool), [4, 4], [0.0] * 3,
           [1.0] * 3, True, torch.float32, False, resize_t)


@pytest.mark.parametrize("boxes", [[[BIG, 0, 1, 8], [0, 0, 8, 8]], [[0, 0, 10, 12], [0, BIG, 8, 1]],
                                   [[1, 0, BIG, 8], [0, 0, 8, 8]]])
def test_python_checks_do_not_overflow(boxes):
    with pytest.raises(ValueError, match="is not inside image"):
        ops.resized_crop(IMG, boxes, 4)


def test_packing_check_does_not_overflow():
    data = torch.zeros(300, dtype=torch.uint8)
    for index in ([[0, 2**62, 2**62]], [[BIG, 1, 1]], [[0, 3, 2**62]]):
        with pytest.raises(ValueError, match="does not fit the 300-byte buffer"):
            ops.as_packed(PackedImages(data, torch.tensor(index)))


def test_tap_weights_follow_torch_antialias_definition():
    # A 1-D check of the shared weight math through the op: a 1-row image resized 9 -> 4 with
    # antialias equals torch's _upsample_bilinear2d_aa on the same row.
    row = torch.tensor([[[0, 255, 30, 200, 90, 10, 250, 0, 128]]], dtype=torch.uint8).permute(0, 2, 1).expand(1, 9, 3)
    out = ops.resized_crop([row.contiguous()], [[0, 0, 1, 9]], (1, 4))
    ref = torch._C._nn._upsample_bilinear2d_aa(row.permute(2, 0, 1)[None].float(), [1, 4], False) / 255
    assert (out - ref).abs().max().item() <= 1e-6
    assert math.isclose(out.sum().item(), ref.sum().item(), rel_tol=1e-5)
    warnings.simplefilter("default")


# ---------------------------------------------------------------- the out= variant
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("out_dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_out_variant_is_the_functional_op_written_in_place(device, out_dtype, channels_last):
    images, boxes, flip = random_case(seed=21, n=30)
    kw = dict(flip=flip, mean=MEAN, std=STD, out_dtype=out_dtype, channels_last=channels_last)
    images = [im.to(device) for im in images]
    expected = ops.resized_crop(images, boxes, (13, 16), **kw)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = torch.full((30, 3, 13, 16), float("nan"), dtype=out_dtype, device=device).contiguous(memory_format=fmt)
    got = ops.resized_crop(images, boxes, (13, 16), out=out, **kw)
    assert got is out
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    # The result still equals torchvision's, and a second write over old data changes nothing.
    ref = reference_batch([im.cpu() for im in images], boxes, (13, 16), flip, MEAN, STD, True).double()
    rounding = (ref.float().to(out_dtype).double() - ref).abs().max().item()
    assert (out.cpu().double() - ref).abs().max().item() <= 2 * rounding + 1e-3
    ops.resized_crop(images, boxes, (13, 16), out=out, **kw)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_eval_out_variant_matches(device):
    g = torch.Generator().manual_seed(22)
    images = [torch.randint(0, 256, (h, w, 3), dtype=torch.uint8, generator=g).to(device) for h, w in [(40, 33), (29, 61)]]
    expected = ops.resize_center_crop(images, 24, 28, mean=MEAN, std=STD)
    out = torch.empty(2, 3, 24, 24, device=device)
    assert ops.resize_center_crop(images, 24, 28, mean=MEAN, std=STD, out=out) is out
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_out_variant_through_the_reference_fallback(monkeypatch):
    images, boxes, flip = random_case(seed=23, n=6)
    fast = ops.resized_crop(images, boxes, (9, 10), flip=flip, mean=MEAN, std=STD)
    monkeypatch.setattr(_ext, "has_kernel", lambda op, device_type: False)
    _ext.warn_fallback.cache_clear()
    out = torch.empty(6, 3, 9, 10)
    with pytest.warns(RuntimeWarning, match="resized_crop.*reference"):
        got = ops.resized_crop(images, boxes, (9, 10), flip=flip, mean=MEAN, std=STD, out=out)
    assert got is out and (out - fast).abs().max().item() <= 1e-4
    _ext.warn_fallback.cache_clear()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("out_dtype, channels_last, with_resize", [(torch.float32, False, False), (torch.float16, True, True)])
def test_opcheck_out(device, out_dtype, channels_last, with_resize):
    data, index, boxes, flip = opcheck_args(device)
    resize = None
    if with_resize:
        boxes = torch.stack([torch.zeros_like(index[:, 1]), torch.zeros_like(index[:, 1]), index[:, 1], index[:, 2]], 1)
        resize = torch.tensor([[9, 8, 1, 0]] * len(index))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = torch.empty(len(index), 3, 7, 8, dtype=out_dtype, device=device, memory_format=fmt)
    args = (data, index, boxes, flip, [7, 8], list(MEAN), list(STD), True, out_dtype, channels_last, resize)
    torch.library.opcheck(torch.ops.bridgedfast.resized_crop_into, (*args, out))


@pytest.mark.parametrize("form", ["nhwc", "list", "packed", "nhwc_view", "list_of_views"])
@pytest.mark.parametrize("with_out", [False, True])
def test_wrappers_trace_with_fullgraph(form, with_out):
    # Every input form of ops.resized_crop / resize_center_crop traces into one graph (no
    # data-dependent Python branch) and gives the eager result.
    g = torch.Generator().manual_seed(21)
    batch = torch.randint(0, 256, (3, 10, 12, 3), dtype=torch.uint8, generator=g)
    wide = torch.randint(0, 256, (3, 12, 15, 4), dtype=torch.uint8, generator=g)
    images = {"nhwc": batch, "list": list(batch), "packed": PackedImages.from_images(list(batch)),
              "nhwc_view": wide[:, 1:11, 2:14, :3], "list_of_views": list(wide[:, 2:12, 1:13, 1:])}[form]
    boxes = torch.tensor([[0, 0, 10, 12], [1, 2, 5, 7], [3, 1, 6, 6]])
    flip = torch.tensor([False, True, True])

    def fn(imgs, out_a, out_b):
        a = ops.resized_crop(imgs, boxes, 6, flip=flip, mean=MEAN, std=STD, out=out_a)
        b = ops.resize_center_crop(imgs, 6, 8, mean=MEAN, std=STD, out=out_b)
        return a * 2, b + 1

    def outs():
        return (torch.empty(3, 3, 6, 6), torch.empty(3, 3, 6, 6)) if with_out else (None, None)

    expected = fn(images, *outs())
    torch._dynamo.reset()
    got = torch.compile(fn, fullgraph=True)(images, *outs())
    for e, r in zip(expected, got):
        torch.testing.assert_close(r, e)


def test_compiled_wrapper_still_refuses_bad_boxes():
    batch = torch.zeros(2, 10, 12, 3, dtype=torch.uint8)
    compiled = torch.compile(lambda b: ops.resized_crop(batch, b, 4), fullgraph=True)
    with pytest.raises(RuntimeError, match="a box is not inside its image"):
        compiled(torch.tensor([[0, 0, 10, 13], [0, 0, 8, 8]]))


def test_out_variant_under_torch_compile():
    data, index, boxes, flip = opcheck_args("cpu")

    def fn(d, out):
        torch.ops.bridgedfast.resized_crop_into(d, index, boxes, flip, [6, 6], [0.0] * 3, [1.0] * 3, True,
                                                torch.float32, False, None, out)
        return out * 2

    expected = fn(data, torch.empty(len(index), 3, 6, 6))
    compiled = torch.compile(fn, fullgraph=True)
    out = torch.empty(len(index), 3, 6, 6)
    torch.testing.assert_close(compiled(data, out), expected)
    torch.testing.assert_close(out * 2, expected)


@pytest.mark.parametrize(
    "make_out, match",
    [
        (lambda: torch.empty(2, 3, 5, 6), "out must have shape \\[2, 3, 5, 5\\], got \\[2, 3, 5, 6\\]"),
        (lambda: torch.empty(2, 3, 5, 5, dtype=torch.float16), "out must have dtype torch.float32, got torch.float16"),
        (lambda: torch.empty(2, 3, 5, 5, memory_format=torch.channels_last), "out must be NCHW-contiguous"),
        (lambda: torch.empty(2, 3, 5, 10)[..., ::2], "out must be NCHW-contiguous"),
        (lambda: torch.empty(2, 3, 5, 5, requires_grad=True), "out must not require grad"),
        (lambda: torch.empty(2, 3, 5, 5, device="meta"), "out must be on cpu"),
        (lambda: [[0.0]], "out must be a torch.Tensor, got list"),
    ],
)
def test_rejects_bad_out(make_out, match):
    with pytest.raises(ValueError, match=match):
        ops.resized_crop(IMG, BOXES, 5, out=make_out())


def test_rejects_out_over_the_input():
    packed = PackedImages.from_images(IMG)
    buffer = torch.zeros(1200, dtype=torch.uint8)
    buffer[: packed.data.numel()] = packed.data
    overlapping = buffer[400:1000].view(torch.float32).view(2, 3, 5, 5)
    with pytest.raises(ValueError, match="out must not share memory with its input"):
        ops.resized_crop(PackedImages(buffer[: packed.data.numel()], packed.index), BOXES, 5, out=overlapping)


def test_out_op_level_checks_name_the_problem():
    packed = PackedImages.from_images(IMG)
    flip = torch.zeros(2, dtype=torch.bool)

    def call(out, channels_last=False, data=packed.data):
        return torch.ops.bridgedfast.resized_crop_into(data, packed.index, torch.tensor(BOXES), flip, [4, 4],
                                                       [0.0] * 3, [1.0] * 3, True, torch.float32, channels_last,
                                                       None, out)

    with pytest.raises(RuntimeError, match="out must have shape \\[2, 3, 4, 4\\], got \\[2, 3, 4, 5\\]"):
        call(torch.empty(2, 3, 4, 5))
    with pytest.raises(RuntimeError, match="out has dtype Half but out_dtype is Float"):
        call(torch.empty(2, 3, 4, 4, dtype=torch.half))
    with pytest.raises(RuntimeError, match="out must be channels_last-contiguous"):
        call(torch.empty(2, 3, 4, 4), channels_last=True)
    with pytest.raises(RuntimeError, match="out must be NCHW-contiguous"):
        call(torch.empty(2, 3, 4, 8)[..., ::2])
    buffer = torch.zeros(1200, dtype=torch.uint8)
    buffer[: packed.data.numel()] = packed.data
    with pytest.raises(RuntimeError, match="out overlaps the image data"):
        call(buffer[400:784].view(torch.float32).view(2, 3, 4, 4), data=buffer[: packed.data.numel()])


# ---------------------------------------------------------------- input forms read in place
def view_images(device):
    """Lists the op reads in place or copies per image: crops of a bigger image (rows further
    apart than 3*W bytes), a stride-0 row broadcast, a channel-first tensor seen as HWC, the RGB
    of an RGBA image, a 1-row and a 1-column view, and plain contiguous images."""
    g = torch.Generator().manual_seed(31)
    big = torch.randint(0, 256, (90, 120, 3), dtype=torch.uint8, generator=g).to(device)
    chw = torch.randint(0, 256, (3, 41, 37), dtype=torch.uint8, generator=g).to(device)
    rgba = torch.randint(0, 256, (33, 29, 4), dtype=torch.uint8, generator=g).to(device)
    row = torch.randint(0, 256, (1, 50, 3), dtype=torch.uint8, generator=g).to(device)
    plain = torch.randint(0, 256, (45, 61, 3), dtype=torch.uint8, generator=g).to(device)
    return [big[10:70, 5:100], big[3:4], big[:, 7:8], row.expand(31, 50, 3), chw.permute(1, 2, 0), rgba[..., :3],
            plain, big[::2], big[20:80:3, 1:119:1]]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("antialias", [True, False])
def test_list_of_views_matches_torchvision(device, antialias):
    images = view_images(device)
    assert not all(im.is_contiguous() for im in images)
    g = torch.Generator().manual_seed(32)
    boxes = []
    for im in images:
        h, w = im.shape[0], im.shape[1]
        bh, bw = int(torch.randint(1, h + 1, (1,), generator=g)), int(torch.randint(1, w + 1, (1,), generator=g))
        boxes.append((int(torch.randint(0, h - bh + 1, (1,), generator=g)), int(torch.randint(0, w - bw + 1, (1,), generator=g)), bh, bw))
    boxes = torch.tensor(boxes)
    flip = torch.arange(len(images)) % 2 == 0
    out = ops.resized_crop(images, boxes, (19, 22), flip=flip, mean=MEAN, std=STD, antialias=antialias)
    ref = reference_batch([im.cpu().contiguous() for im in images], boxes, (19, 22), flip, MEAN, STD, antialias)
    assert out.device.type == device and (out.cpu() - ref).abs().max().item() <= 1e-3
    # The same through the out= variant and the eval transform.
    buf = torch.empty_like(out)
    assert ops.resized_crop(images, boxes, (19, 22), flip=flip, mean=MEAN, std=STD, antialias=antialias, out=buf) is buf
    torch.testing.assert_close(buf, out, rtol=0, atol=0)
    pipeline = T.Compose([T.Resize(24, antialias=antialias), T.CenterCrop(20), T.Normalize(MEAN, STD)])
    ref_eval = torch.stack([pipeline(im.cpu().permute(2, 0, 1).float() / 255) for im in images])
    out_eval = ops.resize_center_crop(images, 20, 24, mean=MEAN, std=STD, antialias=antialias)
    assert (out_eval.cpu() - ref_eval).abs().max().item() <= 1e-3


@pytest.mark.parametrize("device", DEVICES)
def test_strided_nhwc_batches_match_torchvision(device):
    g = torch.Generator().manual_seed(33)
    base = torch.randint(0, 256, (5, 40, 50, 4), dtype=torch.uint8, generator=g).to(device)
    boxes = torch.tensor([[0, 0, 30, 40], [3, 4, 10, 20], [29, 39, 1, 1], [1, 0, 29, 5], [5, 5, 20, 30]])
    flip = torch.tensor([True, False, True, True, False])
    for batch in (base[:, 5:35, 2:42, :3], base[..., 1:], base.permute(0, 2, 1, 3)[:, 5:45, 0:40, :3]):
        assert not batch.is_contiguous()
        out = ops.resized_crop(batch, boxes, (14, 12), flip=flip, mean=MEAN, std=STD)
        ref = reference_batch(list(batch.cpu().contiguous()), boxes, (14, 12), flip, MEAN, STD, True)
        assert (out.cpu() - ref).abs().max().item() <= 1e-3


def test_rejects_lists_on_mixed_devices_and_empty_lists():
    # "meta" stands in for a second device on machines without a GPU.
    with pytest.raises(ValueError, match="images must all be on one device, got \\['cpu', 'meta'\\]"):
        ops.resized_crop([IMG[0], IMG[1].to("meta")], BOXES, 4)
    with pytest.raises(ValueError, match="images must all be on one device"):
        TrainAugment(4)([IMG[0], IMG[1].to("meta")])
    with pytest.raises(ValueError, match="images must not be an empty list"):
        ops.resized_crop([], torch.zeros(0, 4, dtype=torch.int64), 4)
    with pytest.raises(ValueError, match="image 1 must have a positive height and width"):
        ops.resized_crop([IMG[0], torch.zeros(0, 4, 3, dtype=torch.uint8)], BOXES, 4)


def test_image_sizes_of_every_form():
    batch = torch.zeros(3, 7, 9, 3, dtype=torch.uint8)
    forms = [(batch, 7, 9), (list(batch), 7, 9), (PackedImages.from_images(list(batch)), 7, 9), (batch[:, 1:, 2:], 6, 7)]
    for images, height, width in forms:
        h, w = ops.image_sizes(images)
        assert h.dtype == w.dtype == torch.int64 and h.tolist() == [height] * 3 and w.tolist() == [width] * 3
        assert ops.images_device(images) == torch.device("cpu")
    assert [t.tolist() for t in ops.image_sizes(IMG)] == [[10, 8], [12, 8]]
    with pytest.raises(ValueError, match="images must be PackedImages"):
        ops.image_sizes("not images")


def test_rejects_out_over_a_list_image():
    buffer = torch.zeros(4 * 2 * 3 * 5 * 5 + 100, dtype=torch.uint8)
    image = buffer[:300].view(10, 10, 3)
    out = buffer[:600].view(torch.float32).view(2, 3, 5, 5)[:1]
    with pytest.raises(ValueError, match="out must not share memory with its input"):
        ops.resized_crop([image], [[0, 0, 10, 10]], 5, out=out)
    with pytest.raises(RuntimeError, match="out overlaps the image data"):
        torch.ops.bridgedfast.resized_crop_list_into([image], torch.tensor([[0, 0, 10, 10]]), torch.zeros(1, dtype=torch.bool),
                                                     [5, 5], [0.0] * 3, [1.0] * 3, True, torch.float32, False, None, out)


def test_list_op_level_checks_name_the_problem():
    op = torch.ops.bridgedfast.resized_crop_list.default
    flip = torch.zeros(2, dtype=torch.bool)

    def call(images, boxes=torch.tensor(BOXES)):
        return op(images, boxes, flip, [4, 4], [0.0] * 3, [1.0] * 3, True, torch.float32, False, None)

    with pytest.raises(RuntimeError, match="image 1 must be a uint8 \\[H, W, 3\\] tensor"):
        call([IMG[0], IMG[1].float()])
    with pytest.raises(RuntimeError, match="box 1 \\(top 0, left 2, height 8, width 8\\) is not inside its 8x8 image"):
        call(IMG, torch.tensor([[0, 0, 10, 12], [0, 2, 8, 8]]))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("with_out", [False, True])
def test_opcheck_list(device, with_out):
    images = [im.to(device) for im in view_images("cpu")[:4]]
    boxes = torch.tensor([[0, 0, im.shape[0], im.shape[1]] for im in images])
    args = (images, boxes, torch.tensor([True, False, True, False]), [7, 8], list(MEAN), list(STD), True,
            torch.float32, False, None)
    if with_out:
        torch.library.opcheck(torch.ops.bridgedfast.resized_crop_list_into, (*args, torch.empty(4, 3, 7, 8, device=device)))
    else:
        torch.library.opcheck(torch.ops.bridgedfast.resized_crop_list.default, args)


def overlaps(a, b):
    lo_a, lo_b = a.data_ptr(), b.data_ptr()
    return lo_a < lo_b + b.numel() * b.element_size() and lo_b < lo_a + a.numel() * a.element_size()


def test_fresh_outputs_never_share_memory_with_live_ones():
    # Fresh CPU outputs come from blocks earlier outputs released: never one still referenced.
    g = torch.Generator().manual_seed(34)
    images = [torch.randint(0, 256, (300, 280, 3), dtype=torch.uint8, generator=g) for _ in range(12)]
    boxes = torch.tensor([[0, 0, 300, 280]] * 12)
    first = ops.resized_crop(images, boxes, 160)  # 3.7 MB: from the block cache
    kept = first.clone()
    view = first[3:5]
    second = ops.resized_crop(images, boxes, 160, flip=[True] * 12)
    assert not overlaps(first, second)
    del first
    third = ops.resized_crop(images, boxes, 160, mean=MEAN, std=STD)  # may reuse nothing still viewed
    assert not overlaps(view, third) and not overlaps(second, third)
    torch.testing.assert_close(view, kept[3:5], rtol=0, atol=0)
    torch.testing.assert_close(second, kept.flip(-1), rtol=0, atol=0)
    ref = reference_batch(images[:2], boxes[:2], (160, 160), torch.zeros(2, dtype=torch.bool), MEAN, STD, True)
    assert (third[:2] - ref).abs().max().item() <= 1e-3
    del second, third
    assert ops.release_cached_outputs() >= 0
    torch.testing.assert_close(view, kept[3:5], rtol=0, atol=0)
