"""Batch augmentation on top of the fused ops: the training and eval transforms and Mixup/CutMix.

Per-sample random parameters are drawn on the host from a seeded CPU `torch.Generator`, in
vectorised form, so a seed gives the same batch on CPU and CUDA; the pixels are then produced
by one fused op per batch (`bridgedfast.ops.resized_crop`, `bridgedfast.ops.mix_images`).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from . import ops
from .buffers import BufferPool
from .ops import Images

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "TrainAugment",
    "EvalAugment",
    "Mixup",
    "random_resized_crop_boxes",
    "mixup_target",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# RandomResizedCrop tries this many (area, aspect) draws before its fallback, as torchvision does.
RRC_ATTEMPTS = 10


def _cpu_generator(generator: torch.Generator | None, default: torch.Generator) -> torch.Generator:
    if generator is None:
        return default
    if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
        raise ValueError(f"generator must be a CPU torch.Generator (parameters are drawn on the host), got {generator!r}")
    return generator


def _pair(value: Sequence[float], name: str) -> tuple[float, float]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{name} must be a (min, max) pair, got {value!r}")
    lo, hi = float(value[0]), float(value[1])
    if not 0 < lo <= hi:
        raise ValueError(f"{name} must satisfy 0 < min <= max, got {value!r}")
    return lo, hi


def rrc_boxes_from_uniforms(
    heights: torch.Tensor, widths: torch.Tensor, u: torch.Tensor, scale: Sequence[float], ratio: Sequence[float]
) -> torch.Tensor:
    """torchvision's RandomResizedCrop.make_params for a batch, given its uniform draws.

    heights, widths: int64 [N]; u: float64 [N, 2*RRC_ATTEMPTS + 2] in [0, 1): per attempt
    (area, log-aspect), then (top, left) -> int64 [N,4] (top, left, height, width).
    Attempt k is torchvision's k-th loop iteration; the first that fits wins, else its fallback.
    """
    h_img, w_img = heights.to(torch.int64), widths.to(torch.int64)
    area = (h_img * w_img).double()[:, None]
    # torchvision draws both into float32 tensors (uniform_), then works in Python floats.
    scale_f = (u[:, 0 : 2 * RRC_ATTEMPTS : 2] * (scale[1] - scale[0]) + scale[0]).float()
    log_ratio = torch.log(torch.tensor([float(ratio[0]), float(ratio[1])])).double()
    log_aspect = (u[:, 1 : 2 * RRC_ATTEMPTS : 2] * (log_ratio[1] - log_ratio[0]) + log_ratio[0]).float()
    aspect = torch.exp(log_aspect).double()
    target = area * scale_f.double()
    w = torch.round(torch.sqrt(target * aspect)).to(torch.int64)
    h = torch.round(torch.sqrt(target / aspect)).to(torch.int64)
    fits = (w > 0) & (w <= w_img[:, None]) & (h > 0) & (h <= h_img[:, None])
    found = fits.any(1)
    first = fits.to(torch.int8).argmax(1, keepdim=True)
    h_sel, w_sel = h.gather(1, first)[:, 0], w.gather(1, first)[:, 0]
    top = torch.floor(u[:, -2] * (h_img - h_sel + 1).double()).to(torch.int64)
    left = torch.floor(u[:, -1] * (w_img - w_sel + 1).double()).to(torch.int64)
    # Fallback: a center crop clamped to the ratio range.
    in_ratio = w_img.double() / h_img.double()
    lo_r, hi_r = min(ratio), max(ratio)
    fb_w = torch.where(in_ratio > hi_r, torch.round(h_img.double() * hi_r).to(torch.int64), w_img)
    fb_h = torch.where(in_ratio < lo_r, torch.round(w_img.double() / lo_r).to(torch.int64), h_img)
    fb_top, fb_left = (h_img - fb_h) // 2, (w_img - fb_w) // 2
    return torch.stack(
        [
            torch.where(found, top, fb_top),
            torch.where(found, left, fb_left),
            torch.where(found, h_sel, fb_h),
            torch.where(found, w_sel, fb_w),
        ],
        1,
    )


def random_resized_crop_boxes(
    heights: torch.Tensor,
    widths: torch.Tensor,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """RandomResizedCrop boxes for images of the given sizes: int64 [N] each -> int64 [N,4]
    (top, left, height, width), drawn from `generator` (one [N, 22] uniform draw)."""
    u = torch.rand(len(heights), 2 * RRC_ATTEMPTS + 2, generator=generator, dtype=torch.float64)
    return rrc_boxes_from_uniforms(torch.as_tensor(heights), torch.as_tensor(widths), u, scale, ratio)


def _output_spec(n: int, size: tuple[int, int], dtype: torch.dtype, channels_last: bool):
    return (n, 3, size[0], size[1]), dtype, torch.channels_last if channels_last else torch.contiguous_format


class _OutputRecycler:
    """Where a batch producer's output goes: the caller's `out`, else (on CPU, when enabled) a
    recycled buffer from a small BufferPool, else None (the op allocates)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = bool(enabled)
        self.pool: BufferPool | None = None

    def __call__(self, out: torch.Tensor | None, device: torch.device, shape: Sequence[int], dtype: torch.dtype,
                 memory_format: torch.memory_format) -> torch.Tensor | None:
        if out is not None or not self.enabled or device.type != "cpu" or 0 in shape:
            return out
        if self.pool is None:
            self.pool = BufferPool(2)  # the batch being trained on, and the next one
        return self.pool.empty(shape, dtype, memory_format)


