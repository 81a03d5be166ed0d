"""MixedLoader: real and/or synthetic ImageStores -> augmented batches on the target device.

Per batch: the sampler picks (store, image) pairs, then
  * CPU, raw images: every shard of both stores is mapped side by side into one address range,
    so the batch is just offsets into that mapping and the fused augmentation reads the pixels
    straight from the page cache (zero copy);
  * otherwise (CUDA, or JPEG images): the gather op copies the bytes into one packed buffer
    (pinned for CUDA) with OpenMP threads and no GIL, JPEGs are decoded into the same buffer
    by the decode op (libjpeg-turbo, one GIL-free call per batch; with a TrainAugment-like
    augment the crops are drawn first and only each JPEG's crop is decoded, see
    `ops.decode_jpegs`; at reduced size too with jpeg_decode="reduced"),
    and the buffer goes to the GPU with a non-blocking copy on a side stream, where the
    augmentation runs; on CUDA, JPEGs are decoded by nvJPEG on the GPU instead, the whole
    batch in one call, straight into the packed batch there (`bridgedfast.data.decode`);
  * with `cache_on_device`, every decoded image lives on the device in one tensor and the batch
    is gathered there (a CUDA kernel on GPU): no CPU work per batch beyond a few index arrays.
On the CPU the augmented batches are written into recycled buffers (`BufferPool`) when the
augmentation takes `out=` (TrainAugment and EvalAugment do): a buffer is reused only once
nothing outside the loader references the batch it held, so batches a training loop keeps are
never overwritten, and the rest cost no fresh page faults.
Background threads prepare the next `prefetch` batches meanwhile: on the CPU, one per worker,
each making whole batches on its own (no thread waits for another, and one batch's Python work
overlaps the other batches' kernels); on CUDA, one that uses every worker. Every batch's augmentation
gets its own torch.Generator seeded from (seed, epoch, rank, batch), so results never depend on
prefetching, threads or timing.
"""
from __future__ import annotations

import inspect
import os
import queue
import threading
import warnings
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from .. import ops as _ops
from .._ext import set_thread_openmp_threads
from ..ops import to_device_async
from ..packed import PackedImages
from ..buffers import BufferPool
from . import decode as _decode
from .format import ENCODINGS, StoreCorruptError, jpeg_size_problem, shard_name
from .mapping import map_contiguous
from .sampler import MixedSampler, batch_seed
from .store import ImageStore, decode_jpeg

__all__ = ["MixedLoader"]

Augment = Callable[[PackedImages, torch.Generator], torch.Tensor]
_ALIGN = 64  # packed images start on cache-line boundaries (and 16-byte vector boundaries on GPU)
_JPEG = ENCODINGS["jpeg"]


def _aligned(nbytes: np.ndarray) -> np.ndarray:
    return (nbytes + _ALIGN - 1) // _ALIGN * _ALIGN


def _offsets(nbytes: np.ndarray) -> tuple[np.ndarray, int]:
    sizes = _aligned(nbytes)
    ends = np.cumsum(sizes)
    return ends - sizes, int(ends[-1]) if len(ends) else 0


class _StoreView:
    """One store's columns as flat numpy arrays, plus where its shards sit in the source list."""

    def __init__(self, store: ImageStore, source_base: int, target_of_label: np.ndarray) -> None:
        r = store.records
        self.store = store
        shard = r["shard"].astype(np.int64)
        self.source = shard + source_base
        self.offset = r["offset"].astype(np.int64)
        self.nbytes = r["nbytes"].astype(np.int64)
        mapped = np.array([t.numel() for t in store.shards] + [0], dtype=np.int64)
        self.intact = self.offset + self.nbytes <= mapped[shard]  # False where a shard is truncated
        self.height = r["height"].astype(np.int64)
        self.width = r["width"].astype(np.int64)
        self.is_jpeg = r["encoding"] == _JPEG
        self.targets = target_of_label[r["label"].astype(np.int64)]
        self.cache_offset: np.ndarray | None = None  # where each decoded image sits in the device cache
        self.header_ok = ~self.is_jpeg  # JPEGs whose frame header has been checked against the index

    def check(self, idx: np.ndarray) -> None:
        """Raises StoreCorruptError for the first of images `idx` whose shard is truncated or
        whose JPEG frame header disagrees with the index (or is over MAX_JPEG_PIXELS): decode
        buffers are sized from the index only once its claim has been checked this way
        (each JPEG's header is read once per loader)."""
        if not self.intact[idx].all():
            i = int(idx[~self.intact[idx]][0])
            raise StoreCorruptError(
                f"{self.store.path}: image {i} is damaged: {shard_name(int(self.store.records[i]['shard']))} "
                "is truncated (run ImageStore.verify() for the full list)")
        for i in np.unique(idx[~self.header_ok[idx]]):
            why = jpeg_size_problem(self.store.encoded(int(i)), self.height[i], self.width[i])
            if why is not None:
                raise StoreCorruptError(f"{self.store.path}: image {int(i)} is damaged: {why}")
            self.header_ok[i] = True


