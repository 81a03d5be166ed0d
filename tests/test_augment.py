"""bridgedfast.augment against its independent references: torchvision's RandomResizedCrop
parameter algorithm and eval pipeline, and timm.data.Mixup (images and soft targets), each fed
the same random numbers our seeded generator drew."""
import math

import numpy as np
import pytest
import timm.data.mixup as timm_mixup
import torch
import torchvision.transforms.v2 as T

from bridgedfast import augment, ops
from bridgedfast.augment import EvalAugment, Mixup, TrainAugment, rrc_boxes_from_uniforms
from bridgedfast.packed import PackedImages
from conftest import DEVICES


# ---------------------------------------------------------------- RandomResizedCrop boxes
def torchvision_rrc_params(monkeypatch, height, width, u_row, scale, ratio):
    """torchvision's RandomResizedCrop.make_params with its torch RNG calls answered from u_row."""
    rrc = T.RandomResizedCrop(8, scale=scale, ratio=ratio)
    image = torch.empty(3, height, width)
    attempts = iter(u_row[: 2 * augment.RRC_ATTEMPTS].tolist())
    position = iter(u_row[2 * augment.RRC_ATTEMPTS :].tolist())

    class Uniform:
        def uniform_(self, a, b):
            return torch.tensor([next(attempts) * (float(b) - float(a)) + float(a)], dtype=torch.float32)

    with monkeypatch.context() as m:
        m.setattr(torch, "empty", lambda *args, **kwargs: Uniform())
        m.setattr(torch, "randint", lambda lo, hi, size: torch.tensor([lo + math.floor(next(position) * (hi - lo))]))
        p = rrc.make_params([image])
    return p["top"], p["left"], p["height"], p["width"]


@pytest.mark.parametrize("scale, ratio", [((0.08, 1.0), (3 / 4, 4 / 3)), ((0.5, 0.9), (1.0, 1.0)), ((0.9, 1.0), (0.2, 5.0))])
def test_rrc_boxes_follow_torchvision_algorithm(monkeypatch, scale, ratio):
    g = torch.Generator().manual_seed(0)
    sizes = [(int(h), int(w)) for h, w in torch.randint(1, 400, (150, 2), generator=g)]
    sizes += [(300, 10), (10, 300), (1, 1), (2, 700), (224, 224)]  # fallbacks and trivial cases
    heights = torch.tensor([s[0] for s in sizes])
    widths = torch.tensor([s[1] for s in sizes])
    u = torch.rand(len(sizes), 2 * augment.RRC_ATTEMPTS + 2, generator=g, dtype=torch.float64)
    ours = rrc_boxes_from_uniforms(heights, widths, u, scale, ratio)
    expected = torch.tensor([torchvision_rrc_params(monkeypatch, h, w, u[i], scale, ratio) for i, (h, w) in enumerate(sizes)])
    assert torch.equal(ours, expected)


def test_rrc_fallback_matches_torchvision_without_replay():
    # No attempt can fit a 1000x10 image, so torchvision's answer is deterministic.
    expected = T.RandomResizedCrop(8).make_params([torch.empty(3, 1000, 10)])
    boxes = augment.random_resized_crop_boxes(torch.tensor([1000]), torch.tensor([10]), generator=torch.Generator())
    assert boxes[0].tolist() == [expected["top"], expected["left"], expected["height"], expected["width"]]


# ---------------------------------------------------------------- TrainAugment / EvalAugment
def sample_images(seed, n, lo=20, hi=60):
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randint(0, 256, (int(torch.randint(lo, hi, (1,), generator=g)), int(torch.randint(lo, hi, (1,), generator=g)), 3),
                      dtype=torch.uint8, generator=g)
        for _ in range(n)
    ]


