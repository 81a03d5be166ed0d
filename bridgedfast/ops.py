"""Typed wrappers of the compiled ops (`torch.ops.bridgedfast.*`), their fake kernels for
torch.compile, and the fallback to the pure-PyTorch references in `bridgedfast.reference`."""
from __future__ import annotations

from typing import Sequence, Union

import torch

from . import _ext
from .packed import PackedImages
from .reference import (DECODE_COLUMNS, decode_jpegs_reference, gather_images_reference, mix_images_reference,
                        resized_crop_reference)

__all__ = [
    "mix_images",
    "gather_images",
    "DECODE_COLUMNS",
    "decode_jpegs",
    "decode_jpegs_compiled",
    "jpeg_add_restarts",
    "resized_crop",
    "resize_center_crop",
    "as_packed",
    "image_sizes",
    "images_device",
    "check_size",
    "check_normalisation",
    "check_out_dtype",
    "check_out",
    "is_channels_last",
    "to_device_async",
    "release_cached_outputs",
]

# What the image ops accept: the packed batch, a list of uint8 [H,W,3] tensors, or uint8 [N,H,W,3].
Images = Union[PackedImages, Sequence[torch.Tensor], torch.Tensor]
OUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _refuse_any(bad: torch.Tensor, message) -> None:
    """Raises ValueError(message(i)) for the first i where `bad` is set. While torch.compile traces,
    a Python branch on tensor values would break the graph, so the check becomes an assertion
    inside the graph (same condition, a generic message)."""
    if torch.compiler.is_compiling():
        torch._assert_async(torch.logical_not(bad.any()), "bridgedfast: " + message(None))
        return
    if bool(bad.any()):
        raise ValueError(message(int(bad.nonzero()[0, 0])))


def _use_kernel(op: str, device: torch.device) -> bool:
    if _ext.has_kernel(op, device.type):
        return True
    _ext.warn_fallback(op, device.type)
    return False


def to_device_async(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """t on `device`. A small host tensor goes to a GPU through pinned memory, so the copy is only
    enqueued: a copy from pageable memory, even with non_blocking=True, may hold the host until
    the stream has finished all earlier work (e.g. the previous training step)."""
    if device.type == "cuda" and t.device.type == "cpu" and not torch.compiler.is_compiling():
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)




def is_channels_last(x: torch.Tensor) -> bool:
    """Whether the image ops keep x [N,C,H,W] channels_last: it is dense that way and not NCHW."""
    return x.shape[1] > 1 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _byte_span(t: torch.Tensor) -> tuple[int, int]:
    lo = hi = t.data_ptr()
    for size, stride in zip(t.shape, t.stride()):
        step = (size - 1) * stride * t.element_size()
        lo, hi = (lo + step, hi) if step < 0 else (lo, hi + step)
    return lo, hi + t.element_size()