def _decode_region(view: _StoreView, i: int, scale: int, size: tuple[int, int], region, out: torch.Tensor,
                   dst: int) -> None:
    """Image i of view decoded whole at 1/scale by torchvision (Pillow for scale > 1), checked to
    be `size`, and its region (top, left, height, width) written to out[dst:] as [h, w, 3];
    StoreCorruptError naming the image where it does not decode or has another size."""
    try:
        if scale == 1:
            pixels = decode_jpeg(view.store.encoded(i))
        else:  # a read-only numpy array (Pillow's)
            pixels = torch.from_numpy(_decode.decode_jpeg_scaled(view.store.encoded(i), scale).copy())
    except Exception as exc:
        raise StoreCorruptError(f"{view.store.path}: image {i} is damaged: its JPEG does not decode ({exc})") from None
    if tuple(pixels.shape) != (*size, 3):
        full = "" if scale == 1 else f" at 1/{scale} of its size"
        raise StoreCorruptError(f"{view.store.path}: image {i} is damaged: JPEG decodes{full} to "
                                f"{tuple(pixels.shape)}, index says {(*size, 3)}")
    top, left, h, w = (int(v) for v in region)
    out[dst : dst + h * w * 3].view(h, w, 3).copy_(pixels[top : top + h, left : left + w])


def _class_map(store: ImageStore, classes: list[str], role: str) -> np.ndarray:
    missing = [c for c in store.classes if c not in classes]
    if missing:
        raise ValueError(
            f"{role} store {str(store.path)!r} has classes {missing} that are not among the target classes {classes}"
        )
    position = {c: i for i, c in enumerate(classes)}
    return np.array([position[c] for c in store.classes], dtype=np.int64)


def _writes_into(augment: Augment) -> bool:
    """Whether `augment` can write its batch into a given buffer: it has `output_spec(n)` and
    takes an `out` keyword (bridgedfast.augment.TrainAugment / EvalAugment do)."""
    if not callable(getattr(augment, "output_spec", None)):
        return False
    try:
        params = inspect.signature(augment).parameters
    except (TypeError, ValueError):
        return False
    out = params.get("out")
    return out is not None and out.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _open(store: ImageStore | str | os.PathLike | None) -> ImageStore | None:
    if store is None or isinstance(store, ImageStore):
        return store
    return ImageStore(store)


def _loader_device(device: str | torch.device) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} but CUDA is not available")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {str(device)!r}")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


class _HostBuffers:
    """Reusable host buffers (pinned for CUDA) for each producer thread, round-robin over `slots`
    of them; a slot is reused once its previous host->device copy is done (its event)."""

    def __init__(self, slots: int, pin_memory: bool, cuda: bool) -> None:
        self.slots, self.pin_memory, self.cuda = slots, pin_memory, cuda
        self.rings: dict[int, list] = {}  # producer -> [next slot, [buffer, copy-done event] x slots]

    def get(self, producer: int, nbytes: int) -> tuple[torch.Tensor, torch.cuda.Event | None]:
        if producer not in self.rings:
            self.rings[producer] = [0] + [[torch.empty(0, dtype=torch.uint8), None] for _ in range(self.slots)]
        ring = self.rings[producer]
        slot = ring[1 + ring[0]]
        ring[0] = (ring[0] + 1) % self.slots
        if slot[1] is not None:
            slot[1].synchronize()
        if slot[0].numel() < nbytes:
            slot[0] = torch.empty(int(nbytes * 1.25) + _ALIGN, dtype=torch.uint8, pin_memory=self.pin_memory)
        if self.cuda and slot[1] is None:
            slot[1] = torch.cuda.Event()
        return slot[0][:nbytes], slot[1]


