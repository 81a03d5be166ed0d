"""The TensorRT backend up to its boundary, without TensorRT or a GPU: a stand-in `tensorrt`
module records what the backend asks the builder for (the optimisation profile, fp16) and
"runs" the engine with onnxruntime on the exported ONNX graph, reading and writing the torch
tensors through the raw addresses the backend binds, as TensorRT would."""
from __future__ import annotations

import ctypes
import json
import sys
import types

import numpy as np
import pytest
import torch

from bridgedfast import optional
from bridgedfast.testing import tiny_stable_diffusion

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


class _Recorder:
    builds: list[dict] = []


def _fake_tensorrt() -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.0.0-standin"

    class DataType:
        FLOAT, HALF, INT32, INT64, BOOL, BF16 = "FLOAT", "HALF", "INT32", "INT64", "BOOL", "BF16"

    class Logger:
        WARNING = 2

        def __init__(self, level):
            self.level = level

    class BuilderFlag:
        FP16 = "FP16"

    class Network:
        def __init__(self):
            self.inputs = []

        @property
        def num_inputs(self):
            return len(self.inputs)

        def get_input(self, i):
            return types.SimpleNamespace(name=self.inputs[i])

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger):
            self.network = network

        def parse_from_file(self, path):
            import onnx

            model = onnx.load(path, load_external_data=False)
            self.network.inputs = [i.name for i in model.graph.input]
            self.network.onnx_path = path
            return True

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, lo, opt, hi):
            self.shapes[name] = [list(lo), list(opt), list(hi)]

    class Config:
        def __init__(self):
            self.flags, self.profiles = [], []

        def set_flag(self, flag):
            self.flags.append(flag)

        def add_optimization_profile(self, profile):
            self.profiles.append(profile)

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            assert flags == 0
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            plan = {"onnx": network.onnx_path, "flags": config.flags, "profiles": [p.shapes for p in config.profiles]}
            _Recorder.builds.append(plan)
            return json.dumps(plan).encode()

    class Context:
        def __init__(self, plan):
            self.session = ort.InferenceSession(plan["onnx"], providers=["CPUExecutionProvider"])
            self.shapes, self.addresses = {}, {}

        def set_input_shape(self, name, shape):
            self.shapes[name] = tuple(shape)

        def set_tensor_address(self, name, ptr):
            self.addresses[name] = ptr

        def get_tensor_shape(self, name):
            assert name == "out_sample"
            return self.shapes["sample"]

        def execute_async_v3(self, stream):
            def view(name, shape):
                n = int(np.prod(shape))
                return np.ctypeslib.as_array((ctypes.c_float * n).from_address(self.addresses[name])).reshape(shape)

            feeds = {name: view(name, shape).copy() for name, shape in self.shapes.items()}
            out = self.session.run(["out_sample"], feeds)[0].astype(np.float32)
            view("out_sample", out.shape)[...] = out
            return True

    class Engine:
        def __init__(self, plan):
            self.plan = plan

        def get_tensor_dtype(self, name):
            return DataType.FLOAT

        def create_execution_context(self):
            return Context(self.plan)

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            return Engine(json.loads(bytes(data)))

    for cls in (DataType, Logger, BuilderFlag, OnnxParser, Builder, Runtime):
        setattr(trt, cls.__name__, cls)
    return trt


@pytest.fixture
def standin_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt())
    optional.probe.cache_clear()
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d=None: types.SimpleNamespace(name="StandIn GPU", major=9, minor=0))
    monkeypatch.setattr(torch.cuda, "current_stream", lambda d=None: types.SimpleNamespace(cuda_stream=0))
    _Recorder.builds.clear()
    yield
    optional.probe.cache_clear()


@pytest.fixture(scope="module")
def unet(tmp_path_factory):
    from diffusers import UNet2DConditionModel

    folder = tiny_stable_diffusion(tmp_path_factory.getbasetemp() / "tiny-sd")
    return UNet2DConditionModel.from_pretrained(str(folder / "unet")).eval()