def _shares_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether the byte ranges a and b span overlap (conservative for strided views)."""
    if a.device != b.device or a.numel() == 0 or b.numel() == 0:
        return False
    (a0, a1), (b0, b1) = _byte_span(a), _byte_span(b)
    return a0 < b1 and b0 < a1


def check_out(out: object, op: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device,
              channels_last: bool, source: torch.Tensor | None) -> torch.Tensor:
    """Checks a caller's output buffer for op `op`: a dense tensor of that shape, dtype, device and
    layout (channels_last or NCHW), not requiring grad and not sharing memory with `source` (the
    input it is computed from; None: not checked here). Returns out; raises ValueError naming
    what is wrong."""
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"{op}: out must be a torch.Tensor, got {type(out).__name__}")
    if out.layout != torch.strided:
        raise ValueError(f"{op}: out must be a dense (strided) tensor, got layout {out.layout}")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"{op}: out must have shape {list(shape)}, got {list(out.shape)}")
    if out.dtype != dtype:
        raise ValueError(f"{op}: out must have dtype {dtype}, got {out.dtype}")
    if out.device != device:
        raise ValueError(f"{op}: out must be on {device} (the input's device), got {out.device}")
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if not out.is_contiguous(memory_format=fmt):
        layout = "channels_last" if channels_last else "NCHW"
        raise ValueError(f"{op}: out must be {layout}-contiguous (channels_last={channels_last}), got strides {out.stride()}")
    if out.requires_grad:
        raise ValueError(f"{op}: out must not require grad (the op is not differentiable)")
    if source is not None and not torch.compiler.is_compiling() and _shares_memory(out, source):  # data_ptr() cannot be traced; the kernel checks too
        raise ValueError(f"{op}: out must not share memory with its input")
    return out


def mix_images(
    x: torch.Tensor, lam: torch.Tensor, boxes: torch.Tensor, *, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Mix each image with its partner, the batch reversed (timm's convention), in one pass.

    x: float [N,C,H,W] (float32/16/bf16, NCHW or channels_last); lam: float32 [N];
    boxes: int32 [N,4] (y0, y1, x0, x1), half-open, empty for plain Mixup ->
    out[i] = inside box ? x[N-1-i] : lam[i] * x[i] + (1 - lam[i]) * x[N-1-i], same layout as x.
    out: optional buffer to write into (x's shape, dtype, device and layout, not sharing x's
    memory); returned.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"mix_images: x must be a [N, C, H, W] tensor, got {getattr(x, 'shape', type(x))}")
    lam = to_device_async(torch.as_tensor(lam, dtype=torch.float32), x.device)
    boxes = to_device_async(torch.as_tensor(boxes, dtype=torch.int32), x.device)
    if out is not None:
        check_out(out, "mix_images", tuple(x.shape), x.dtype, x.device, is_channels_last(x), x)
    if _use_kernel("mix_images", x.device):
        if out is None:
            return torch.ops.bridgedfast.mix_images.default(x, lam, boxes)
        return torch.ops.bridgedfast.mix_images.out(x, lam, boxes, out=out)
    result = mix_images_reference(x, lam, boxes)
    return result if out is None else out.copy_(result)


def _check_gather_items(sources: list[torch.Tensor], items: torch.Tensor, out: torch.Tensor) -> None:
    """The kernels' bounds checks, repeated for the pure-PyTorch fallback."""
    if items.dtype != torch.int64 or items.dim() != 2 or items.shape[1] != 4 or items.device.type != "cpu":
        raise ValueError(f"gather_images: items must be a CPU int64 [N, 4] tensor, got {items.dtype} {tuple(items.shape)} on {items.device}")
    sizes = torch.tensor([s.numel() for s in sources] + [0], dtype=torch.int64)
    src, start, n, dst = items.unbind(1)
    # Bounds as differences: sums of huge int64 values would wrap around and pass.
    have = sizes[src.clamp(0, len(sources))]
    bad = (src < 0) | (src >= len(sources)) | (start < 0) | (n < 0) | (dst < 0) | (dst > out.numel())
    bad |= (n > out.numel() - dst) | (start > have) | (n > have - start)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise ValueError(f"gather_images: item {i} {items[i].tolist()} is out of range of its source or of out")