class _StoreBytes:
    """Where a loader's images come from: the stores' columns, every shard mapped side by side
    when the platform allows it (zero copy on the CPU), reusable host buffers, and gathering or
    JPEG-decoding a batch's images into one packed buffer (or a device-resident cache of them).
    The base of MixedLoader, which sets the attributes these methods use."""

    def _map_stores(self) -> None:
        """Each store's columns as flat arrays, and where its shards' bytes are."""
        self._views: list[_StoreView | None] = []
        self._sources: list[torch.Tensor] = []
        for store, role in ((self.real, "real"), (self.synthetic, "synthetic")):
            if store is None:
                self._views.append(None)
                continue
            self._views.append(_StoreView(store, len(self._sources), _class_map(store, self.classes, role)))
            self._sources.extend(store.shards)
        # Every shard of both stores side by side in one mapping: the CPU path then hands the
        # mapping itself to the augmentation (zero copy) and the gather has a single source.
        self._combined: torch.Tensor | None = None
        files = [(store.path / shard_name(k), t.numel()) for store in (self.real, self.synthetic) if store is not None
                 for k, t in enumerate(store.shards)]
        mapped = map_contiguous(files)
        if mapped is not None:
            self._combined, starts = mapped
            for view in self._views:
                if view is not None:
                    view.offset = view.offset + np.asarray(starts, dtype=np.int64)[view.source]
                    view.source = np.zeros_like(view.source)
            self._sources = [self._combined]

    def _check_intact(self, is_syn: np.ndarray, index: np.ndarray) -> None:
        """Before any buffer is sized from the index: shards hold the bytes, JPEG headers agree."""
        for which, mask in ((0, ~is_syn), (1, is_syn)):
            if mask.any():
                self._views[which].check(index[mask])

    def _zero_copy(self, is_syn, index, heights, widths) -> PackedImages | None:
        """The batch as offsets into the store mapping itself (CPU, all raw): no copy at all."""
        if self.device.type != "cpu" or self._combined is None:
            return None
        offsets = np.empty(len(index), dtype=np.int64)
        for which, mask in ((0, ~is_syn), (1, is_syn)):
            if mask.any():
                view = self._views[which]
                if view.is_jpeg[index[mask]].any():
                    return None
                offsets[mask] = view.offset[index[mask]]
        return PackedImages(self._combined, torch.from_numpy(np.stack([offsets, heights, widths], 1)))

    def _gather_host(self, is_syn, index, dst, total, heights, widths, scales=None, skip_jpeg=False,
                     regions=None, decoded=None):
        """The batch packed in a (pinned, for CUDA) host buffer: raw images by the gather op,
        JPEGs decoded into it (the decode op, or the thread pool without it). heights/widths are
        what each slot holds. scales: JPEGs decoded at 1/scales[p]; regions: int64 [N, 4]
        (top, left, height, width) of each JPEG's decoded image that its slot holds (None: the whole
        image); decoded: (heights, widths) the JPEGs decode to when that is not the slot's size.
        skip_jpeg leaves the JPEGs' slots empty."""
        from ..ops import gather_images

        out, event = self._host.get(getattr(self._local, "producer", 0), total)
        items, jpegs = [], []
        for which, mask in ((0, ~is_syn), (1, is_syn)):
            if not mask.any():
                continue
            view, pos = self._views[which], np.flatnonzero(mask)
            idx = index[pos]
            jpeg = view.is_jpeg[idx]
            raw_pos, raw_idx = pos[~jpeg], idx[~jpeg]
            if len(raw_idx):
                items.append(np.stack([view.source[raw_idx], view.offset[raw_idx], view.nbytes[raw_idx], dst[raw_pos]], 1))
            if jpeg.any():
                jpegs.append((view, idx[jpeg], pos[jpeg]))
        if items:
            gather_images(self._sources, torch.from_numpy(np.concatenate(items)), out)
        if jpegs and not skip_jpeg:
            full_h, full_w = (heights, widths) if decoded is None else decoded
            if regions is None:
                regions = np.stack([np.zeros_like(full_h), np.zeros_like(full_w), full_h, full_w], 1)
            self._decode_into(out, jpegs, dst, full_h, full_w, scales, regions)
        index_t = torch.from_numpy(np.stack([dst, heights, widths], 1))
        return PackedImages(out, index_t), event

    def _decode_into(self, out: torch.Tensor, jpegs, dst, heights, widths, scales, regions) -> None:
        """Decodes JPEGs ((view, images, batch positions) per store) into out: position p's image
        decodes at 1/scales[p] to heights[p] x widths[p], and its region regions[p] goes to out[dst[p]:].
        The decode op does the batch in one call; an image it cannot decode (damaged, or a
        colour space libjpeg does not convert) goes through torchvision/Pillow, which either
        decode it or name it."""
        images = np.concatenate([i for _, i, _ in jpegs])
        pos = np.concatenate([p for _, _, p in jpegs])
        of_view = np.repeat(np.arange(len(jpegs)), [len(i) for _, i, _ in jpegs])
        scale = np.ones(len(pos), np.int64) if scales is None else np.asarray(scales, np.int64)[pos]
        failed = list(range(len(pos)))
        if self._decode_op:
            rows = np.empty((len(pos), len(_ops.DECODE_COLUMNS)), dtype=np.int64)
            rows[:, :3] = np.concatenate([np.stack([v.source[i], v.offset[i], v.nbytes[i]], 1) for v, i, _ in jpegs])
            rows[:, 3], rows[:, 4], rows[:, 5], rows[:, 6] = dst[pos], heights[pos], widths[pos], scale
            rows[:, 7:] = regions[pos]
            status = _ops.decode_jpegs(self._sources, torch.from_numpy(rows), out,
                                        threads=getattr(self._local, "threads", self.workers))
            failed = np.flatnonzero(status.numpy()).tolist()

        def decode(k: int) -> None:
            view, i, p = jpegs[of_view[k]][0], int(images[k]), int(pos[k])
            _decode_region(view, i, int(scale[k]), (int(heights[p]), int(widths[p])), regions[p], out, int(dst[p]))

        if not failed:
            return
        if len(failed) == 1 or self._decode_op:  # the op's failures are rare: one at a time
            for k in failed:
                decode(k)
            return
        with self._lock:  # producers share one pool
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="bridgedfast-jpeg")
        # One task per worker (every workers-th image): fewer hand-offs than one task per image.
        chunks = [failed[k :: self.workers] for k in range(min(self.workers, len(failed)))]
        for _ in self._pool.map(lambda chunk: [decode(k) for k in chunk], chunks):
            pass

    def _jpeg_mask(self, is_syn: np.ndarray, index: np.ndarray) -> np.ndarray:
        """Which of the batch's images are JPEGs."""
        jpeg = np.zeros(len(index), dtype=bool)
        for which, mask in ((0, ~is_syn), (1, is_syn)):
            if mask.any():
                jpeg[mask] = self._views[which].is_jpeg[index[mask]]
        return jpeg

    def _gather_planned(self, is_syn, index, heights, widths, generator, jpeg):
        """Draws the batch's crops before decoding, then decodes only each JPEG's crop (and, with
        jpeg_decode="reduced", at the smallest libjpeg scale that keeps the crop at least the
        output size) into a packed buffer of just those crops; raw images are packed whole.
        Returns (packed, copy event, (boxes within the packed slots, flip)): the augmentation of
        the packed crops with these boxes is the augmentation of the whole images with the drawn
        boxes (rounded onto the reduced grid where a JPEG is reduced). jpeg: which images are JPEGs."""
        boxes, flip = self._planned.draw(heights, widths, generator)
        out_h, out_w = self._planned.output_size
        scales = np.ones(len(index), dtype=np.int64)
        if self.jpeg_decode == "reduced":
            scales[jpeg] = _decode.dct_scales(boxes[jpeg, 2], boxes[jpeg, 3], out_h, out_w)
        small_h, small_w = _decode.scaled_sizes(heights, widths, scales)
        regions = _decode.snap_boxes(boxes, scales, heights, widths)[1]  # the boxes themselves where scale is 1
        slot_h, slot_w = np.where(jpeg, regions[:, 2], small_h), np.where(jpeg, regions[:, 3], small_w)
        dst, total = _offsets(slot_h * slot_w * 3)
        packed, event = self._gather_host(is_syn, index, dst, total, slot_h, slot_w, scales, regions=regions,
                                          decoded=(small_h, small_w))
        within = regions.copy()
        within[jpeg, :2] = 0
        return packed, event, (within, flip)

    def _gather_nvjpeg(self, is_syn, index, heights, widths) -> PackedImages | None:
        """The batch packed on the GPU: raw images gathered on the host and copied over, JPEGs
        decoded there by nvJPEG in one call. None when nvJPEG cannot decode this batch (the
        host path then decodes it on the CPU)."""
        jobs = []
        for which, mask in ((0, ~is_syn), (1, is_syn)):
            if mask.any():
                view, pos = self._views[which], np.flatnonzero(mask)
                jobs += [(view, int(i), int(p)) for i, p in zip(index[pos], pos) if view.is_jpeg[i]]
        if not jobs:
            return None
        dst, total = _offsets(heights * widths * 3)
        with torch.cuda.stream(self._stream):
            decoded = _decode.decode_jpegs_cuda([view.store.encoded(i) for view, i, _ in jobs], self.device)
            if decoded is None:
                return None
            for (view, i, p), image in zip(jobs, decoded):
                if tuple(image.shape) != (heights[p], widths[p], 3):
                    raise StoreCorruptError(
                        f"{view.store.path}: image {i} is damaged: JPEG decodes to {tuple(image.shape)}, "
                        f"index says {(int(heights[p]), int(widths[p]), 3)}"
                    )
            out = torch.empty(total, dtype=torch.uint8, device=self.device)
            if len(jobs) < len(index):  # raw images too: gathered on the host, one copy over
                host, event = self._gather_host(is_syn, index, dst, total, heights, widths, skip_jpeg=True)
                out.copy_(host.data[:total], non_blocking=True)
                event.record(self._stream)
            for (view, i, p), image in zip(jobs, decoded):
                out[dst[p] : dst[p] + image.numel()].view(image.shape).copy_(image)
                image.record_stream(self._stream)  # nvJPEG may have allocated it on its own stream
        return PackedImages(out, torch.from_numpy(np.stack([dst, heights, widths], 1)))

    # -- the device-resident cache ---------------------------------------------------------
    def _cache_bytes(self) -> int:
        return sum(int(_aligned(v.height * v.width * 3).sum()) for v in self._views if v is not None)

    def _build_cache(self) -> None:
        """Decodes both stores once into one uint8 tensor on the device (images 64-byte aligned;
        JPEGs by nvJPEG when the loader decodes with it)."""
        for which, view in enumerate(self._views):
            if view is not None:  # every size checked before the cache is sized from them
                self._check_intact(np.full(len(view.height), which == 1), np.arange(len(view.height)))
        sizes = [v.height * v.width * 3 if v is not None else np.empty(0, np.int64) for v in self._views]
        starts, total = _offsets(np.concatenate(sizes))
        cache = torch.empty(total, dtype=torch.uint8, device=self.device)
        chunk, first = 256, 0
        for which, view in enumerate(self._views):
            if view is None:
                continue
            n = len(view.height)
            view.cache_offset = starts[first : first + n]
            first += n
            for lo in range(0, n, chunk):
                idx = np.arange(lo, min(lo + chunk, n))
                is_syn, h, w = np.full(len(idx), which == 1), view.height[idx], view.width[idx]
                dst, end = _offsets(h * w * 3)
                packed = self._gather_nvjpeg(is_syn, idx, h, w) if self.jpeg_decode == "nvjpeg" else None
                if packed is not None:  # decoded on the GPU (same layout), on the loader's stream
                    torch.cuda.current_stream(self.device).wait_stream(self._stream)
                    event = None
                else:
                    packed, event = self._gather_host(is_syn, idx, dst, end, h, w)
                at = int(view.cache_offset[lo])
                cache[at : at + end].copy_(packed.data[:end], non_blocking=event is not None)
                if event is not None:
                    event.record(torch.cuda.current_stream(self.device))
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()
        self._cache = cache

    def _gather_cached(self, is_syn, index, heights, widths) -> PackedImages:
        """From the device cache: zero copy on CPU; on CUDA the gather kernel packs the batch."""
        from ..ops import gather_images

        offsets = np.empty(len(index), dtype=np.int64)
        for which, mask in ((0, ~is_syn), (1, is_syn)):
            if mask.any():
                offsets[mask] = self._views[which].cache_offset[index[mask]]
        if self.device.type == "cpu":
            return PackedImages(self._cache, torch.from_numpy(np.stack([offsets, heights, widths], 1)))
        nbytes = heights * widths * 3
        dst, total = _offsets(nbytes)
        items = torch.from_numpy(np.stack([np.zeros_like(offsets), offsets, nbytes, dst], 1))
        with torch.cuda.stream(self._stream):
            out = torch.empty(total, dtype=torch.uint8, device=self.device)
            gather_images([self._cache], items, out)
        return PackedImages(out, torch.from_numpy(np.stack([dst, heights, widths], 1)))


