"""bridgedfast.data.buffers.BufferPool: recycled CPU outputs that are never handed out twice."""
import threading

import pytest
import torch

from bridgedfast import buffers
from bridgedfast.buffers import BufferPool

pytestmark = pytest.mark.skipif(buffers._USE_COUNT is None, reason="this torch has no storage use count")


def test_reuses_only_idle_buffers():
    pool = BufferPool(2)
    a = pool.empty((4, 5), torch.float32)
    b = pool.empty((4, 5), torch.float32)
    assert a.untyped_storage().data_ptr() != b.untyped_storage().data_ptr()
    ptr = a.untyped_storage().data_ptr()
    del a
    c = pool.empty((2, 3), torch.float32)
    assert c.untyped_storage().data_ptr() == ptr and pool.reused == 1
    assert c.untyped_storage().data_ptr() != b.untyped_storage().data_ptr()


def test_concurrent_callers_never_get_the_same_buffer(monkeypatch):
    # Two threads asking at once while one buffer is idle: only one may take it. The barrier
    # holds each caller just before it makes its tensor over the chosen buffer, which is where
    # a second caller could still see that buffer as idle; with the choice and the tensor made
    # under one lock, the second caller cannot get there until the first is done (the barrier
    # then times out, and the test goes on).
    pool = BufferPool(4)
    del_me = pool.empty((1000,), torch.float32)
    del del_me  # one idle buffer in the pool
    barrier = threading.Barrier(2, timeout=1.0)
    real_empty = torch.empty

    def empty(*args, **kwargs):
        if args == (0,) and threading.current_thread() is not threading.main_thread():
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                pass
        return real_empty(*args, **kwargs)

    monkeypatch.setattr(buffers.torch, "empty", empty)
    got: list[torch.Tensor] = []

    def take() -> None:
        got.append(pool.empty((1000,), torch.float32))

    threads = [threading.Thread(target=take) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    monkeypatch.undo()
    assert len(got) == 2
    assert got[0].untyped_storage().data_ptr() != got[1].untyped_storage().data_ptr()
