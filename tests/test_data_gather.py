"""gather_images: the store -> packed-batch copy, against a hand computation, on every device."""
import pytest
import torch

from bridgedfast import ops
from conftest import DEVICES


def random_case(seed: int):
    g = torch.Generator().manual_seed(seed)
    sources = [torch.randint(0, 256, (n,), dtype=torch.uint8, generator=g) for n in (1000, 37, 513)]
    items, dst = [], 0
    for _ in range(40):
        s = int(torch.randint(0, 3, (), generator=g))
        n = int(torch.randint(0, sources[s].numel() + 1, (), generator=g))
        start = int(torch.randint(0, sources[s].numel() - n + 1, (), generator=g))
        dst += int(torch.randint(0, 20, (), generator=g))  # odd gaps and alignments on purpose
        items.append([s, start, n, dst])
        dst += n
    return sources, torch.tensor(items, dtype=torch.int64), dst + 5


def by_hand(sources, items, size):
    out = bytearray(size)
    for s, start, n, dst in items.tolist():
        out[dst : dst + n] = bytes(sources[s][start : start + n].tolist())
    return torch.tensor(list(out), dtype=torch.uint8)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", [0, 1])
def test_gather_matches_hand_copy(device, seed):
    sources, items, size = random_case(seed)
    out = torch.zeros(size, dtype=torch.uint8, device=device)
    result = ops.gather_images([s.to(device) for s in sources], items, out)
    assert result is out
    assert torch.equal(out.cpu(), by_hand(sources, items, size))


@pytest.mark.parametrize("device", DEVICES)
def test_gather_allocates_out_and_handles_empty(device):
    sources, items, size = random_case(2)
    out = ops.gather_images([s.to(device) for s in sources], items)
    assert out.device.type == device and out.numel() == int((items[:, 2] + items[:, 3]).max())
    written = torch.zeros(out.numel(), dtype=torch.bool)
    for _, _, n, dst in items.tolist():
        written[dst : dst + n] = True  # the gaps between items are left uninitialised
    assert torch.equal(out.cpu()[written], by_hand(sources, items, out.numel())[written])
    empty = ops.gather_images([sources[0].to(device)], torch.empty(0, 4, dtype=torch.int64))
    assert empty.numel() == 0


@pytest.mark.parametrize("device", DEVICES)
def test_gather_large_aligned_images(device):
    # Big enough for several CUDA blocks per item and the 16-byte vector path.
    g = torch.Generator().manual_seed(3)
    src = torch.randint(0, 256, (3 * 150_000 + 17,), dtype=torch.uint8, generator=g)
    items = torch.tensor([[0, 0, 150_000, 64], [0, 150_016, 150_000, 150_080], [0, 300_007, 150_000, 300_160]])
    out = ops.gather_images([src.to(device)], items).cpu()
    for _, start, n, dst in items.tolist():
        assert torch.equal(out[dst : dst + n], src[start : start + n])


@pytest.mark.parametrize("device", DEVICES)
def test_gather_more_items_than_one_launch_takes(device):
    # CUDA launches at most 65535 items per grid (grid.y); the binding splits the rest.
    n = 70_000
    g = torch.Generator().manual_seed(4)
    src = torch.randint(0, 256, (n * 3 + 5,), dtype=torch.uint8, generator=g)
    starts = torch.randperm(n, generator=g) * 3 + (torch.arange(n) % 5)
    items = torch.stack([torch.zeros(n, dtype=torch.int64), starts, torch.full((n,), 3), torch.arange(n) * 3], 1)
    out = ops.gather_images([src.to(device)], items).cpu()
    expected = src[(starts[:, None] + torch.arange(3)).reshape(-1)]
    assert torch.equal(out, expected)


@pytest.mark.cuda
def test_cuda_gather_does_not_wait_for_the_stream():
    # The loader queues each batch's gather behind the previous batch's work on its stream; the
    # call must only enqueue (items go up through pinned memory), never wait for that work.
    sources, items, size = random_case(6)
    sources = [s.cuda() for s in sources]
    out = torch.zeros(size, dtype=torch.uint8, device="cuda")
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        ops.gather_images(sources, items, out)  # warm-up: pinned blocks cached, kernels loaded
        stream.synchronize()
        torch.cuda._sleep(2_000_000_000)  # about a second of GPU clock cycles
        ops.gather_images(sources, items, out)
        assert not stream.query(), "gather_images waited for earlier work on its stream"
    stream.synchronize()
    assert torch.equal(out.cpu(), by_hand([s.cpu() for s in sources], items, size))


@pytest.mark.parametrize("device", DEVICES)
def test_gather_opcheck(device):
    sources, items, size = random_case(4)
    out = torch.zeros(size, dtype=torch.uint8, device=device)
    torch.library.opcheck(torch.ops.bridgedfast.gather_images.default, ([s.to(device) for s in sources], items, out))


@pytest.mark.parametrize(
    "items, out_size, match",
    [
        ([[2, 0, 4, 0]], 10, "names source 2 but there are 2"),
        ([[0, 8, 4, 0]], 10, r"reads bytes \[8, 12\) of source 0, which has 10 bytes"),
        ([[1, 0, 4, 8]], 10, r"writes bytes \[8, 12\) of out, which has 10 bytes"),
        ([[0, -1, 4, 0]], 10, "reads bytes"),
        ([[0, 0, -1, 0]], 10, "reads bytes"),
    ],
)
def test_gather_rejects_out_of_range(items, out_size, match):
    sources = [torch.zeros(10, dtype=torch.uint8), torch.zeros(6, dtype=torch.uint8)]
    with pytest.raises((RuntimeError, ValueError), match=match):
        ops.gather_images(sources, torch.tensor(items), torch.zeros(out_size, dtype=torch.uint8))


@pytest.mark.parametrize("items", [[[0, 2**63 - 1, 1, 0]], [[0, 0, 1, 2**63 - 1]], [[0, 2, 2**63 - 1, 0]]])
def test_gather_fallback_checks_do_not_overflow(items, monkeypatch):
    # The pure-PyTorch fallback repeats the kernels' bounds checks; huge values must not wrap past them.
    monkeypatch.setattr(ops, "_use_kernel", lambda op, device: False)
    sources = [torch.zeros(10, dtype=torch.uint8)]
    with pytest.raises(ValueError, match="out of range"):
        ops.gather_images(sources, torch.tensor(items), torch.zeros(10, dtype=torch.uint8))


def test_gather_rejects_bad_types():
    src = [torch.zeros(10, dtype=torch.uint8)]
    ok = torch.tensor([[0, 0, 2, 0]])
    with pytest.raises(RuntimeError, match="out must be a contiguous 1-D uint8"):
        ops.gather_images(src, ok, torch.zeros(10, dtype=torch.float32))
    with pytest.raises(RuntimeError, match=r"items must be int64 \[N, 4\]"):
        ops.gather_images(src, torch.zeros(1, 3, dtype=torch.int64), torch.zeros(10, dtype=torch.uint8))
    with pytest.raises(RuntimeError, match="source 0 must be a contiguous 1-D uint8"):
        ops.gather_images([torch.zeros(10)], ok, torch.zeros(10, dtype=torch.uint8))
    with pytest.raises(ValueError, match="no sources"):
        ops.gather_images([], ok)


def test_gather_reference_fallback_matches_kernel():
    from bridgedfast.reference import gather_images_reference

    sources, items, size = random_case(5)
    ref = gather_images_reference(sources, items, torch.zeros(size, dtype=torch.uint8))
    assert torch.equal(ref, ops.gather_images(sources, items, torch.zeros(size, dtype=torch.uint8)))
