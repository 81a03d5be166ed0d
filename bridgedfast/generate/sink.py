"""Where generated images go: an `ImageStoreWriter`, fed from a background thread so that
encoding and fsync overlap the next batch's denoising. Each grid batch is committed as soon as
it is written, so a crash (kill -9) loses at most the batches still in flight."""
from __future__ import annotations

import queue
import threading
from pathlib import Path

import numpy as np


class StoreSink:
    def __init__(self, out: Path, classes: list[str], *, encoding: str, quality: int = 95, max_pending: int = 4):
        from ..data import ImageStoreWriter

        # Commits are driven per batch below, not by the writer's own count/time thresholds.
        self.writer = ImageStoreWriter(out, classes, encoding=encoding, quality=quality, commit_every=1 << 62,
                                       commit_seconds=float("inf"))
        self.done: set[tuple[int, int]] = set()
        for meta in self.writer.metas():
            if "class_index" in meta and "image_index" in meta:
                self.done.add((int(meta["class_index"]), int(meta["image_index"])))
        self.count = len(self.writer)
        self._queue: queue.Queue = queue.Queue(max_pending)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="bridgedfast-generate-writer", daemon=True)
        self._thread.start()

    def put(self, images: np.ndarray, labels: list[int], metas: list[dict]) -> None:
        """Queues uint8 [N, H, W, 3] images with their labels and metadata (blocks when the
        writer is `max_pending` batches behind)."""
        self._raise_if_failed()
        self._queue.put((images, labels, metas))

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if self._error is not None:
                continue
            try:
                images, labels, metas = job
                self.writer.add_batch(images, labels, metas)
                self.writer.commit()
            except BaseException as exc:  # re-raised in the generating thread
                self._error = exc

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"writing generated images to {self.writer.path} failed: {self._error}") from self._error

    def close(self) -> None:
        """Waits for every queued batch to be committed, then closes the store."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        try:
            self._raise_if_failed()
        finally:
            self.count = len(self.writer)
            self.writer.close()


def existing_store_size(out: Path) -> int | None:
    """Committed images in the image store at `out`, or None when `out` holds no readable store."""
    from ..data import ImageStore, StoreError

    try:
        return len(ImageStore(out))
    except (FileNotFoundError, StoreError):
        return None