class TrainAugment:
    """RandomResizedCrop + random horizontal flip + ToDtype + Normalize for a whole batch, in one op.

    `augment(images, generator=None, *, out=None)`: images as `bridgedfast.ops.resized_crop`
    takes them (PackedImages, list of uint8 [H,W,3], uint8 [N,H,W,3]) -> out_dtype [N,3,H,W] on
    the images' device, written into `out` when given (see `output_spec`). Boxes (torchvision's
    scale/ratio algorithm) and flips come from `generator`, a CPU torch.Generator, or the
    augment's own one seeded with `seed`.

    Without `out`, a CPU batch goes into a recycled buffer (`recycle_outputs=True`, as Mixup
    does; see `bridgedfast.buffers.BufferPool`): a batch's memory is written again only
    once nothing references it any more (no tensor, view, numpy array or autograd graph), which
    saves the page faults of a fresh multi-megabyte allocation per call. `recycle_outputs=False`
    allocates every batch.
    """

    def __init__(
        self,
        size: int | Sequence[int],
        scale: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
        hflip: float = 0.5,
        mean: Sequence[float] | None = IMAGENET_MEAN,
        std: Sequence[float] | None = IMAGENET_STD,
        antialias: bool = True,
        out_dtype: torch.dtype = torch.float32,
        channels_last: bool = False,
        seed: int = 0,
        recycle_outputs: bool = True,
    ) -> None:
        self.output_size: tuple[int, int] = tuple(ops.check_size(size))  # type: ignore[assignment]
        self.scale = _pair(scale, "scale")
        self.ratio = _pair(ratio, "ratio")
        if not 0.0 <= float(hflip) <= 1.0:
            raise ValueError(f"hflip must be a probability in [0, 1], got {hflip!r}")
        self.hflip = float(hflip)
        ops.check_normalisation(mean, std)
        ops.check_out_dtype(out_dtype)
        self.mean, self.std = mean, std
        self.antialias = bool(antialias)
        self.out_dtype = out_dtype
        self.channels_last = bool(channels_last)
        self.generator = torch.Generator().manual_seed(seed)
        self._outputs = _OutputRecycler(recycle_outputs)

    def draw(self, heights: torch.Tensor, widths: torch.Tensor, generator: torch.Generator | None = None):
        """The batch's parameters: (boxes int64 [N,4], flip bool [N]); boxes first, then flips."""
        g = _cpu_generator(generator, self.generator)
        boxes = random_resized_crop_boxes(heights, widths, self.scale, self.ratio, g)
        flip = torch.rand(len(heights), generator=g, dtype=torch.float64) < self.hflip
        return boxes, flip

    def __call__(self, images: Images, generator: torch.Generator | None = None, *,
                 out: torch.Tensor | None = None) -> torch.Tensor:
        heights, widths = ops.image_sizes(images)
        boxes, flip = self.draw(heights, widths, generator)
        return ops.resized_crop(
            images,
            boxes,
            self.output_size,
            flip=flip,
            mean=self.mean,
            std=self.std,
            antialias=self.antialias,
            out_dtype=self.out_dtype,
            channels_last=self.channels_last,
            out=self._outputs(out, ops.images_device(images), *self.output_spec(len(heights))),
        )

    def output_spec(self, n: int) -> tuple[tuple[int, ...], torch.dtype, torch.memory_format]:
        """(shape, dtype, memory format) of the batch this augment makes from n images: what an
        `out=` buffer must be."""
        return _output_spec(n, self.output_size, self.out_dtype, self.channels_last)

    def __repr__(self) -> str:
        return (
            f"TrainAugment(size={self.output_size}, scale={self.scale}, ratio={self.ratio}, hflip={self.hflip}, "
            f"antialias={self.antialias}, out_dtype={self.out_dtype}, channels_last={self.channels_last})"
        )