def test_engine_is_built_with_a_dynamic_batch_fp16_profile_cached_and_bound_to_torch_tensors(standin_tensorrt, unet, tmp_path):
    from bridgedfast.generate.backends.tensorrt import TensorRTUNet

    runner = TensorRTUNet(unet, device=torch.device("cpu"), fingerprint="f00d", cache_dir=tmp_path)
    runner.prepare(6, 16, 16, 77)
    assert len(_Recorder.builds) == 1
    build = _Recorder.builds[0]
    assert build["flags"] == ["FP16"]
    assert build["profiles"] == [{
        "sample": [[1, 4, 16, 16], [6, 4, 16, 16], [6, 4, 16, 16]],
        "timestep": [[1], [6], [6]],
        "encoder_hidden_states": [[1, 77, 32], [6, 77, 32], [6, 77, 32]],
    }]
    assert runner.export_check is not None and runner.export_check.ok
    assert len(list((tmp_path / "tensorrt").glob("unet-*.plan"))) == 1

    g = torch.Generator().manual_seed(0)
    for b in (6, 3):
        x, e = torch.randn(b, 4, 16, 16, generator=g), torch.randn(b, 77, 32, generator=g)
        t = torch.tensor(437)  # a 0-dim timestep, as the schedulers give it
        with torch.no_grad():
            ref = unet(x, t, encoder_hidden_states=e, return_dict=False)[0]
        torch.testing.assert_close(runner(x, t, e), ref, atol=1e-4, rtol=1e-4)
    with pytest.raises(RuntimeError, match="batch <= 6"):
        runner(torch.zeros(7, 4, 16, 16), torch.tensor(1), torch.zeros(7, 77, 32))

    # Same model and shapes: the cached engine is loaded, nothing is exported or built again.
    again = TensorRTUNet(unet, device=torch.device("cpu"), fingerprint="f00d", cache_dir=tmp_path)
    again.prepare(6, 16, 16, 77)
    assert len(_Recorder.builds) == 1 and again.export_check is None
    # Another model fingerprint or profile: a new engine.
    TensorRTUNet(unet, device=torch.device("cpu"), fingerprint="beef", cache_dir=tmp_path).prepare(6, 16, 16, 77)
    again.prepare(8, 16, 16, 77)
    assert len(_Recorder.builds) == 3
    assert len(list((tmp_path / "tensorrt").glob("unet-*.plan"))) == 3


def test_concurrent_ranks_export_and_build_the_engine_once(standin_tensorrt, unet, tmp_path, monkeypatch):
    """torchrun ranks share the engine cache: while one exports the ONNX graph and builds the
    engine, the others wait and then load that engine, instead of rewriting the same ONNX files."""
    import threading
    import time

    from bridgedfast.generate.backends import tensorrt as trt_backend

    exports = []
    real_export = trt_backend.export_unet_onnx

    def slow_export(*args, **kwargs):
        exports.append(threading.get_ident())
        time.sleep(0.5)  # a real SD UNet export takes minutes
        return real_export(*args, **kwargs)

    monkeypatch.setattr(trt_backend, "export_unet_onnx", slow_export)
    runners = [trt_backend.TensorRTUNet(unet, device=torch.device("cpu"), fingerprint="f00d", cache_dir=tmp_path)
               for _ in range(2)]
    errors = []

    def prepare(runner):
        try:
            runner.prepare(4, 8, 8, 77)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=prepare, args=(r,)) for r in runners]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(exports) == 1 and len(_Recorder.builds) == 1
    assert all(r.context is not None for r in runners)


def test_everything_the_backend_needs_is_checked_up_front_and_in_the_extra(standin_tensorrt, unet, tmp_path, monkeypatch):
    """The engine build exports with onnx and checks the export on onnxruntime: both must be
    there before any output is created, and `pip install 'bridgedfast[tensorrt]'` installs them."""
    from pathlib import Path

    from bridgedfast.generate.backends.tensorrt import TensorRTUNet

    tomllib = pytest.importorskip("tomllib")

    extra = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    names = {req.split(">")[0].split("=")[0].split("[")[0].strip() for req in extra["project"]["optional-dependencies"]["tensorrt"]}
    assert {"tensorrt", "onnx", "onnxruntime"} <= names
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # not installed
    optional.probe.cache_clear()
    with pytest.raises(optional.MissingDependency, match="onnxruntime"):
        TensorRTUNet(unet, device=torch.device("cpu"), fingerprint="f00d", cache_dir=tmp_path)