def test_train_augment_is_torchvision_pipeline_with_drawn_params():
    images = sample_images(1, 24)
    aug = TrainAugment(16, seed=3)
    boxes, flip = aug.draw(torch.tensor([im.shape[0] for im in images]), torch.tensor([im.shape[1] for im in images]),
                           torch.Generator().manual_seed(7))
    out = aug(images, torch.Generator().manual_seed(7))
    assert out.shape == (24, 3, 16, 16) and aug.output_size == (16, 16)
    for img, box, f, o in zip(images, boxes.tolist(), flip.tolist(), out):
        x = T.functional.resized_crop(img.permute(2, 0, 1).float(), *box, [16, 16], antialias=True) / 255
        if f:
            x = T.functional.hflip(x)
        x = T.functional.normalize(x, list(augment.IMAGENET_MEAN), list(augment.IMAGENET_STD))
        assert (o - x).abs().max().item() <= 1e-3


def test_train_augment_seeding_and_input_forms():
    images = sample_images(2, 10)
    packed = PackedImages.from_images(images)
    a = TrainAugment((12, 10), seed=5)
    first = a(images)
    second = a(images)  # the augment's own generator advances
    assert not torch.equal(first, second)
    assert torch.equal(TrainAugment((12, 10), seed=5)(packed), first)
    g1, g2 = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
    assert torch.equal(a(images, g1), TrainAugment((12, 10), seed=99)(packed, g2))


def test_train_augment_flip_probability_and_box_ranges():
    heights = torch.randint(50, 300, (4000,), generator=torch.Generator().manual_seed(0))
    widths = torch.randint(50, 300, (4000,), generator=torch.Generator().manual_seed(1))
    boxes, flip = TrainAugment(8, hflip=0.3).draw(heights, widths)
    assert 0.27 < flip.double().mean().item() < 0.33
    top, left, h, w = boxes.unbind(1)
    assert bool(((top >= 0) & (left >= 0) & (top + h <= heights) & (left + w <= widths) & (h > 0) & (w > 0)).all())
    frac = (h * w).double() / (heights * widths).double()
    assert frac.min().item() >= 0.07 and frac.max().item() <= 1.0
    _, none = TrainAugment(8, hflip=0.0).draw(heights, widths)
    _, every = TrainAugment(8, hflip=1.0).draw(heights, widths)
    assert not none.any() and every.all()


def test_eval_augment_matches_torchvision_pipeline():
    images = sample_images(3, 12, lo=24, hi=70)
    aug = EvalAugment(24)
    assert aug.resize == 27 and aug.output_size == (24, 24)
    pipeline = T.Compose([T.Resize(27, antialias=True), T.CenterCrop(24), T.Normalize(augment.IMAGENET_MEAN, augment.IMAGENET_STD)])
    ref = torch.stack([pipeline(im.permute(2, 0, 1).float() / 255) for im in images])
    out = aug(images, torch.Generator().manual_seed(0))
    assert (out - ref).abs().max().item() <= 1e-3
    assert torch.equal(aug(images), out)  # nothing random


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("recycle_outputs", [True, False])
def test_augments_take_every_input_form_in_place(device, recycle_outputs):
    # Lists of views (strided rows, a channel-first tensor seen as HWC), a strided NHWC batch and
    # PackedImages give the torchvision pipeline's result with the same drawn parameters.
    g = torch.Generator().manual_seed(8)
    big = torch.randint(0, 256, (6, 70, 80, 4), dtype=torch.uint8, generator=g).to(device)
    chw = torch.randint(0, 256, (3, 50, 45), dtype=torch.uint8, generator=g).to(device)
    views = [big[0, 5:60, 3:70, :3], big[1, ::2, :, 1:], chw.permute(1, 2, 0), big[2, 10:11, :, :3]]
    batch = big[:, 4:64, 7:77, :3]
    forms = [views, batch, PackedImages.from_images([v.contiguous() for v in views])]
    mean, std = list(augment.IMAGENET_MEAN), list(augment.IMAGENET_STD)
    for images in forms:
        plain = [im.cpu().contiguous() for im in (images if not isinstance(images, PackedImages) else views)]
        train = TrainAugment(16, seed=2, recycle_outputs=recycle_outputs)
        heights, widths = ops.image_sizes(images)
        boxes, flip = train.draw(heights, widths, torch.Generator().manual_seed(5))
        out = train(images, torch.Generator().manual_seed(5))
        assert out.device.type == device and out.shape == (len(plain), 3, 16, 16)
        for img, box, f, o in zip(plain, boxes.tolist(), flip.tolist(), out.cpu()):
            x = T.functional.resized_crop(img.permute(2, 0, 1).float(), *box, [16, 16], antialias=True) / 255
            x = T.functional.normalize(T.functional.hflip(x) if f else x, mean, std)
            assert (o - x).abs().max().item() <= 1e-3
        pipeline = T.Compose([T.Resize(18, antialias=True), T.CenterCrop(16), T.Normalize(mean, std)])
        ref = torch.stack([pipeline(img.permute(2, 0, 1).float() / 255) for img in plain])
        evaluated = EvalAugment(16, resize=18, recycle_outputs=recycle_outputs)(images)
        assert (evaluated.cpu() - ref).abs().max().item() <= 1e-3