class MixedLoader(_StoreBytes):
    """Batches `(images float[B,3,H,W], targets int64[B], is_synthetic bool[B])` on `device`.

    real / synthetic: ImageStores (or their paths); either may be None for a single-store loader.
    synthetic_fraction: None = proportional to the store sizes (one shuffle of both); 0.0 = real
      only; 1.0 = synthetic only (bridged transfer's first stage); 0 < f < 1 = that share of
      every batch (an epoch is then one pass over the real store).
    classes: the target class list (default: the real store's, else the synthetic store's);
      stores' classes are matched to it by name.
    augment: `augment(PackedImages, torch.Generator) -> float [N,3,H,W]` on the images' device,
      e.g. bridgedfast.augment.TrainAugment.
    cache_on_device: keep every decoded image on `device` (GPU memory for CUDA) and gather there;
      "auto" does so on CUDA when the stores fit in half the free GPU memory.
    prefetch: batches prepared ahead by background threads (0 = synchronous, on the calling thread).
    workers: CPU threads for the gather, JPEG decoding and (on the CPU) the augmentation (default:
      torch.get_num_threads()).
    producers: background threads that each make whole batches, in turn (default: `workers` on
      the CPU, so that each worker makes its own batches single-threaded, as DataLoader's
      workers do: no thread ever waits for another, and one batch's Python work overlaps the
      others' kernels; 1 on CUDA). The `workers` threads are shared out among them. Batches
      come out in order and are identical for every value; each producer holds a batch in the
      making, so memory grows with their number (producers=1 holds the fewest).
    recycle_outputs: on the CPU, write batches into a pool of recycled buffers
      (when the augment supports `out=`); a buffer is reused only when no yielded batch that
      used it is referenced any more. False allocates every batch afresh.
    jpeg_decode: how JPEG images are decoded (see `bridgedfast.data.decode`): "full" = at full
      size on the CPU (only each image's drawn crop, when the augment draws its crops first as
      TrainAugment does: the same pixels); "reduced" = on the CPU at 1/2, 1/4 or 1/8 size wherever the drawn crop is
      still at least the output size after it (needs a TrainAugment-like augment; pixels differ
      slightly from "full"); "nvjpeg" = batched on the GPU (device="cuda" only), falling back to
      the CPU for a batch nvJPEG cannot decode; "auto" = "nvjpeg" on CUDA, "full" on the CPU.
    Call `set_epoch(epoch)` before each epoch, as with DistributedSampler.
    """

    def __init__(
        self,
        real: ImageStore | str | os.PathLike | None,
        synthetic: ImageStore | str | os.PathLike | None = None,
        *,
        batch_size: int,
        synthetic_fraction: float | None = None,
        augment: Augment,
        device: str | torch.device = "cpu",
        seed: int = 0,
        drop_last: bool = True,
        rank: int = 0,
        world_size: int = 1,
        classes: Sequence[str] | None = None,
        shuffle: bool = True,
        prefetch: int = 2,
        workers: int | None = None,
        cache_on_device: bool | str = False,
        pin_memory: bool | None = None,
        recycle_outputs: bool = True,
        jpeg_decode: str = "auto",
        producers: int | None = None,
    ) -> None:
        if jpeg_decode not in _decode.JPEG_DECODE_MODES:
            raise ValueError(f"jpeg_decode must be one of {list(_decode.JPEG_DECODE_MODES)}, got {jpeg_decode!r}")
        self.real, self.synthetic = _open(real), _open(synthetic)
        if self.real is None and self.synthetic is None:
            raise ValueError("MixedLoader needs a real store, a synthetic store, or both")
        if self.real is None:
            if synthetic_fraction not in (None, 1.0):
                raise ValueError(f"synthetic_fraction={synthetic_fraction} needs a real store; without one use None or 1.0")
            synthetic_fraction = 1.0
        if self.synthetic is None:
            if synthetic_fraction not in (None, 0.0):
                raise ValueError(f"synthetic_fraction={synthetic_fraction} needs a synthetic store")
            synthetic_fraction = 0.0
        if not callable(augment):
            raise ValueError(f"augment must be callable as augment(PackedImages, torch.Generator), got {augment!r}")
        if prefetch < 0:
            raise ValueError(f"prefetch must be >= 0, got {prefetch}")
        self.device = _loader_device(device)
        self.classes: list[str] = list(classes) if classes is not None else (self.real or self.synthetic).classes
        if jpeg_decode == "nvjpeg" and self.device.type != "cuda":
            raise ValueError(f"jpeg_decode='nvjpeg' decodes on the GPU: it needs device='cuda', got {str(device)!r}")
        self.jpeg_decode = ("nvjpeg" if self.device.type == "cuda" else "full") if jpeg_decode == "auto" else jpeg_decode
        self.augment = augment
        # With a TrainAugment-like augment the crops are drawn before decoding, so each JPEG is
        # decoded only as far as its crop needs (same pixels as a whole decode).
        self._planned = _decode.PlannedCrop.of(augment) if self.jpeg_decode in ("full", "reduced") else None
        self._decode_op = _ops.decode_jpegs_compiled()
        if self.jpeg_decode == "reduced" and self._planned is None:
            warnings.warn(f"MixedLoader(jpeg_decode='reduced'): {type(augment).__name__} does not draw its crop boxes "
                          "(as TrainAugment.draw does), so JPEGs are decoded at full size", RuntimeWarning, stacklevel=2)
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.batch_size = batch_size
        self.prefetch = prefetch
        self.workers = workers or torch.get_num_threads()
        if producers is not None and (producers < 1 or (producers > 1 and (prefetch == 0 or self.device.type != "cpu"))):
            raise ValueError(f"producers must be >= 1, and 1 unless prefetch > 0 on the CPU; got producers={producers} "
                             f"with prefetch={prefetch}, device={str(self.device)!r}")
        self.producers = (producers or self.workers) if prefetch > 0 and self.device.type == "cpu" else 1
        self._kernel_threads = max(1, self.workers // self.producers)  # each producer's share of the workers
        self.pin_memory = self.device.type == "cuda" if pin_memory is None else pin_memory
        self.sampler = MixedSampler(
            len(self.real) if self.real is not None else 0,
            len(self.synthetic) if self.synthetic is not None else 0,
            batch_size=batch_size,
            synthetic_fraction=synthetic_fraction,
            seed=seed,
            drop_last=drop_last,
            rank=rank,
            world_size=world_size,
            shuffle=shuffle,
        )
        self._map_stores()
        self._pool: ThreadPoolExecutor | None = None
        self._active: weakref.ref | None = None
        self._host = _HostBuffers(prefetch + 2, self.pin_memory, self.device.type == "cuda")
        self._local = threading.local()  # which producer the calling thread is, and its kernels' threads
        self._lock = threading.Lock()
        self._stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        # Batches alive at once: the consumer's, the queued ones, one in the making per producer, and
        # one the training loop may still hold while it takes the next.
        self._outputs: BufferPool | None = None
        writes_into = self.device.type == "cpu" and _writes_into(augment)
        # False: a fresh buffer per batch, also for an augment that would recycle its own.
        self._fresh_outputs = writes_into and not recycle_outputs
        if writes_into and recycle_outputs:
            self._outputs = BufferPool(self.producers * (_queue_size(prefetch, self.producers) + 1) + 2)
        self._cache: torch.Tensor | None = None
        if cache_on_device == "auto":
            cache_on_device = self.device.type == "cuda" and self._cache_bytes() < torch.cuda.mem_get_info(self.device)[0] // 2
        elif cache_on_device not in (True, False):
            raise ValueError(f"cache_on_device must be True, False or 'auto', got {cache_on_device!r}")
        if cache_on_device:
            self._build_cache()

    # -- epochs ------------------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        plan = self.sampler.plan()
        epoch = self.sampler.epoch
        # The host buffers are shared: a new pass over the loader ends any unfinished one.
        previous = self._active() if self._active is not None else None
        if previous is not None:
            previous.close()
        if self.prefetch == 0:
            return (self._consume(self._produce(epoch, b, p)) for b, p in enumerate(plan))
        prefetcher = _Prefetcher(self, epoch, plan)
        self._active = weakref.ref(prefetcher)
        return prefetcher

    # -- one batch -----------------------------------------------------------------------------
    def _produce(self, epoch: int, b: int, planned: tuple[np.ndarray, np.ndarray]):
        is_syn, index = planned
        targets = np.empty(len(index), dtype=np.int64)
        heights = np.empty(len(index), dtype=np.int64)
        widths = np.empty(len(index), dtype=np.int64)
        for which, mask in ((0, ~is_syn), (1, is_syn)):
            if mask.any():
                view = self._views[which]
                targets[mask] = view.targets[index[mask]]
                heights[mask], widths[mask] = view.height[index[mask]], view.width[index[mask]]
        generator = torch.Generator().manual_seed(batch_seed(self.seed, epoch, self.rank, b))
        event = None
        crop = None  # (boxes, flip) drawn before decoding, to decode only each JPEG's crop
        if self._cache is not None:
            packed = self._gather_cached(is_syn, index, heights, widths)
        else:
            self._check_intact(is_syn, index)
            packed = self._zero_copy(is_syn, index, heights, widths)
            if packed is None and self.jpeg_decode == "nvjpeg":
                packed = self._gather_nvjpeg(is_syn, index, heights, widths)
            jpeg = self._jpeg_mask(is_syn, index) if packed is None and self._planned is not None else None
            if jpeg is not None and jpeg.any():
                packed, event, crop = self._gather_planned(is_syn, index, heights, widths, generator, jpeg)
            if packed is None:
                dst, total = _offsets(heights * widths * 3)
                packed, event = self._gather_host(is_syn, index, dst, total, heights, widths)
        targets_t = torch.from_numpy(targets)
        is_syn_t = torch.from_numpy(is_syn.copy())

        def augment(images: PackedImages, out: torch.Tensor | None = None) -> torch.Tensor:
            if crop is not None:
                return self._planned(images, *crop, out=out)
            return self.augment(images, generator) if out is None else self.augment(images, generator, out=out)

        if self._stream is not None:
            with torch.cuda.stream(self._stream):
                if packed.device.type == "cpu":
                    packed = packed.to(self.device, non_blocking=True)
                    event.record(self._stream)  # the host buffer may be reused once this copy is done
                images = augment(packed)
                targets_t = to_device_async(targets_t, self.device)
                is_syn_t = to_device_async(is_syn_t, self.device)
                ready = torch.cuda.Event()
                ready.record(self._stream)
            return images, targets_t, is_syn_t, ready
        if self._outputs is not None or self._fresh_outputs:
            shape, dtype, memory_format = self.augment.output_spec(len(index))
            if self._outputs is not None:
                out = self._outputs.empty(shape, dtype, memory_format)
            else:
                out = torch.empty(shape, dtype=dtype, memory_format=memory_format)
            return augment(packed, out), targets_t, is_syn_t, None
        return augment(packed), targets_t, is_syn_t, None

    def _consume(self, produced) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        images, targets, is_syn, ready = produced
        if ready is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_event(ready)
            for t in (images, targets, is_syn):
                t.record_stream(current)  # made on the side stream, used on this one
        return images, targets, is_syn

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __del__(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False)


def _queue_size(prefetch: int, producers: int) -> int:
    """Each producer's queue length: `prefetch` batches ahead in all."""
    return max(1, -(-prefetch // producers))


class _Prefetcher:
    """Runs the loader's batch production on `loader.producers` background threads, producer k
    making batches k, k + producers, ... into its own queue, `prefetch` batches ahead in all; the
    consumer takes them round-robin, so in order. Errors surface in the consumer at the batch
    that raised them; closing or dropping the iterator stops the threads (which hold no
    reference to this object, so dropping it is noticed)."""

    _DONE = object()

    def __init__(self, loader: MixedLoader, epoch: int, plan: list) -> None:
        self.loader = loader
        n = loader.producers
        self.queues = [queue.Queue(maxsize=_queue_size(loader.prefetch, n)) for _ in range(n)]
        self.stop = threading.Event()
        self.taken = 0
        self.threads = [
            threading.Thread(target=_produce_batches, args=(loader, epoch, plan, k, self.queues[k], self.stop, self._DONE),
                             name="bridgedfast-prefetch", daemon=True)
            for k in range(n)
        ]
        for thread in self.threads:
            thread.start()

    def __iter__(self) -> "_Prefetcher":
        return self

    def __next__(self):
        if self.stop.is_set():
            raise StopIteration
        item = self.queues[self.taken % len(self.queues)].get()
        self.taken += 1
        if item is self._DONE:
            self.close()
            raise StopIteration
        if isinstance(item, BaseException):
            self.close()
            raise item
        return self.loader._consume(item)

    def close(self) -> None:
        self.stop.set()
        while any(thread.is_alive() for thread in self.threads):
            for q in self.queues:
                try:
                    q.get_nowait()
                except queue.Empty:
                    pass
            for thread in self.threads:
                thread.join(timeout=0.05 / len(self.threads))

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            warnings.warn("bridgedfast MixedLoader: the prefetch threads did not stop cleanly", RuntimeWarning)


def _produce_batches(loader: MixedLoader, epoch: int, plan: list, producer: int, out: queue.Queue,
                     stop: threading.Event, done: object) -> None:
    def put(item) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    threads = loader._kernel_threads
    loader._local.producer, loader._local.threads = producer, threads
    if set_thread_openmp_threads(threads) is None:  # no extension: torch's own ops run the batches
        torch.set_num_threads(threads)
    if loader.device.type == "cuda":
        torch.cuda.set_device(loader.device)
    try:
        for b in range(producer, len(plan), loader.producers):
            if stop.is_set() or not put(loader._produce(epoch, b, plan[b])):
                return
    except BaseException as exc:  # handed to the consumer, raised there
        put(exc)
        return
    put(done)