def gather_images(
    sources: list[torch.Tensor], items: torch.Tensor, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Copy byte ranges of flat uint8 sources into one flat uint8 buffer (the store -> batch gather).

    sources: 1-D uint8 tensors on one device (CPU: e.g. memory-mapped shards; CUDA: a
    GPU-resident store); items: CPU int64 [N,4] rows (source, src_offset, nbytes, dst_offset);
    out: 1-D uint8 on the sources' device (allocated to fit when None) -> out.
    """
    items = torch.as_tensor(items, dtype=torch.int64)
    if len(sources) == 0 and items.shape[0] > 0:
        raise ValueError("gather_images: items given but no sources")
    if out is None:
        device = sources[0].device if sources else torch.device("cpu")
        end = int((items[:, 3] + items[:, 2]).max()) if items.shape[0] else 0
        out = torch.empty(end, dtype=torch.uint8, device=device)
    if _use_kernel("gather_images", out.device):
        torch.ops.bridgedfast.gather_images.default(list(sources), items, out)
        return out
    _check_gather_items(list(sources), items, out)
    return gather_images_reference(list(sources), items, out)


def decode_jpegs_compiled() -> bool:
    """Whether the extension has its libjpeg-turbo decoding op (built where libjpeg-turbo's headers
    were found; see setup.py). Without it decode_jpegs runs its reference, one image at a time."""
    return _ext.has_kernel("decode_jpegs", "cpu")


def decode_jpegs(sources: list[torch.Tensor], items: torch.Tensor, out: torch.Tensor, threads: int = 1,
                 own_entropy: bool = True, own_entropy_min_mcus: int = 64) -> torch.Tensor:
    """Decodes a batch of JPEGs, or only a region of each, into one packed uint8 CPU buffer.

    sources: 1-D uint8 CPU tensors holding the JPEG bytes (e.g. a store's mapped shards); items:
    int64 [N, 11] rows (source, offset, nbytes, dst, height, width, scale, top, left, region_h,
    region_w): the JPEG at sources[source][offset:offset+nbytes] decodes at 1/scale (1, 2, 4 or 8)
    to height x width, and its region [top:top+region_h, left:left+region_w] is written to
    out[dst:] as uint8 [region_h, region_w, 3]. With the compiled op (libjpeg-turbo) only the
    region is reconstructed (rows above it are skipped, columns beside it cropped, rows below it
    never read), on `threads` threads without the GIL; its pixels equal those of a whole decode.
    JPEGs with a restart marker after every MCU (what `pack` and ImageStoreWriter write) decode
    only the MCUs around the region, Huffman-decoded by the op's own decoder where there are at
    least own_entropy_min_mcus of them (below that its per-image table building costs more than
    it saves), else by libjpeg's (always with own_entropy=False); the pixels are the same.
    Returns int32 [N] statuses: 0 decoded, 1 does not decode (or needs a conversion libjpeg does
    not do, e.g. CMYK), 2 decodes to another size than (height, width). Raises ValueError for an
    item out of range of its source, its image or out.
    """
    items = torch.as_tensor(items, dtype=torch.int64)
    if items.dim() != 2 or items.shape[1] != len(DECODE_COLUMNS) or items.device.type != "cpu":
        raise ValueError(f"decode_jpegs: items must be a CPU int64 [N, {len(DECODE_COLUMNS)}] tensor, got "
                         f"{items.dtype} {tuple(items.shape)}")
    if out.device.type != "cpu" or out.dtype != torch.uint8 or out.dim() != 1:
        raise ValueError("decode_jpegs: out must be a 1-D uint8 CPU tensor")
    if decode_jpegs_compiled():
        try:
            return torch.ops.bridgedfast.decode_jpegs.default(list(sources), items, out, int(threads), bool(own_entropy),
                                                              int(own_entropy_min_mcus))
        except RuntimeError as exc:  # the op's bounds checks (one message, before anything is written)
            raise ValueError(str(exc).splitlines()[0]) from None
    sizes = torch.tensor([t.numel() for t in sources] + [0], dtype=torch.int64)
    s, start, n, dst, h, w, scale, top, left, rh, rw = items.unbind(1)
    have = sizes[s.clamp(0, len(sources))]
    bad = (s < 0) | (s >= len(sources)) | (start < 0) | (n <= 0) | (start > have) | (n > have - start)
    bad |= ~((scale == 1) | (scale == 2) | (scale == 4) | (scale == 8)) | (top < 0) | (left < 0) | (rh <= 0) | (rw <= 0)
    bad |= (rh > h - top) | (rw > w - left) | (h > 1 << 16) | (w > 1 << 16) | (dst < 0) | (dst > out.numel())
    bad |= rh * rw * 3 > out.numel() - dst
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise ValueError(f"decode_jpegs: item {i} {items[i].tolist()} is out of range of its source, image or out")
    return decode_jpegs_reference(list(sources), items, out)


def jpeg_add_restarts(data: bytes | torch.Tensor) -> bytes | None:
    """The JPEG re-encoded losslessly (DCT coefficients copied, not decoded to pixels: it decodes
    to the same pixels) as a sequential JPEG with a restart marker after every MCU and optimised
    Huffman tables, about 1% larger (0.85% on bench_loader's photo-like JPEGs): decode_jpegs then
    entropy-decodes only the MCUs around a crop. None where the decode op was not built or the data does not decode."""
    if not decode_jpegs_compiled():
        return None
    t = data if isinstance(data, torch.Tensor) else torch.frombuffer(bytearray(data), dtype=torch.uint8)
    out = torch.ops.bridgedfast.jpeg_add_restarts.default(t.contiguous())
    return out.numpy().tobytes() if out.numel() else None


def _check_packed(images: PackedImages) -> PackedImages:
    """The index of a caller's PackedImages, checked against its buffer."""
    offset, h, w = images.index.unbind(1)
    numel = images.data.numel()
    bad = (h <= 0) | (w <= 0) | (offset < 0) | (offset > numel)
    bad |= w > (numel - offset) // 3 // h.clamp(min=1)  # offset + 3*h*w <= numel, without overflow
    _refuse_any(bad, lambda i: "an image does not fit the packed buffer" if i is None else
                f"image {i} (offset {int(offset[i])}, {int(h[i])}x{int(w[i])}) does not fit the {numel}-byte buffer")
    return images


def _check_batch(images: torch.Tensor) -> None:
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[3] != 3:
        raise ValueError(
            f"images must be a uint8 [N, H, W, 3] batch (RGB, channels last), got {images.dtype} {tuple(images.shape)}"
        )
    if images.shape[0] > 0 and (images.shape[1] == 0 or images.shape[2] == 0):
        raise ValueError(f"images must have a positive height and width, got {tuple(images.shape)}")


def _check_list(images: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[int]]:
    """The list and its sizes [h0, w0, h1, w1, ...], checked in one pass (it runs per batch)."""
    if len(images) == 0:
        raise ValueError("images must not be an empty list")
    sizes: list[int] = []
    device = images[0].device if isinstance(images[0], torch.Tensor) else None
    for i, img in enumerate(images):
        if not isinstance(img, torch.Tensor) or img.dtype != torch.uint8 or img.dim() != 3 or img.shape[2] != 3:
            raise ValueError(
                f"image {i} must be a uint8 [H, W, 3] tensor, got "
                f"{getattr(img, 'dtype', type(img).__name__)} {tuple(getattr(img, 'shape', ()))}"
            )
        h, w, _ = img.shape
        if h == 0 or w == 0:
            raise ValueError(f"image {i} must have a positive height and width, got {tuple(img.shape)}")
        if img.device != device:
            raise ValueError(f"images must all be on one device, got {sorted({str(im.device) for im in images})}")
        sizes += (h, w)
    return list(images), sizes


def _unsupported(images: object) -> ValueError:
    return ValueError("images must be PackedImages, a list of uint8 [H, W, 3] tensors or a uint8 [N, H, W, 3] tensor, "
                      f"got {type(images).__name__}")


def _op_images(images: Images) -> tuple[PackedImages | list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """What the kernels read, without copying pixels, and the images' heights and widths (CPU
    int64 [N]): a checked PackedImages, a dense NHWC batch as a packed view, any other NHWC batch
    as a list of its images (views), or a checked list."""
    if isinstance(images, PackedImages):
        form = _check_packed(images)
    elif isinstance(images, torch.Tensor):
        _check_batch(images)
        if images.shape[0] > 0 and not images.is_contiguous():
            n, h, w, _ = images.shape
            sizes = torch.tensor([h, w], dtype=torch.int64).repeat(n, 1)
            return list(images.unbind(0)), sizes[:, 0], sizes[:, 1]  # strided rows are read in place
        form = as_packed(images)
    elif isinstance(images, (list, tuple)):
        form, sizes = _check_list(images)
        hw = torch.tensor(sizes, dtype=torch.int64).view(-1, 2)
        return form, hw[:, 0], hw[:, 1]
    else:
        raise _unsupported(images)
    return form, form.index[:, 1], form.index[:, 2]


def as_packed(images: Images) -> PackedImages:
    """The packed form of `images` (zero-copy for PackedImages and contiguous NHWC batches; a
    list is copied into one buffer, which the ops themselves never need to do).

    The index of a caller's PackedImages is checked against its buffer; the index built here for
    a list or an NHWC batch fits by construction and is not checked again."""
    if isinstance(images, PackedImages):
        return _check_packed(images)
    if isinstance(images, torch.Tensor):
        _check_batch(images)
        n, h, w, _ = images.shape
        index = torch.empty(n, 3, dtype=torch.int64)
        index[:, 0] = torch.arange(n, dtype=torch.int64) * (h * w * 3)
        index[:, 1], index[:, 2] = h, w
        return PackedImages(images.contiguous().view(-1), index)
    if isinstance(images, (list, tuple)):
        return PackedImages.from_images(_check_list(images)[0])
    raise _unsupported(images)


def image_sizes(images: Images) -> tuple[torch.Tensor, torch.Tensor]:
    """(heights, widths) of images in any form the image ops take, as CPU int64 [N] tensors,
    without touching pixels (what parameter draws such as RandomResizedCrop boxes need).
    Raises ValueError for images the ops would refuse."""
    _, heights, widths = _op_images(images)
    return heights, widths


def images_device(images: Images) -> torch.device:
    """The device holding the pixels of `images` (any form the image ops take)."""
    if isinstance(images, PackedImages):
        return images.data.device
    if isinstance(images, torch.Tensor):
        return images.device
    if isinstance(images, (list, tuple)) and len(images) > 0 and isinstance(images[0], torch.Tensor):
        return images[0].device
    raise _unsupported(images)


def release_cached_outputs() -> int:
    """Frees the memory the ops keep for their next CPU outputs (blocks of up to two recent
    outputs that nothing references any more: reusing them spares a fresh batch its page
    faults); returns the bytes freed. Tensors in use are never affected."""
    return _ext.release_cached_outputs()


def check_size(size: int | Sequence[int]) -> list[int]:
    """An output size as [height, width]: an int (square) or a pair of positive ints; ValueError otherwise."""
    if isinstance(size, int) and not isinstance(size, bool):
        size = [size, size]
    size = list(size) if isinstance(size, (list, tuple, torch.Size)) else size
    if not isinstance(size, list) or len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(f"size must be a positive int or (height, width), got {size!r}")
    return size


def _floats(values: Sequence[float] | torch.Tensor) -> list[float]:
    """Python floats of a flat sequence; plain numbers stay constants while torch.compile traces."""
    if isinstance(values, (list, tuple)) and all(isinstance(v, (int, float)) for v in values):
        return [float(v) for v in values]
    return [float(v) for v in torch.as_tensor(values).reshape(-1)]


def check_normalisation(mean: Sequence[float] | None, std: Sequence[float] | None) -> tuple[list[float], list[float]]:
    """mean and std (3 values each, 0-1 scale; None: 0 and 1) as lists of floats; ValueError
    unless there are 3 of each and no std is zero."""
    mean_l = [0.0, 0.0, 0.0] if mean is None else _floats(mean)
    std_l = [1.0, 1.0, 1.0] if std is None else _floats(std)
    if len(mean_l) != 3 or len(std_l) != 3:
        raise ValueError(f"mean and std must have 3 values (RGB, 0-1 scale), got mean={mean!r}, std={std!r}")
    if any(v == 0.0 for v in std_l):
        raise ValueError(f"std must be non-zero, got {std!r}")
    return mean_l, std_l


def _host_int64(t: torch.Tensor | Sequence, name: str, shape: tuple[int, ...]) -> torch.Tensor:
    t = torch.as_tensor(t)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{name} must be integers, got {t.dtype}")
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} must have shape {list(shape)}, got {list(t.shape)}")
    return t.to("cpu", torch.int64)


def check_out_dtype(out_dtype: torch.dtype) -> None:
    """ValueError unless out_dtype is one the image ops write (float32, float16, bfloat16)."""
    if out_dtype not in OUT_DTYPES:
        raise ValueError(f"out_dtype must be torch.float32, torch.float16 or torch.bfloat16, got {out_dtype}")


def _check_out_not_over_list(out: torch.Tensor, images: list[torch.Tensor]) -> None:
    """ValueError when out shares memory with an image of the list (cheap: only images on out's
    storage get the precise check)."""
    if torch.compiler.is_compiling():
        return  # data_ptr() cannot be traced; the kernel checks too
    base = out.untyped_storage().data_ptr()
    for img in images:
        if img.untyped_storage().data_ptr() == base and _shares_memory(out, img):
            raise ValueError("resized_crop: out must not share memory with its input")


def _run_resized_crop(form: PackedImages | list[torch.Tensor], boxes: torch.Tensor, flip: torch.Tensor,
                      size: list[int], mean: list[float], std: list[float], antialias: bool, out_dtype: torch.dtype,
                      channels_last: bool, resize: torch.Tensor | None, out: torch.Tensor | None) -> torch.Tensor:
    is_list = not isinstance(form, PackedImages)
    device = form[0].device if is_list else form.data.device
    params = (boxes, flip, size, mean, std, bool(antialias), out_dtype, bool(channels_last), resize)
    n = len(form)
    if out is not None:
        check_out(out, "resized_crop", (n, 3, size[0], size[1]), out_dtype, device, bool(channels_last),
                  None if is_list else form.data)
        if is_list:
            _check_out_not_over_list(out, form)
    op = "resized_crop_list" if is_list else "resized_crop"
    if _use_kernel(op, device):
        args = (form, *params) if is_list else (form.data, form.index, *params)
        if out is None:
            return getattr(torch.ops.bridgedfast, op).default(*args)
        getattr(torch.ops.bridgedfast, op + "_into").default(*args, out)
        return out
    packed = PackedImages.from_images(form) if is_list else form
    result = resized_crop_reference(packed.data, packed.index, *params)
    return result if out is None else out.copy_(result)


def resized_crop(
    images: Images,
    boxes: torch.Tensor | Sequence[Sequence[int]],
    size: int | Sequence[int],
    *,
    flip: torch.Tensor | Sequence[bool] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    antialias: bool = True,
    out_dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Crop, resize, flip and normalise a batch of uint8 RGB images in one pass.

    images: PackedImages, list of uint8 [H,W,3] or uint8 [N,H,W,3], on CPU or CUDA (lists and
    batches are read in place: views with any row stride are fine);
    boxes: int [N,4] (top, left, height, width) inside each image; size: (H, W) or an int;
    flip: bool [N] (mirror after the resize) -> out_dtype [N,3,H,W] on the images' device,
    NCHW or channels_last, = torchvision resized_crop(float image, bilinear, antialias), hflip,
    then (x/255 - mean)/std (mean/std on the 0-1 scale; None keeps x/255).
    out: optional buffer to write into (that shape, dtype, device and layout); returned.
    """
    form, h, w = _op_images(images)
    n = h.shape[0]
    out_size = check_size(size)
    boxes_t = _host_int64(boxes, "boxes", (n, 4))
    flip_t = torch.zeros(n, dtype=torch.bool) if flip is None else torch.as_tensor(flip)
    if tuple(flip_t.shape) != (n,):
        raise ValueError(f"flip must be a bool [N] tensor with N = {n}, got shape {list(flip_t.shape)}")
    flip_t = flip_t.to("cpu", torch.bool)
    mean_l, std_l = check_normalisation(mean, std)
    check_out_dtype(out_dtype)
    top, left, bh, bw = boxes_t.unbind(1)
    bad = (bh <= 0) | (bw <= 0) | (top < 0) | (left < 0) | (bh > h) | (bw > w) | (top > h - bh) | (left > w - bw)
    _refuse_any(bad, lambda i: "resized_crop: a box is not inside its image" if i is None else (
        f"resized_crop: box {i} (top={int(top[i])}, left={int(left[i])}, height={int(bh[i])}, width={int(bw[i])}) "
        f"is not inside image {i} of size {int(h[i])}x{int(w[i])} (boxes are (top, left, height, width))"))
    return _run_resized_crop(form, boxes_t, flip_t, out_size, mean_l, std_l, antialias, out_dtype, channels_last, None,
                             out)


def resize_center_crop(
    images: Images,
    size: int | Sequence[int],
    resize: int,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    antialias: bool = True,
    out_dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """The eval transform in one pass: resize each image's shorter side to `resize`, take the
    center `size` crop, normalise.

    images: as resized_crop; size: (H, W) or an int; resize: int >= H and W -> out_dtype
    [N,3,H,W] = torchvision Resize(resize) (bilinear, antialias) + CenterCrop(size) on the float
    image, then (x/255 - mean)/std. out: optional buffer to write into, as resized_crop.
    """
    form, h, w = _op_images(images)
    n = h.shape[0]
    out_size = check_size(size)
    if not isinstance(resize, int) or isinstance(resize, bool) or resize < max(out_size):
        raise ValueError(f"resize must be an int >= the crop size {out_size}, got {resize!r}")
    mean_l, std_l = check_normalisation(mean, std)
    check_out_dtype(out_dtype)
    # torchvision's shorter-side rule: the long side is int(resize * long / short), in float64.
    wide = w > h
    short = torch.minimum(h, w).double()
    long_new = (resize * torch.maximum(h, w).double() / short).to(torch.int64)
    new_h = torch.where(wide, torch.full_like(h, resize), long_new)
    new_w = torch.where(wide, long_new, torch.full_like(w, resize))
    top = torch.round((new_h - out_size[0]).double() / 2.0).to(torch.int64)
    left = torch.round((new_w - out_size[1]).double() / 2.0).to(torch.int64)
    boxes_t = torch.stack([torch.zeros_like(h), torch.zeros_like(w), h, w], 1)
    resize_t = torch.stack([new_h, new_w, top, left], 1)
    flip_t = torch.zeros(n, dtype=torch.bool)
    return _run_resized_crop(form, boxes_t, flip_t, out_size, mean_l, std_l, antialias, out_dtype, channels_last,
                             resize_t, out)


if _ext.extension_loaded():

    @torch.library.register_fake("bridgedfast::gather_images")
    def _gather_images_fake(sources: list[torch.Tensor], items: torch.Tensor, out: torch.Tensor) -> None:
        torch._check(items.dim() == 2 and items.shape[1] == 4, lambda: "gather_images: items must be [N, 4]")
        torch._check(out.dim() == 1, lambda: "gather_images: out must be 1-D")
        return None

    @torch.library.register_fake("bridgedfast::mix_images")
    def _mix_images_fake(x: torch.Tensor, lam: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        torch._check(x.dim() == 4, lambda: f"mix_images: x must be 4D, got {x.dim()}D")
        torch._check(lam.shape == (x.shape[0],), lambda: "mix_images: lam must be [N]")
        torch._check(boxes.shape == (x.shape[0], 4), lambda: "mix_images: boxes must be [N, 4]")
        fmt = torch.channels_last if is_channels_last(x) else torch.contiguous_format
        return torch.empty_like(x, memory_format=fmt)

    @torch.library.register_fake("bridgedfast::mix_images.out")
    def _mix_images_out_fake(x: torch.Tensor, lam: torch.Tensor, boxes: torch.Tensor, *, out: torch.Tensor) -> torch.Tensor:
        torch._check(x.dim() == 4, lambda: f"mix_images: x must be 4D, got {x.dim()}D")
        torch._check(out.shape == x.shape, lambda: f"mix_images: out must have x's shape {list(x.shape)}")
        torch._check(out.dtype == x.dtype, lambda: f"mix_images: out must have x's dtype {x.dtype}")
        return out

    @torch.library.register_fake("bridgedfast::resized_crop")
    def _resized_crop_fake(
        data: torch.Tensor,
        index: torch.Tensor,
        boxes: torch.Tensor,
        flip: torch.Tensor,
        size: list[int],
        mean: list[float],
        std: list[float],
        antialias: bool,
        out_dtype: torch.dtype,
        channels_last: bool,
        resize: torch.Tensor | None = None,
    ) -> torch.Tensor:
        torch._check(data.dtype == torch.uint8 and data.dim() == 1, lambda: "resized_crop: data must be 1-D uint8")
        torch._check(index.dim() == 2 and index.shape[1] == 3, lambda: "resized_crop: index must be [N, 3]")
        torch._check(len(size) == 2, lambda: "resized_crop: size must be (height, width)")
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        return torch.empty(
            (index.shape[0], 3, size[0], size[1]), dtype=out_dtype, device=data.device, memory_format=fmt
        )

    @torch.library.register_fake("bridgedfast::resized_crop_into")
    def _resized_crop_into_fake(
        data: torch.Tensor,
        index: torch.Tensor,
        boxes: torch.Tensor,
        flip: torch.Tensor,
        size: list[int],
        mean: list[float],
        std: list[float],
        antialias: bool,
        out_dtype: torch.dtype,
        channels_last: bool,
        resize: torch.Tensor | None,
        out: torch.Tensor,
    ) -> None:
        expected = _resized_crop_fake(data, index, boxes, flip, size, mean, std, antialias, out_dtype, channels_last, resize)
        torch._check(out.shape == expected.shape, lambda: f"resized_crop: out must have shape {list(expected.shape)}")
        torch._check(out.dtype == out_dtype, lambda: f"resized_crop: out must have dtype {out_dtype}")
        return None

    @torch.library.register_fake("bridgedfast::resized_crop_list")
    def _resized_crop_list_fake(
        images: list[torch.Tensor],
        boxes: torch.Tensor,
        flip: torch.Tensor,
        size: list[int],
        mean: list[float],
        std: list[float],
        antialias: bool,
        out_dtype: torch.dtype,
        channels_last: bool,
        resize: torch.Tensor | None = None,
    ) -> torch.Tensor:
        torch._check(len(images) > 0, lambda: "resized_crop: images must not be empty")
        torch._check(len(size) == 2, lambda: "resized_crop: size must be (height, width)")
        for img in images:
            torch._check(img.dtype == torch.uint8 and img.dim() == 3, lambda: "resized_crop: images must be uint8 [H, W, 3]")
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        return torch.empty(
            (len(images), 3, size[0], size[1]), dtype=out_dtype, device=images[0].device, memory_format=fmt
        )

    @torch.library.register_fake("bridgedfast::resized_crop_list_into")
    def _resized_crop_list_into_fake(
        images: list[torch.Tensor],
        boxes: torch.Tensor,
        flip: torch.Tensor,
        size: list[int],
        mean: list[float],
        std: list[float],
        antialias: bool,
        out_dtype: torch.dtype,
        channels_last: bool,
        resize: torch.Tensor | None,
        out: torch.Tensor,
    ) -> None:
        expected = _resized_crop_list_fake(images, boxes, flip, size, mean, std, antialias, out_dtype, channels_last, resize)
        torch._check(out.shape == expected.shape, lambda: f"resized_crop: out must have shape {list(expected.shape)}")
        torch._check(out.dtype == out_dtype, lambda: f"resized_crop: out must have dtype {out_dtype}")
        return None
