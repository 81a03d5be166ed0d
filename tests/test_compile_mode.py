"""`--backend compile`'s torch.compile mode: the default compiles in reasonable time (no Triton
autotuning; CUDA graphs on GPU), `--compile-mode` reaches torch.compile from the CLI and the API,
and autotuning settings are only switched on where autotuning was asked for."""
from __future__ import annotations

import pytest
import torch
import torch._inductor.config as inductor_config

from bridgedfast.cli import main
from bridgedfast.generate import Generator
from bridgedfast.generate.backends import compiled
from bridgedfast.generate.backends.compiled import CompiledDecoder, CompiledUNet


@pytest.fixture
def captured(monkeypatch):
    """torch.compile replaced by a recorder that returns the module unchanged (eager)."""
    calls: list[dict] = []

    def fake_compile(fn, **kwargs):
        calls.append(kwargs)
        return fn

    monkeypatch.setattr(compiled.torch, "compile", fake_compile)
    # save the autotuning settings that exist in this torch, restore them after the test.
    saved = {name: getattr(inductor_config, name) for name in compiled.AUTOTUNE_SETTINGS if hasattr(inductor_config, name)}
    yield calls
    for name, value in saved.items():
        setattr(inductor_config, name, value)


def test_default_mode_is_cuda_graphs_without_autotuning(captured):
    before = inductor_config.coordinate_descent_tuning
    unet = CompiledUNet(torch.nn.Identity(), torch.device("cuda"))  # no GPU needed to choose the mode
    assert captured[-1] == {"mode": "reduce-overhead", "fullgraph": True, "dynamic": False}
    assert unet.cuda_graphs
    assert inductor_config.coordinate_descent_tuning == before  # autotuning settings untouched
    decoder = CompiledDecoder(torch.nn.Identity(), torch.device("cuda"))
    assert captured[-1]["mode"] == "default" and not decoder.cuda_graphs
    cpu = CompiledUNet(torch.nn.Identity(), torch.device("cpu"))
    assert captured[-1]["mode"] == "default" and not cpu.cuda_graphs


def test_max_autotune_is_opt_in_and_tunes(captured):
    unet = CompiledUNet(torch.nn.Identity(), torch.device("cuda"), mode="max-autotune")
    assert captured[-1]["mode"] == "max-autotune" and unet.cuda_graphs
    assert inductor_config.coordinate_descent_tuning is True and inductor_config.epilogue_fusion is False
    no_graphs = CompiledUNet(torch.nn.Identity(), torch.device("cuda"), mode="max-autotune-no-cudagraphs")
    assert captured[-1]["mode"] == "max-autotune-no-cudagraphs" and not no_graphs.cuda_graphs


@pytest.mark.parametrize("via", ["api", "cli"])
def test_compile_mode_reaches_torch_compile(tiny_sd, tmp_path, captured, via):
    if via == "api":
        g = Generator(tiny_sd, device="cpu", dtype="fp32", backend="compile", compile_mode="max-autotune-no-cudagraphs")
        g.generate(["cat"], 1, tmp_path / "out", steps=2, height=32, width=32, progress=False)
    else:
        rc = main(["generate", "--model", str(tiny_sd), "--classes", "cat", "--per-class", "1", "--out",
                   str(tmp_path / "out"), "--steps", "2", "--height", "32", "--width", "32", "--device", "cpu",
                   "--backend", "compile", "--compile-mode", "max-autotune-no-cudagraphs", "--no-progress"])
        assert rc == 0
    assert [c["mode"] for c in captured] == ["max-autotune-no-cudagraphs"] * 2  # UNet and VAE decoder
    assert captured[0]["fullgraph"] is True


def test_unknown_compile_mode_is_one_line(tiny_sd, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--model", str(tiny_sd), "--classes", "cat", "--per-class", "1", "--out",
              str(tmp_path / "out"), "--backend", "compile", "--compile-mode", "fastest", "--device", "cpu"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "fastest" in err and "reduce-overhead" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