class EvalAugment:
    """Resize (shorter side to `resize`) + CenterCrop(size) + ToDtype + Normalize, in one op.

    `augment(images, generator=None, *, out=None)` -> out_dtype [N,3,H,W] (into `out` when
    given); the generator is ignored (nothing is random). `resize` defaults to
    int(max(size) / 0.875), e.g. 256 for 224. CPU outputs are recycled as TrainAugment's are
    (`recycle_outputs`).
    """

    def __init__(
        self,
        size: int | Sequence[int],
        resize: int | None = None,
        mean: Sequence[float] | None = IMAGENET_MEAN,
        std: Sequence[float] | None = IMAGENET_STD,
        antialias: bool = True,
        out_dtype: torch.dtype = torch.float32,
        channels_last: bool = False,
        recycle_outputs: bool = True,
    ) -> None:
        self.output_size: tuple[int, int] = tuple(ops.check_size(size))  # type: ignore[assignment]
        self.resize = int(max(self.output_size) / 0.875) if resize is None else resize
        if not isinstance(self.resize, int) or self.resize < max(self.output_size):
            raise ValueError(f"resize must be an int >= the crop size {self.output_size}, got {resize!r}")
        ops.check_normalisation(mean, std)
        ops.check_out_dtype(out_dtype)
        self.mean, self.std = mean, std
        self.antialias = bool(antialias)
        self.out_dtype = out_dtype
        self.channels_last = bool(channels_last)
        self._outputs = _OutputRecycler(recycle_outputs)

    def __call__(self, images: Images, generator: torch.Generator | None = None, *,
                 out: torch.Tensor | None = None) -> torch.Tensor:
        return ops.resize_center_crop(
            images,
            self.output_size,
            self.resize,
            mean=self.mean,
            std=self.std,
            antialias=self.antialias,
            out_dtype=self.out_dtype,
            channels_last=self.channels_last,
            out=self._outputs(out, ops.images_device(images), *self.output_spec(len(images))),
        )

    def output_spec(self, n: int) -> tuple[tuple[int, ...], torch.dtype, torch.memory_format]:
        """(shape, dtype, memory format) of the batch made from n images (see TrainAugment)."""
        return _output_spec(n, self.output_size, self.out_dtype, self.channels_last)

    def __repr__(self) -> str:
        return f"EvalAugment(size={self.output_size}, resize={self.resize}, antialias={self.antialias}, out_dtype={self.out_dtype})"


