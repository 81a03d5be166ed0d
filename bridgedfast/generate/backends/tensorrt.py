"""TensorRT UNet: the ONNX export (checked against PyTorch on onnxruntime) is built into an fp16
engine with one optimisation profile (batch 1..max, the grid batch with CFG as the optimum),
cached on disk under a key of model fingerprint + shapes + TensorRT version + GPU, and run
with torch tensors bound as I/O on the current CUDA stream."""
from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from ...files import atomic_write
from ..onnx_export import INPUT_NAMES, OUTPUT_NAME, check_onnx_export, export_unet_onnx

EXPORT_VERSION = 1


def engine_key(fingerprint: str, shapes: dict[str, Any], trt_version: str, gpu: str) -> str:
    payload = {"fingerprint": fingerprint, "shapes": shapes, "tensorrt": trt_version, "gpu": gpu,
               "export": EXPORT_VERSION}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


_LOGGER = None


def _logger(trt: Any) -> Any:
    global _LOGGER
    if _LOGGER is None:  # TensorRT wants one logger per process
        _LOGGER = trt.Logger(trt.Logger.WARNING)
    return _LOGGER


def _torch_dtype(trt: Any, dt: Any) -> torch.dtype:
    names = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT32": torch.int32,
             "INT64": torch.int64, "BOOL": torch.bool}
    table = {getattr(trt.DataType, n): t for n, t in names.items() if hasattr(trt.DataType, n)}
    if dt not in table:
        raise RuntimeError(f"the TensorRT engine uses an unsupported I/O type {dt}")
    return table[dt]


def build_engine(trt: Any, onnx_path: Path, plan_path: Path, profile_shapes: dict[str, tuple[tuple, tuple, tuple]],
                 *, fp16: bool = True) -> Path:
    """Parses the ONNX file and writes the serialized engine atomically to `plan_path`."""
    logger = _logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT >= 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        name = network.get_input(i).name
        lo, opt, hi = profile_shapes[name]
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    with atomic_write(plan_path) as tmp:
        tmp.write_bytes(memoryview(serialized))
    return plan_path


@contextlib.contextmanager
def _build_lock(cache_dir: Path):
    """Exclusive use of the cache folder's exports and builds across processes: torchrun ranks
    share the cache and must not write the same ONNX files at once (or build one engine N times)."""
    try:
        import fcntl
    except ImportError:  # no flock on this platform: builds are not coordinated
        yield
        return
    with open(cache_dir / ".build.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class TensorRTUNet:
    static_shapes = False

    def __init__(self, unet: Any, *, device: torch.device, fingerprint: str, cache_dir: Path):
        from ...optional import require

        self.trt = require("tensorrt", "the tensorrt generation backend")
        require("onnx", "exporting the UNet for TensorRT")
        require("onnxruntime", "checking the UNet's ONNX export before the TensorRT build")
        self.unet = unet
        self.device = device
        self.fingerprint = fingerprint
        self.cache_dir = Path(cache_dir) / "tensorrt"
        self.context = None
        self.max_batch = 0
        self.export_check = None

    def prepare(self, max_batch: int, latent_height: int, latent_width: int, seq_len: int) -> None:
        if self.context is not None and max_batch <= self.max_batch and self.shape == (latent_height, latent_width, seq_len):
            return
        trt = self.trt
        cfg = self.unet.config
        dim, ch = cfg.cross_attention_dim, cfg.in_channels
        profile = {
            "sample": ((1, ch, latent_height, latent_width), (max_batch, ch, latent_height, latent_width),
                       (max_batch, ch, latent_height, latent_width)),
            "timestep": ((1,), (max_batch,), (max_batch,)),
            "encoder_hidden_states": ((1, seq_len, dim), (max_batch, seq_len, dim), (max_batch, seq_len, dim)),
        }
        props = torch.cuda.get_device_properties(self.device)
        gpu = f"{props.name} sm{props.major}{props.minor}"
        fused = any("Fused" in type(p).__name__ for p in self.unet.attn_processors.values())
        # The fingerprint is the model's identity only: the precision it was loaded in keys the engine too.
        shapes = {"profile": profile, "fused_qkv": fused, "dtype": str(self.unet.dtype).removeprefix("torch.")}
        key = engine_key(self.fingerprint, shapes, trt.__version__, gpu)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        plan = self.cache_dir / f"unet-{key}.plan"
        if not plan.is_file():
            with _build_lock(self.cache_dir):
                if not plan.is_file():  # another process (a torchrun rank) may have built it while we waited
                    self._export_and_build(plan, profile, latent_height, latent_width, seq_len)
        self.runtime = trt.Runtime(_logger(trt))  # must outlive the engine
        self.engine = self.runtime.deserialize_cuda_engine(plan.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"TensorRT could not load the cached engine {plan}; delete it to rebuild")
        self.context = self.engine.create_execution_context()
        self.dtypes = {n: _torch_dtype(trt, self.engine.get_tensor_dtype(n)) for n in (*INPUT_NAMES, OUTPUT_NAME)}
        self.max_batch = max_batch
        self.shape = (latent_height, latent_width, seq_len)
        self.plan_path = plan

    def _export_and_build(self, plan: Path, profile: dict, latent_height: int, latent_width: int, seq_len: int) -> None:
        dtype = str(self.unet.dtype).removeprefix("torch.")
        onnx_dir = self.cache_dir / f"onnx-{self.fingerprint}-{dtype}-{latent_height}x{latent_width}-{seq_len}"
        onnx_path = onnx_dir / "unet.onnx"
        if not (onnx_dir / "checked").is_file():
            export_unet_onnx(self.unet, onnx_path, latent_height=latent_height, latent_width=latent_width,
                             seq_len=seq_len)
            self.export_check = check_onnx_export(self.unet, onnx_path, latent_height=latent_height,
                                                  latent_width=latent_width, seq_len=seq_len, batches=(1,))
            (onnx_dir / "checked").write_text(json.dumps(self.export_check.__dict__))
        build_engine(self.trt, onnx_path, plan, profile, fp16=True)

    def __call__(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                 timestep_cond: torch.Tensor | None = None) -> torch.Tensor:
        if timestep_cond is not None:
            raise ValueError("the tensorrt backend does not support UNets with a guidance embedding (time_cond_proj_dim)")
        if self.context is None or sample.shape[0] > self.max_batch:
            raise RuntimeError(f"TensorRT engine prepared for batch <= {self.max_batch}, got {sample.shape[0]}")
        b = sample.shape[0]
        timestep = timestep.reshape(-1).expand(b) if timestep.numel() == 1 else timestep
        inputs = {
            "sample": sample.to(self.dtypes["sample"]).contiguous(),
            "timestep": timestep.to(self.device, self.dtypes["timestep"]).contiguous(),
            "encoder_hidden_states": encoder_hidden_states.to(self.dtypes["encoder_hidden_states"]).contiguous(),
        }
        for name, tensor in inputs.items():
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        out = torch.empty(tuple(self.context.get_tensor_shape(OUTPUT_NAME)), dtype=self.dtypes[OUTPUT_NAME],
                          device=self.device)
        self.context.set_tensor_address(OUTPUT_NAME, out.data_ptr())
        if not self.context.execute_async_v3(torch.cuda.current_stream(self.device).cuda_stream):
            raise RuntimeError("TensorRT execution of the UNet failed")
        return out.to(sample.dtype)
