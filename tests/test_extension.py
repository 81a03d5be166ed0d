"""The compiled extension loads, registers its ops with kernels, and `bridgedfast info` reports it."""
import json
import shutil
import subprocess
import sys

import pytest
import torch

from bridgedfast import _ext, ops
from bridgedfast.cli import main as cli_main
from conftest import DEVICES


def test_extension_loads_and_registers_ops():
    assert _ext.extension_loaded(), f"bridgedfast._C failed to import: {_ext.EXTENSION_ERROR}"
    registered = _ext.registered_ops()
    for op in ("mix_images", "gather_images", "resized_crop", "resized_crop_into", "resized_crop_list",
               "resized_crop_list_into"):
        assert "CPU" in registered[op], op
    assert hasattr(torch.ops.bridgedfast, "mix_images")


def test_openmp_threads_are_set_for_the_calling_thread_only():
    # What the loader's batch producers use: a thread's OpenMP team size, other threads untouched.
    import threading

    main = torch.get_num_threads()
    seen = {}

    def producer():
        seen["previous"] = _ext.set_thread_openmp_threads(1)
        seen["here"] = torch.get_num_threads()

    thread = threading.Thread(target=producer)
    thread.start()
    thread.join()
    assert seen == {"previous": main, "here": 1}
    assert torch.get_num_threads() == main
    with pytest.raises(ValueError, match="threads must be in 1..4096, got 0"):
        _ext.set_thread_openmp_threads(0)


@pytest.mark.skipif(shutil.which("nvcc") is None or torch.version.cuda is None, reason="needs nvcc and CUDA torch")
def test_cuda_kernels_compiled_where_nvcc_exists():
    # With nvcc and a CUDA build of torch the build must include CUDA kernels, GPU or not.
    assert _ext.cuda_kernels_compiled()
    registered = _ext.registered_ops()
    for op in ("mix_images", "gather_images", "resized_crop", "resized_crop_into", "resized_crop_list",
               "resized_crop_list_into"):
        assert "CUDA" in registered[op], op


def test_info_command_reports_ops(capsys):
    assert cli_main(["info", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["extension_loaded"] is True
    assert facts["torch"] == torch.__version__
    assert "mix_images" in facts["ops"]
    assert set(facts["backends"]) == {"xformers", "tensorrt", "onnxruntime"}


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "bridgedfast", "info"], capture_output=True, text=True, check=True)
    assert "mix_images" in out.stdout and "CUDA kernels compiled" in out.stdout


def _mix_by_hand(x, lam, boxes):
    """Direct per-element evaluation of the definition, independent of the reference's vectorisation."""
    n, c, h, w = x.shape
    out = torch.empty(n, c, h, w, dtype=torch.float64)
    xd = x.double()
    for i in range(n):
        y0, y1, x0, x1 = boxes[i].tolist()
        for yy in range(h):
            for xx in range(w):
                inside = y0 <= yy < y1 and x0 <= xx < x1
                j = n - 1 - i
                out[i, :, yy, xx] = xd[j, :, yy, xx] if inside else lam[i] * xd[i, :, yy, xx] + (1 - lam[i]) * xd[j, :, yy, xx]
    return out


BOXES = torch.tensor([[0, 0, 0, 0], [2, 9, 3, 11], [0, 13, 0, 11], [5, 6, 7, 8], [0, 0, 0, 0]], dtype=torch.int32)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_mix_images_matches_definition(device, channels_last):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 3, 13, 11, generator=g)
    lam = torch.tensor([0.3, 1.0, 1.0, 0.75, 0.5])
    xin = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    out = ops.mix_images(xin.to(device), lam, BOXES)
    assert out.shape == x.shape and out.device.type == device
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last
    torch.testing.assert_close(out.cpu().double(), _mix_by_hand(x, lam, BOXES), atol=1e-6, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_mix_images_low_precision(device, dtype):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(5, 3, 13, 11, generator=g).to(dtype)
    lam = torch.tensor([0.3, 1.0, 1.0, 0.75, 0.5])
    out = ops.mix_images(x.to(device), lam, BOXES).cpu()
    exact = _mix_by_hand(x.float(), lam, BOXES)
    # One rounding of the float result: at most half an ulp of the dtype at 1.0.
    tol = {torch.float16: 2**-11, torch.bfloat16: 2**-8}[dtype]
    assert out.dtype == dtype
    assert (out.double() - exact).abs().max().item() <= tol


@pytest.mark.parametrize("device", DEVICES)
def test_mix_images_opcheck(device):
    x = torch.rand(4, 3, 8, 6, device=device)
    lam = torch.tensor([0.2, 0.4, 1.0, 0.9], device=device)
    boxes = torch.tensor([[0, 0, 0, 0], [1, 5, 2, 4], [0, 8, 0, 6], [0, 0, 0, 0]], dtype=torch.int32, device=device)
    torch.library.opcheck(torch.ops.bridgedfast.mix_images.default, (x, lam, boxes))


@pytest.mark.cuda
def test_mix_images_cpu_batch_with_gpu_parameters():
    # lam/boxes on the GPU for a CPU batch come down with a finished (blocking) copy: a
    # non_blocking one would land in pinned memory after the CPU kernel had already read it.
    x = torch.rand(4, 3, 8, 6)
    lam = torch.tensor([0.2, 0.4, 1.0, 0.9])
    boxes = torch.tensor([[0, 0, 0, 0], [1, 5, 2, 4], [0, 8, 0, 6], [0, 0, 0, 0]], dtype=torch.int32)
    want = ops.mix_images(x, lam, boxes)
    lam_gpu, boxes_gpu = lam.cuda(), boxes.cuda()
    torch.cuda._sleep(500_000_000)  # the copies queue behind this
    torch.testing.assert_close(ops.mix_images(x, lam_gpu, boxes_gpu), want)


def test_mix_images_under_torch_compile():
    x = torch.rand(4, 3, 8, 6)
    lam = torch.tensor([0.2, 0.4, 1.0, 0.9])
    boxes = torch.zeros(4, 4, dtype=torch.int32)
    compiled = torch.compile(lambda a: torch.ops.bridgedfast.mix_images.default(a * 2, lam, boxes), fullgraph=True)
    torch.testing.assert_close(compiled(x), ops.mix_images(x * 2, lam, boxes))
    # The typed wrapper (kernel lookup included) traces too.
    wrapped = torch.compile(lambda a: ops.mix_images(a * 2, lam, boxes), fullgraph=True)
    torch.testing.assert_close(wrapped(x), ops.mix_images(x * 2, lam, boxes))


@pytest.mark.parametrize(
    "x, lam, boxes, match",
    [
        (torch.rand(2, 3, 4, 4), torch.rand(3), torch.zeros(2, 4, dtype=torch.int32), "lam must be float32 \\[N\\]"),
        (torch.rand(2, 3, 4, 4), torch.rand(2), torch.zeros(2, 3, dtype=torch.int32), "boxes must be int32 \\[N, 4\\]"),
        (torch.randint(0, 255, (2, 3, 4, 4), dtype=torch.uint8), torch.rand(2), torch.zeros(2, 4, dtype=torch.int32), "unsupported floating dtype"),
        (torch.rand(3, 4, 4), torch.rand(3), torch.zeros(3, 4, dtype=torch.int32), "must be a \\[N, C, H, W\\]"),
    ],
)
def test_mix_images_rejects_bad_inputs(x, lam, boxes, match):
    with pytest.raises((RuntimeError, ValueError), match=match):
        ops.mix_images(x, lam, boxes)
