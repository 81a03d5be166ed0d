"""Loading Stable Diffusion folders (bridgedfast.sd): the precision keyword the installed
diffusers takes and a check of the loaded dtype, safetensors only unless the user opts in to
pickled weights, and quiet loading."""
from __future__ import annotations

import warnings

import pytest
import torch

from bridgedfast import sd
from bridgedfast.generate import Generator


@pytest.fixture(scope="module")
def pickled_sd(tiny_sd, tmp_path_factory):
    """The tiny model saved the old way: pytorch_model.bin / diffusion_pytorch_model.bin."""
    from diffusers import StableDiffusionPipeline

    folder = tmp_path_factory.getbasetemp() / "tiny-sd-pickled"
    StableDiffusionPipeline.from_pretrained(str(tiny_sd)).save_pretrained(folder, safe_serialization=False)
    assert list((folder / "unet").glob("*.bin")) and not list((folder / "unet").glob("*.safetensors"))
    return folder


# ---------------------------------------------------------------------------- the precision keyword


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_load_in_a_precision_without_deprecation_warnings(tiny_sd, dtype):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the installed diffusers' deprecation of a keyword would raise here
        pipe = sd.load_pipeline(tiny_sd, torch_dtype=dtype)
    assert pipe.unet.dtype == pipe.vae.dtype == pipe.text_encoder.dtype == dtype


def test_the_keyword_is_the_one_the_installed_diffusers_takes(tiny_sd, monkeypatch):
    import inspect

    from diffusers import DiffusionPipeline, StableDiffusionPipeline

    source = inspect.getsource(DiffusionPipeline.from_pretrained)
    expected = "dtype" if 'kwargs.pop("dtype"' in source else "torch_dtype"
    assert sd.dtype_keyword() == expected
    seen = {}
    real = StableDiffusionPipeline.from_pretrained

    def spy(path, **kwargs):
        seen.update(kwargs)
        return real(path, **kwargs)

    monkeypatch.setattr(StableDiffusionPipeline, "from_pretrained", spy)
    sd.load_pipeline(tiny_sd, torch_dtype=torch.bfloat16)
    assert seen[expected] is torch.bfloat16 and seen["use_safetensors"] is True


def test_a_diffusers_that_ignores_the_precision_is_caught(tiny_sd, monkeypatch):
    """An older diffusers given a keyword it does not know loads fp32: that must not pass silently."""
    from diffusers import StableDiffusionPipeline

    real = StableDiffusionPipeline.from_pretrained

    def old_diffusers(path, **kwargs):
        kwargs.pop("dtype", None), kwargs.pop("torch_dtype", None)
        return real(path, **kwargs)

    monkeypatch.setattr(StableDiffusionPipeline, "from_pretrained", old_diffusers)
    with pytest.raises(RuntimeError, match=r"requested torch.bfloat16 \(unet torch.float32, vae torch.float32, "
                                           r"text_encoder torch.float32\)"):
        sd.load_pipeline(tiny_sd, torch_dtype=torch.bfloat16)


# ---------------------------------------------------------------------------- pickled weights


def test_a_folder_with_only_pickled_weights_is_refused(pickled_sd):
    with pytest.raises(ValueError, match=rf"model folder '{pickled_sd}' holds pickled weights \(unet/"
                                         r"diffusion_pytorch_model.bin.*--allow-pickle \(option allow_pickle\)"):
        sd.load_pipeline(pickled_sd)
    with pytest.raises(ValueError, match="--allow-pickle"):
        Generator(pickled_sd, device="cpu")


def test_pickled_weights_load_when_the_user_opts_in(pickled_sd, tiny_sd):
    pipe = sd.load_pipeline(pickled_sd, allow_pickle=True)
    ref = sd.load_pipeline(tiny_sd)
    assert all(torch.equal(a, b) for a, b in zip(pipe.unet.state_dict().values(), ref.unet.state_dict().values()))
    gen = Generator(pickled_sd, device="cpu", allow_pickle=True)
    assert gen.fingerprint == sd.model_fingerprint(ref)


def test_allow_pickle_is_a_cli_flag_of_generate_and_invert():
    import argparse

    from bridgedfast.generate.config import GeneratorConfig
    from bridgedfast.invert.config import InvertConfig

    for config in (GeneratorConfig, InvertConfig):
        parser = argparse.ArgumentParser()
        config.add_arguments(parser)
        assert parser.parse_args(["--allow-pickle"]).allow_pickle is True
        assert parser.parse_args([]).allow_pickle is False


def test_generate_cli_refuses_pickled_weights_with_one_line(pickled_sd, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root))
    r = subprocess.run([sys.executable, "-m", "bridgedfast", "generate", "--model", str(pickled_sd), "--classes", "cat",
                        "--per-class", "1", "--out", str(tmp_path / "out"), "--device", "cpu", "--steps", "1",
                        "--height", "32", "--width", "32", "--no-progress"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2, r.stderr
    assert "pickled weights" in r.stderr and "--allow-pickle" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------- quiet loading


def test_quiet_loading_silences_diffusers_and_transformers_and_restores_them():
    import logging

    import diffusers.utils.logging as dlog
    import transformers.utils.logging as tlog

    loggers = (dlog.get_logger("diffusers.models.modeling_utils"), tlog.get_logger("transformers.modeling_utils"))
    dlog.set_verbosity_warning()
    tlog.set_verbosity_warning()
    dlog.enable_progress_bar()
    tlog.enable_progress_bar()
    with sd.quiet_loading():
        # the "install accelerate" notice is a diffusers warning; the loading bars are its tqdm bars
        assert not any(log.isEnabledFor(logging.WARNING) for log in loggers)
        assert not dlog.is_progress_bar_enabled() and not tlog.is_progress_bar_enabled()
    assert all(log.isEnabledFor(logging.WARNING) for log in loggers)
    assert dlog.is_progress_bar_enabled() and tlog.is_progress_bar_enabled()
    with sd.quiet_loading(False):  # progress shown: the loading bars stay, the notices still go
        assert not any(log.isEnabledFor(logging.WARNING) for log in loggers)
        assert dlog.is_progress_bar_enabled() and tlog.is_progress_bar_enabled()
    assert all(log.isEnabledFor(logging.WARNING) for log in loggers)