@pytest.mark.parametrize(
    "factory, match",
    [
        (lambda: TrainAugment(0), "size must be a positive int"),
        (lambda: TrainAugment(8, scale=(0.5, 0.1)), "scale must satisfy"),
        (lambda: TrainAugment(8, ratio=(1.0,)), "ratio must be a \\(min, max\\) pair"),
        (lambda: TrainAugment(8, hflip=1.5), "hflip must be a probability"),
        (lambda: TrainAugment(8, mean=(0.5,)), "mean and std must have 3 values"),
        (lambda: TrainAugment(8, out_dtype=torch.int8), "out_dtype must be"),
        (lambda: EvalAugment(8, resize=6), "resize must be an int >= the crop size"),
        (lambda: TrainAugment(8)(sample_images(0, 2), "seed-42"), "CPU torch.Generator"),
    ],
)
def test_augment_rejects_bad_arguments(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


@pytest.mark.cuda
def test_augments_identical_on_cuda_and_cpu():
    images = sample_images(4, 16)
    packed = PackedImages.from_images(images)
    for aug in (TrainAugment(20, seed=1), EvalAugment(20)):
        cpu = aug(packed, torch.Generator().manual_seed(3))
        gpu = aug(packed.to("cuda"), torch.Generator().manual_seed(3))
        assert gpu.is_cuda and (gpu.cpu() - cpu).abs().max().item() <= 1e-4


# ---------------------------------------------------------------- Mixup / CutMix vs timm
class Recorder:
    """Wraps a Mixup's random variables and replays the same values into timm's numpy calls."""

    def __init__(self, mixup):
        self.uniforms, self.betas = [], []
        rand, beta = mixup._rand, mixup._beta

        def record_rand(n):
            v = rand(n)
            self.uniforms += v.tolist()
            return v

        def record_beta(alpha, n):
            v = beta(alpha, n)
            self.betas += v.tolist()
            return v

        mixup._rand, mixup._beta = record_rand, record_beta

    def patch_numpy(self, m):
        uniforms, betas = iter(self.uniforms), iter(self.betas)

        def rand(*size):
            return next(uniforms) if not size else np.array([next(uniforms) for _ in range(size[0])])

        def beta(a, b, size=None):
            return next(betas) if size is None else np.array([next(betas) for _ in range(size)])

        def randint(low, high=None, size=None):
            assert size is None
            return low + math.floor(next(uniforms) * (high - low))

        m.setattr(np.random, "rand", rand)
        m.setattr(np.random, "beta", beta)
        m.setattr(np.random, "randint", randint)


MIXUP_CONFIGS = [
    dict(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1),
    dict(mixup_alpha=0.2, cutmix_alpha=0.0, label_smoothing=0.0),
    dict(mixup_alpha=0.0, cutmix_alpha=1.0, correct_lam=False),
    dict(mixup_alpha=0.0, cutmix_alpha=1.0, correct_lam=True, prob=0.6),
    dict(mixup_alpha=1.0, cutmix_alpha=0.0, cutmix_minmax=(0.2, 0.8), switch_prob=0.3),
]


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
@pytest.mark.parametrize("config", MIXUP_CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_mixup_matches_timm(monkeypatch, mode, config):
    g = torch.Generator().manual_seed(0)
    ours = Mixup(mode=mode, num_classes=7, seed=len(mode) + len(config), **config)
    recorder = Recorder(ours)
    reference = timm_mixup.Mixup(mode=mode, num_classes=7, **config)
    for step in range(6):
        x = torch.rand(6, 3, 13, 11, generator=g)
        target = torch.randint(0, 7, (6,), generator=g)
        recorder.uniforms.clear(), recorder.betas.clear()
        x_ours, y_ours = ours(x, target)
        with monkeypatch.context() as m:
            recorder.patch_numpy(m)
            x_timm, y_timm = reference(x.clone(), target)
        assert y_ours.dtype == y_timm.dtype == torch.float32
        torch.testing.assert_close(x_ours, x_timm, rtol=0, atol=1e-6)
        torch.testing.assert_close(y_ours, y_timm, rtol=0, atol=1e-7)


def test_mixup_exercises_both_branches():
    # Over the batches of the timm comparison, both CutMix boxes and blends really happen.
    mix = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem", num_classes=7)
    x = torch.rand(64, 3, 8, 8)
    out, _ = mix(x, torch.zeros(64, dtype=torch.int64))
    pasted = (out == x.flip(0)).flatten(1).all(1) | ((out == x.flip(0)).flatten(1).any(1) & (out == x).flatten(1).any(1))
    blended = ~((out == x) | (out == x.flip(0))).flatten(1).all(1)
    assert pasted.any() and blended.any()


def test_mixup_leaves_input_untouched_and_disabled_is_identity():
    x = torch.rand(4, 3, 6, 6)
    x0 = x.clone()
    mix = Mixup(mixup_alpha=1.0, mode="elem", num_classes=3, label_smoothing=0.0)
    mix(x, torch.tensor([0, 1, 2, 0]))
    assert torch.equal(x, x0)
    mix.mixup_enabled = False
    out, y = mix(x, torch.tensor([0, 1, 2, 0]))
    assert torch.equal(out, x) and torch.equal(y, torch.eye(3)[[0, 1, 2, 0]])


def test_mixup_multi_label_and_half_inputs(monkeypatch):
    ours = Mixup(mixup_alpha=0.4, cutmix_alpha=1.0, mode="elem", num_classes=5, multi_label=True, seed=4)
    recorder = Recorder(ours)
    reference = timm_mixup.Mixup(mixup_alpha=0.4, cutmix_alpha=1.0, mode="elem", num_classes=5, multi_label=True)
    x = torch.rand(8, 3, 9, 7).half()
    target = (torch.rand(8, 5) > 0.5).float()
    x_ours, y_ours = ours(x, target)
    with monkeypatch.context() as m:
        recorder.patch_numpy(m)
        x_timm, y_timm = reference(x.clone(), target)
    torch.testing.assert_close(x_ours, x_timm, rtol=0, atol=1e-3)
    torch.testing.assert_close(y_ours, y_timm, rtol=0, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_mixup_same_on_every_device(device):
    x = torch.rand(8, 3, 10, 12)
    target = torch.arange(8) % 4
    cpu = Mixup(mixup_alpha=0.5, cutmix_alpha=1.0, mode="pair", num_classes=4, seed=1)(x, target)
    dev = Mixup(mixup_alpha=0.5, cutmix_alpha=1.0, mode="pair", num_classes=4, seed=1)(x.to(device), target.to(device))
    assert dev[0].device.type == device
    torch.testing.assert_close(dev[0].cpu(), cpu[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(dev[1].cpu(), cpu[1], rtol=0, atol=1e-7)


@pytest.mark.cuda
@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_cuda_mixup_only_enqueues(mode):
    # Mixup runs in the training loop: uploading its host-drawn parameters must not hold the host
    # until the GPU has finished the previous step (a copy from pageable memory may do that).
    x = torch.rand(8, 3, 10, 12, device="cuda")
    target = torch.arange(8, device="cuda") % 4
    Mixup(mixup_alpha=0.5, cutmix_alpha=1.0, prob=1.0, mode=mode, num_classes=4, seed=2)(x, target)  # warm-up
    mixup = Mixup(mixup_alpha=0.5, cutmix_alpha=1.0, prob=1.0, mode=mode, num_classes=4, seed=2)
    torch.cuda.synchronize()
    stream = torch.cuda.current_stream()
    torch.cuda._sleep(2_000_000_000)  # about a second of GPU clock cycles
    mixed, soft = mixup(x, target)
    assert not stream.query(), "Mixup waited for earlier GPU work"
    torch.cuda.synchronize()
    want = Mixup(mixup_alpha=0.5, cutmix_alpha=1.0, prob=1.0, mode=mode, num_classes=4, seed=2)(x.cpu(), target.cpu())
    torch.testing.assert_close(mixed.cpu(), want[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(soft.cpu(), want[1], rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, x, target, match",
    [
        ({}, torch.rand(5, 3, 4, 4), torch.zeros(5, dtype=torch.int64), "even batch size .*got 5"),
        ({}, torch.rand(4, 4, 4), torch.zeros(4, dtype=torch.int64), "x must be a float \\[N, C, H, W\\]"),
        ({}, torch.zeros(4, 3, 4, 4, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64), "x must be a float"),
        ({}, torch.rand(4, 3, 4, 4), torch.zeros(6, dtype=torch.int64), "target must be int class indices \\[N\\] with N = 4"),
        ({}, torch.rand(4, 3, 4, 4), torch.tensor([0, 1, 2, 10]), "target classes must be in \\[0, 10\\)"),
        ({"multi_label": True}, torch.rand(4, 3, 4, 4), torch.zeros(4), "multi-label target must be \\[N, num_classes\\]"),
    ],
)
def test_mixup_rejects_bad_inputs(kwargs, x, target, match):
    with pytest.raises(ValueError, match=match):
        Mixup(num_classes=10, **kwargs)(x, target)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(mode="row"), "mode must be 'batch', 'pair' or 'elem'"),
        (dict(mixup_alpha=0.0, cutmix_alpha=0.0), "one of mixup_alpha > 0"),
        (dict(mixup_alpha=-1.0), "must be >= 0"),
        (dict(cutmix_minmax=(0.8, 0.2)), "cutmix_minmax must be"),
        (dict(num_classes=0), "num_classes must be a positive int"),
        (dict(generator="seed-42"), "CPU torch.Generator"),
    ],
)
def test_mixup_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Mixup(**kwargs)


def test_mixup_target_is_timms():
    target = torch.tensor([3, 0, 2, 2])
    for lam in (1.0, 0.3, torch.tensor([[0.2], [0.5], [0.5], [0.2]])):
        ours = augment.mixup_target(target, 5, lam, 0.1)
        torch.testing.assert_close(ours, timm_mixup.mixup_target(target, 5, lam, 0.1), rtol=0, atol=0)


# ---------------------------------------------------------------- out= and recycled outputs
@pytest.mark.parametrize("device", DEVICES)
def test_augments_write_into_out(device):
    images = [im.to(device) for im in sample_images(5, 12)]
    for aug in (TrainAugment((18, 14), seed=2, channels_last=True, out_dtype=torch.bfloat16), EvalAugment(16)):
        expected = aug(images, torch.Generator().manual_seed(9))
        shape, dtype, fmt = aug.output_spec(len(images))
        assert (shape, dtype) == (tuple(expected.shape), expected.dtype) and expected.is_contiguous(memory_format=fmt)
        out = torch.empty(shape, dtype=dtype, device=device, memory_format=fmt)
        assert aug(images, torch.Generator().manual_seed(9), out=out) is out
        torch.testing.assert_close(out, expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="out must have shape \\[12, 3, 16, 16\\]"):
        EvalAugment(16)(images, out=torch.empty(12, 3, 16, 17, device=device))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_mix_images_out_matches_functional(device, channels_last):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.rand(6, 3, 9, 7, device=device).contiguous(memory_format=fmt)
    lam = torch.tensor([0.2, 1.0, 0.7, 1.0, 0.5, 0.9])
    boxes = torch.tensor([[0, 0, 0, 0], [2, 7, 1, 5], [0, 0, 0, 0], [0, 9, 0, 7], [0, 0, 0, 0], [1, 2, 3, 4]], dtype=torch.int32)
    expected = ops.mix_images(x, lam, boxes)
    out = torch.full_like(x, float("nan"), memory_format=fmt)
    assert ops.mix_images(x, lam, boxes, out=out) is out
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    torch.library.opcheck(torch.ops.bridgedfast.mix_images.out, (x, lam.to(device), boxes.to(device)), {"out": out})


@pytest.mark.parametrize(
    "make_out, match",
    [
        (lambda x: x, "out must not share memory with its input"),
        (lambda x: torch.empty(4, 3, 6, 5), "out must have shape \\[4, 3, 6, 6\\]"),
        (lambda x: torch.empty(4, 3, 6, 6, dtype=torch.float64), "out must have dtype torch.float32"),
        (lambda x: torch.empty(4, 3, 6, 6, memory_format=torch.channels_last), "out must be NCHW-contiguous"),
    ],
)
def test_mix_images_rejects_bad_out(make_out, match):
    x = torch.rand(4, 3, 6, 6)
    lam, boxes = torch.ones(4), torch.zeros(4, 4, dtype=torch.int32)
    with pytest.raises(ValueError, match=match):
        ops.mix_images(x, lam, boxes, out=make_out(x))
    if "share memory" in match:
        with pytest.raises(RuntimeError, match="out must not share memory with x"):
            torch.ops.bridgedfast.mix_images.out(x, lam, boxes, out=x)


@pytest.mark.parametrize("make", [lambda r: TrainAugment(12, seed=5, recycle_outputs=r),
                                  lambda r: EvalAugment(10, channels_last=True, recycle_outputs=r)])
def test_augment_recycled_outputs_never_touch_kept_batches(make):
    batches = [sample_images(30 + i, 4) for i in range(8)]
    recycled, fresh = make(True), make(False)
    kept, copies, pointers = [], [], set()
    for i, images in enumerate(batches):
        y = recycled(images)
        reference = fresh(images)  # allocates every batch
        torch.testing.assert_close(y, reference, rtol=0, atol=0)
        assert y.is_contiguous(memory_format=recycled.output_spec(4)[2])
        pointers.add(y.data_ptr())
        if i % 3 == 0:
            kept.append(y)
            copies.append(y.clone())
        elif i % 3 == 1:
            kept.append(y[1].numpy())  # a numpy view alone keeps the buffer too
            copies.append(y[1].clone().numpy())
    for k, c in zip(kept, copies):
        assert (k == c).all()
    assert fresh._outputs.pool is None
    pool = recycled._outputs.pool
    assert pool.reused > 0 and len(pointers) < len(batches)
    assert pool.reused + pool.allocated == len(batches)


def test_mixup_out_and_recycled_outputs_never_touch_kept_batches():
    g = torch.Generator().manual_seed(3)
    xs = [torch.rand(8, 3, 10, 12, generator=g) for _ in range(6)]
    target = torch.arange(8) % 5
    recycled = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem", num_classes=5, seed=4)
    fresh = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem", num_classes=5, seed=4)
    allocating = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem", num_classes=5, seed=4, recycle_outputs=False)
    kept, copies, pointers = [], [], set()
    for i, x in enumerate(xs):
        mixed, soft = recycled(x, target)
        reference, soft_ref = fresh(x, target, out=torch.empty_like(x))
        torch.testing.assert_close(mixed, reference, rtol=0, atol=0)
        torch.testing.assert_close(soft, soft_ref, rtol=0, atol=0)
        own, _ = allocating(x, target)
        torch.testing.assert_close(own, reference, rtol=0, atol=0)
        pointers.add(mixed.data_ptr())
        if i % 2 == 0:  # keep every other batch, drop the rest
            kept.append(mixed)
            copies.append(mixed.clone())
    for k, c in zip(kept, copies):
        assert torch.equal(k, c)
    # The dropped batches' buffers were reused: fewer distinct buffers than batches.
    assert len(pointers) < len(xs) and recycled._outputs.pool.reused > 0
    assert allocating._outputs.pool is None
    # Batch mode with lam == 1 copies x into out.
    off = Mixup(mixup_alpha=1.0, prob=0.0, num_classes=5)
    out = torch.empty_like(xs[0])
    assert off(xs[0], target, out=out)[0] is out and torch.equal(out, xs[0])