def mixup_target(
    target: torch.Tensor,
    num_classes: int,
    lam: float | torch.Tensor = 1.0,
    smoothing: float = 0.0,
    multi_label: bool = False,
) -> torch.Tensor:
    """Soft targets as timm.data.mixup_target: label-smoothed one-hot (or dense multi-label)
    targets mixed with the batch reversed: y * lam + flip(y) * (1 - lam); lam a float or [N,1]."""
    if multi_label:
        y1 = target.float() * (1.0 - smoothing) + 0.5 * smoothing
    else:
        off_value = smoothing / num_classes
        on_value = 1.0 - smoothing + off_value
        y1 = torch.full((target.shape[0], num_classes), off_value, device=target.device)
        y1 = y1.scatter_(1, target.long().view(-1, 1), on_value)
    y2 = y1.flip(0)
    return y1 * lam + y2 * (1.0 - lam)


class Mixup:
    """Mixup/CutMix with timm.data.Mixup's arguments and call convention: `x, y = mixup(x, target)`.

    x: float [N,C,H,W] (N even; any float dtype, NCHW or channels_last) on CPU or CUDA; target:
    int64 [N] class indices (or dense [N, num_classes] with multi_label) -> mixed x (a new tensor:
    unlike timm, x is not modified in place; `out=` writes it into a given buffer instead) and
    float32 soft targets [N, num_classes]. On the CPU the mixed batches come from a small pool of
    recycled buffers (`bridgedfast.buffers.BufferPool`): a buffer is reused only once nothing
    references the batch that used it, so a batch you keep is never overwritten
    (`recycle_outputs=False` allocates every batch).
    Each image i is mixed with image N-1-i. Random variables are timm's (uniforms for the
    switches and the box position, beta for lambda) but drawn from a seeded torch.Generator
    (`seed`, or `generator`), not numpy's global RNG; the pixels are mixed by one fused op.
    """

    def __init__(
        self,
        mixup_alpha: float = 1.0,
        cutmix_alpha: float = 0.0,
        cutmix_minmax: Sequence[float] | None = None,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        mode: str = "batch",
        correct_lam: bool = True,
        label_smoothing: float = 0.1,
        num_classes: int = 1000,
        multi_label: bool = False,
        *,
        seed: int = 0,
        generator: torch.Generator | None = None,
        recycle_outputs: bool = True,
    ) -> None:
        if mode not in ("batch", "pair", "elem"):
            raise ValueError(f"mode must be 'batch', 'pair' or 'elem', got {mode!r}")
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError(f"mixup_alpha and cutmix_alpha must be >= 0, got {mixup_alpha!r}, {cutmix_alpha!r}")
        if cutmix_minmax is not None:
            if len(cutmix_minmax) != 2 or not 0.0 <= cutmix_minmax[0] < cutmix_minmax[1] <= 1.0:
                raise ValueError(f"cutmix_minmax must be (min, max) with 0 <= min < max <= 1, got {cutmix_minmax!r}")
            cutmix_alpha = 1.0  # as timm: minmax forces CutMix on
        if mixup_alpha <= 0 and cutmix_alpha <= 0:
            raise ValueError("one of mixup_alpha > 0, cutmix_alpha > 0 or cutmix_minmax must be set")
        if not isinstance(num_classes, int) or num_classes <= 0:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.mixup_alpha = float(mixup_alpha)
        self.cutmix_alpha = float(cutmix_alpha)
        self.cutmix_minmax = cutmix_minmax
        self.mix_prob = float(prob)
        self.switch_prob = float(switch_prob)
        self.label_smoothing = float(label_smoothing)
        self.num_classes = num_classes
        self.multi_label = bool(multi_label)
        self.mode = mode
        self.correct_lam = bool(correct_lam)
        self.mixup_enabled = True
        self.generator = _cpu_generator(generator, torch.Generator().manual_seed(seed))
        self._outputs = _OutputRecycler(recycle_outputs)

    def _output(self, x: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor | None:
        """Where the mixed batch goes: `out`, a recycled CPU buffer, or None (let the op allocate)."""
        fmt = torch.channels_last if ops.is_channels_last(x) else torch.contiguous_format
        return self._outputs(out, x.device, x.shape, x.dtype, fmt)

    # The random variables, in float64 like numpy's. Tests replay them into timm.
    def _rand(self, n: int) -> torch.Tensor:
        return torch.rand(n, generator=self.generator, dtype=torch.float64)

    def _beta(self, alpha: float, n: int) -> torch.Tensor:
        gammas = torch._standard_gamma(torch.full((2, n), alpha, dtype=torch.float64), generator=self.generator)
        return gammas[0] / (gammas[0] + gammas[1])

    def _params_per_elem(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        lam = torch.ones(n, dtype=torch.float32)
        use_cutmix = torch.zeros(n, dtype=torch.bool)
        if not self.mixup_enabled:
            return lam, use_cutmix
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            use_cutmix = self._rand(n) < self.switch_prob
            lam_cut = self._beta(self.cutmix_alpha, n)
            lam_mix = torch.where(use_cutmix, lam_cut, self._beta(self.mixup_alpha, n))
        elif self.mixup_alpha > 0:
            lam_mix = self._beta(self.mixup_alpha, n)
        else:
            use_cutmix = torch.ones(n, dtype=torch.bool)
            lam_mix = self._beta(self.cutmix_alpha, n)
        lam = torch.where(self._rand(n) < self.mix_prob, lam_mix.float(), lam)
        return lam, use_cutmix

    def _params_per_batch(self) -> tuple[float, bool]:
        if not (self.mixup_enabled and float(self._rand(1)) < self.mix_prob):
            return 1.0, False
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            use_cutmix = float(self._rand(1)) < self.switch_prob
            lam = self._beta(self.cutmix_alpha if use_cutmix else self.mixup_alpha, 1)
        elif self.mixup_alpha > 0:
            use_cutmix, lam = False, self._beta(self.mixup_alpha, 1)
        else:
            use_cutmix, lam = True, self._beta(self.cutmix_alpha, 1)
        return float(lam), use_cutmix

    def _cutmix_boxes(self, lam: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        """timm's cutmix_bbox_and_lam for k lambdas -> (int64 [k,4] (y0, y1, x0, x1), corrected
        lambdas float64 [k]); each box draws its uniforms in timm's order. The box side is
        computed in lam's dtype, as numpy does: float32 per element, float64 per batch."""
        k = lam.shape[0]
        if self.cutmix_minmax is not None:
            u = self._rand(4 * k).view(k, 4)
            lo_h, hi_h = int(h * self.cutmix_minmax[0]), int(h * self.cutmix_minmax[1])
            lo_w, hi_w = int(w * self.cutmix_minmax[0]), int(w * self.cutmix_minmax[1])
            cut_h = lo_h + torch.floor(u[:, 0] * (hi_h - lo_h)).to(torch.int64)
            cut_w = lo_w + torch.floor(u[:, 1] * (hi_w - lo_w)).to(torch.int64)
            y0 = torch.floor(u[:, 2] * (h - cut_h + 1).double()).to(torch.int64)
            x0 = torch.floor(u[:, 3] * (w - cut_w + 1).double()).to(torch.int64)
            y1, x1 = y0 + cut_h, x0 + cut_w
        else:
            u = self._rand(2 * k).view(k, 2)
            ratio = torch.sqrt(1.0 - lam)
            cut_h = (h * ratio).to(torch.int64)
            cut_w = (w * ratio).to(torch.int64)
            cy = torch.floor(u[:, 0] * h).to(torch.int64)
            cx = torch.floor(u[:, 1] * w).to(torch.int64)
            y0 = (cy - cut_h // 2).clamp(0, h)
            y1 = (cy + (cut_h + 1) // 2).clamp(0, h)
            x0 = (cx - cut_w // 2).clamp(0, w)
            x1 = (cx + (cut_w + 1) // 2).clamp(0, w)
        if self.correct_lam or self.cutmix_minmax is not None:
            lam = 1.0 - ((y1 - y0) * (x1 - x0)).double() / float(h * w)
        return torch.stack([y0, y1, x0, x1], 1), lam

    def _plan_elems(self, n: int, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-sample (image lam float32 [n], boxes int64 [n,4], target lam float32 [n])."""
        lam, use_cutmix = self._params_per_elem(n)
        img_lam = lam.clone()
        boxes = torch.zeros(n, 4, dtype=torch.int64)
        cut = use_cutmix & (lam != 1.0)
        if bool(cut.any()):
            idx = cut.nonzero()[:, 0]
            cut_boxes, corrected = self._cutmix_boxes(lam[idx], h, w)
            boxes[idx] = cut_boxes
            img_lam[idx] = 1.0
            lam[idx] = corrected.float()
        return img_lam, boxes, lam

    @staticmethod
    def _copy_into(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ops.check_out(out, "Mixup", tuple(x.shape), x.dtype, x.device, ops.is_channels_last(x), x)
        return out.copy_(x)

    def __call__(self, x: torch.Tensor, target: torch.Tensor, *,
                 out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
            raise ValueError(f"Mixup: x must be a float [N, C, H, W] batch, got {getattr(x, 'dtype', type(x))} {tuple(getattr(x, 'shape', ()))}")
        n, _, h, w = x.shape
        if n % 2 != 0:
            raise ValueError(f"Mixup needs an even batch size (each image is mixed with its mirror), got {n}")
        target = torch.as_tensor(target, device=x.device)
        if self.multi_label:
            if tuple(target.shape) != (n, self.num_classes):
                raise ValueError(f"Mixup: multi-label target must be [N, num_classes] = [{n}, {self.num_classes}], got {list(target.shape)}")
        elif target.dim() != 1 or target.shape[0] != n or target.is_floating_point():
            raise ValueError(f"Mixup: target must be int class indices [N] with N = {n}, got {target.dtype} {list(target.shape)}")
        # Class range checked on the CPU only: reading it back from a GPU would stall every batch.
        elif n and target.device.type == "cpu" and (int(target.min()) < 0 or int(target.max()) >= self.num_classes):
            raise ValueError(f"Mixup: target classes must be in [0, {self.num_classes}), got {int(target.min())}..{int(target.max())}")

        if self.mode == "batch":
            lam, use_cutmix = self._params_per_batch()
            if lam == 1.0:
                soft = mixup_target(target, self.num_classes, 1.0, self.label_smoothing, self.multi_label)
                return (x if out is None else self._copy_into(out, x)), soft
            boxes = torch.zeros(n, 4, dtype=torch.int64)
            img_lam = torch.full((n,), lam, dtype=torch.float32)
            if use_cutmix:
                box, corrected = self._cutmix_boxes(torch.tensor([lam], dtype=torch.float64), h, w)
                boxes[:] = box
                img_lam.fill_(1.0)
                lam = float(corrected[0])
            mixed = ops.mix_images(x, img_lam, boxes.to(torch.int32), out=self._output(x, out))
            return mixed, mixup_target(target, self.num_classes, lam, self.label_smoothing, self.multi_label)

        if self.mode == "elem":
            img_lam, boxes, lam = self._plan_elems(n, h, w)
        else:  # pair: image N-1-i takes image i's parameters, mirrored
            img_lam, boxes, lam = self._plan_elems(n // 2, h, w)
            img_lam = torch.cat([img_lam, img_lam.flip(0)])
            boxes = torch.cat([boxes, boxes.flip(0)])
            lam = torch.cat([lam, lam.flip(0)])
        mixed = ops.mix_images(x, img_lam, boxes.to(torch.int32), out=self._output(x, out))
        lam_t = ops.to_device_async(lam.to(x.dtype), x.device).unsqueeze(1)
        return mixed, mixup_target(target, self.num_classes, lam_t, self.label_smoothing, self.multi_label)
