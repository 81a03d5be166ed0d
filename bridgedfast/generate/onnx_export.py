"""UNet -> ONNX with a dynamic batch dimension, checked against the PyTorch UNet on onnxruntime.

The graph takes `sample [B,4,h,w]`, `timestep [B]` (float32) and `encoder_hidden_states
[B,77,dim]` and returns `out_sample [B,4,h,w]`: the inputs the TensorRT engine binds.
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

INPUT_NAMES = ("sample", "timestep", "encoder_hidden_states")
OUTPUT_NAME = "out_sample"
OPSET = 17


class UNetForExport(torch.nn.Module):
    def __init__(self, unet: Any):
        super().__init__()
        self.unet = unet

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states, return_dict=False)[0]


def _fp32_cpu_copy(unet: Any) -> Any:
    copied = copy.deepcopy(unet).to("cpu")
    return copied if copied.dtype == torch.float32 else copied.float()


def unet_inputs(unet: Any, batch: int, latent_height: int, latent_width: int, seq_len: int, *,
                dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded example inputs of the exported graph's shapes."""
    g = torch.Generator("cpu").manual_seed(seed)
    cfg = unet.config
    sample = torch.randn(batch, cfg.in_channels, latent_height, latent_width, generator=g)
    timestep = torch.randint(1, 1000, (batch,), generator=g).float()
    ehs = torch.randn(batch, seq_len, cfg.cross_attention_dim, generator=g)
    return sample.to(device, dtype), timestep.to(device), ehs.to(device, dtype)


def export_unet_onnx(unet: Any, path: str | Path, *, latent_height: int, latent_width: int, seq_len: int = 77,
                     example_batch: int = 2) -> Path:
    """Exports an fp32 CPU copy of `unet` to `path` (weights over 2 GB go to external data files
    beside it), batch dimension dynamic. Returns `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = UNetForExport(_fp32_cpu_copy(unet)).eval()
    args = unet_inputs(unet, example_batch, latent_height, latent_width, seq_len)
    dynamic = {name: {0: "batch"} for name in (*INPUT_NAMES, OUTPUT_NAME)}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python branches
        try:
            # The TorchScript exporter is what TensorRT's own diffusion demo uses for the SD UNet.
            torch.onnx.export(model, args, str(path), input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
                              dynamic_axes=dynamic, opset_version=OPSET, do_constant_folding=True, dynamo=False)
        except Exception:  # a torch without the TorchScript exporter: use torch.export
            batch = torch.export.Dim("batch", min=1, max=4096)
            program = torch.onnx.export(model, args, input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
                                        dynamic_shapes={n: {0: batch} for n in ("sample", "timestep", "encoder_hidden_states")},
                                        dynamo=True)
            program.save(str(path), external_data=True)
    return path


@dataclass
class ExportCheck:
    batches: tuple[int, ...]
    max_abs_error: float
    reference_max_abs: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_abs_error <= self.tolerance


def check_onnx_export(unet: Any, path: str | Path, *, latent_height: int, latent_width: int, seq_len: int = 77,
                      batches: tuple[int, ...] = (1, 3), rtol: float = 1e-3, seed: int = 1) -> ExportCheck:
    """Runs the ONNX graph on onnxruntime (CPU) and the PyTorch UNet (fp32, CPU) on the same
    seeded inputs for each batch size; raises RuntimeError when they differ by more than
    `rtol` x (1 + the reference's max magnitude)."""
    from ..optional import require

    ort = require("onnxruntime", "checking the ONNX export")
    model = UNetForExport(_fp32_cpu_copy(unet)).eval()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst, ref_max = 0.0, 0.0
    for b in batches:
        inputs = unet_inputs(unet, b, latent_height, latent_width, seq_len, seed=seed + b)
        with torch.no_grad():
            ref = model(*inputs)
        got = session.run([OUTPUT_NAME], {n: t.numpy() for n, t in zip(INPUT_NAMES, inputs)})[0]
        worst = max(worst, float((torch.from_numpy(got) - ref).abs().max()))
        ref_max = max(ref_max, float(ref.abs().max()))
    check = ExportCheck(tuple(batches), worst, ref_max, rtol * (1.0 + ref_max))
    if not check.ok:
        raise RuntimeError(
            f"the ONNX export {str(path)!r} does not match the PyTorch UNet: max abs error {worst:.3g} > "
            f"{check.tolerance:.3g} (batches {list(batches)})"
        )
    return check
