"""Loading Stable Diffusion models the way diffusers does, with clear errors, and fingerprinting them.

Shared by generation and style inversion: a model argument may be a ready diffusers
pipeline, a local folder saved with `save_pretrained`, or a hub id (needs network access or
the local Hugging Face cache).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any, Iterator

import torch

from .options import BOOL, spec

__all__ = ["load_pipeline", "model_fingerprint", "dtype_keyword", "quiet_loading", "check_no_pickled_weights",
           "check_loaded_dtype", "check_model_folder", "check_model_source", "PICKLED_WEIGHTS", "ALLOW_PICKLE",
           "SD_COMPONENTS"]


#: The opt-in to pickled model weights, shared by every step that loads a Stable Diffusion folder.
ALLOW_PICKLE = spec(False, BOOL, "load a model folder's pickled weights (.bin) when it has no safetensors (unpickling "
                    "runs code from the file: only for folders you trust)", keyed=False)
#: Weight files that are pickles (unpickling runs code): refused unless allow_pickle.
PICKLED_WEIGHTS = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
#: The pipeline components that hold weights, checked after loading for the requested dtype.
WEIGHTED_COMPONENTS = ("unet", "vae", "text_encoder")
#: What a Stable Diffusion folder must hold (model_index.json lists them, each in its sub-folder).
SD_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


def dtype_keyword() -> str:
    """The keyword `from_pretrained` takes the precision by in the installed diffusers: `dtype` in
    the releases that have it (which deprecate `torch_dtype` with a warning), else `torch_dtype`
    (every diffusers >= 0.30). `load_pipeline` checks the loaded dtype either way."""
    try:
        from diffusers.utils.deprecation_utils import _resolve_dtype  # noqa: F401  (diffusers' own helper)
    except ImportError:
        return "torch_dtype"
    return "dtype"


@contextlib.contextmanager
def quiet_loading(enabled: bool = True) -> Iterator[None]:
    """Silences diffusers' and transformers' notices inside the block (always: e.g. "install
    accelerate for faster loading" is not something a user of this package needs to act on) and,
    when `enabled`, their loading progress bars; restores their settings after."""
    import diffusers.utils.logging as dlog
    import transformers.utils.logging as tlog

    levels = (dlog.get_verbosity(), tlog.get_verbosity())
    bars = (dlog.is_progress_bar_enabled(), tlog.is_progress_bar_enabled())
    dlog.set_verbosity_error()
    tlog.set_verbosity_error()
    if enabled:
        dlog.disable_progress_bar()
        tlog.disable_progress_bar()
    try:
        yield
    finally:
        dlog.set_verbosity(levels[0])
        tlog.set_verbosity(levels[1])
        if bars[0]:
            dlog.enable_progress_bar()
        if bars[1]:
            tlog.enable_progress_bar()


def check_no_pickled_weights(folder: Path) -> None:
    """A diffusers folder whose weighted components have pickled weights (.bin, ...) and no
    .safetensors file is refused: loading would unpickle them."""
    pickled = []
    for name in WEIGHTED_COMPONENTS:
        sub = folder / name
        if not sub.is_dir():
            continue
        files = [f for f in sub.iterdir() if f.is_file()]
        if not any(f.suffix == ".safetensors" for f in files):
            pickled += [f"{name}/{f.name}" for f in files if f.suffix in PICKLED_WEIGHTS]
    if pickled:
        raise ValueError(f"model folder {str(folder)!r} holds pickled weights ({', '.join(pickled[:3])}) and no "
                         ".safetensors for them: loading them runs code from the file; convert them to safetensors, or "
                         "pass --allow-pickle (option allow_pickle) if you trust the folder")


def check_model_folder(folder: Path) -> None:
    """A local diffusers Stable Diffusion folder is complete, checked without loading it: a
    readable model_index.json listing every SD_COMPONENTS entry, and each component it lists in
    its own sub-folder (weighted ones with their config.json and a weights file). ValueError
    naming the missing part (diffusers would fail deep inside loading, after minutes)."""
    index_file = folder / "model_index.json"
    if not index_file.is_file():
        raise FileNotFoundError(f"{str(folder)!r} is not a diffusers Stable Diffusion folder (no model_index.json in it)")
    try:
        index = json.loads(index_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"model folder {str(folder)!r}: model_index.json is not valid JSON ({exc})") from None
    if not isinstance(index, dict):
        raise ValueError(f"model folder {str(folder)!r}: model_index.json must be a JSON object")
    listed = {k for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and v and v[0] is not None}
    unlisted = [c for c in SD_COMPONENTS if c not in listed]
    if unlisted:
        raise ValueError(f"model folder {str(folder)!r} is missing the component {unlisted[0]!r} (model_index.json does "
                         "not list it): a Stable Diffusion model needs " + ", ".join(SD_COMPONENTS))
    for name in sorted(listed):
        sub = folder / name
        if not sub.is_dir() or not any(sub.iterdir()):
            raise ValueError(f"model folder {str(folder)!r} is missing the component {name!r} (no {name}/ sub-folder "
                             "with its files; model_index.json lists it)")
        if name in WEIGHTED_COMPONENTS:
            if not (sub / "config.json").is_file():
                raise ValueError(f"model folder {str(folder)!r}: component {name!r} has no {name}/config.json")
            if not any(f.suffix == ".safetensors" or f.suffix in PICKLED_WEIGHTS for f in sub.iterdir()):
                raise ValueError(f"model folder {str(folder)!r}: component {name!r} has no weights file in {name}/")


def check_model_source(model: Any, allow_pickle: bool = False) -> None:
    """What can be checked of a model argument without loading it: a local folder must be a
    complete Stable Diffusion folder (`check_model_folder`) without pickled-only weights (unless
    `allow_pickle`); a path that does not exist is an error unless it reads as a hub id."""
    if not isinstance(model, (str, Path)):
        return
    path = Path(model).expanduser()
    if path.exists():
        check_model_folder(path)
        if not allow_pickle:
            check_no_pickled_weights(path)
    elif str(model).startswith((".", "/", "~")) or str(model).count("/") != 1:
        raise FileNotFoundError(f"model folder {str(model)!r} does not exist")


def check_loaded_dtype(pipe: Any, dtype: torch.dtype) -> None:
    """The weighted components must be in `dtype` (catches a diffusers that ignored the keyword)."""
    wrong = {name: getattr(pipe, name).dtype for name in WEIGHTED_COMPONENTS
             if getattr(pipe, name, None) is not None and getattr(pipe, name).dtype != dtype}
    if wrong:
        got = ", ".join(f"{k} {v}" for k, v in wrong.items())
        raise RuntimeError(f"diffusers loaded the model in another precision than the requested {dtype} ({got})")


def load_pipeline(model: Any, *, torch_dtype: torch.dtype | None = None, allow_pickle: bool = False,
                  quiet: bool = False):
    """A `StableDiffusionPipeline` from a pipeline object, a local folder or a hub id.
    Weights load from safetensors only (`use_safetensors=True`) unless `allow_pickle`; a folder
    with only pickled weights is refused naming it. `torch_dtype`: the precision to load in
    (checked after loading). `quiet`: no diffusers/transformers notices or loading bars."""
    from diffusers import DiffusionPipeline, StableDiffusionPipeline

    if isinstance(model, DiffusionPipeline):
        for name in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
            if getattr(model, name, None) is None:
                raise ValueError(f"the given pipeline has no {name}: a Stable Diffusion pipeline is needed")
        return model
    if not isinstance(model, (str, Path)):
        raise ValueError(f"model must be a diffusers pipeline, a folder or a hub id, got {type(model).__name__}")
    path = Path(model).expanduser()
    kwargs: dict[str, Any] = {"safety_checker": None, "requires_safety_checker": False}
    if not allow_pickle:
        kwargs["use_safetensors"] = True
    if torch_dtype is not None:
        kwargs[dtype_keyword()] = torch_dtype
    check_model_source(path if path.exists() else model, allow_pickle)
    if path.exists():
        from safetensors import SafetensorError

        try:
            with quiet_loading(quiet):
                pipe = StableDiffusionPipeline.from_pretrained(str(path), **kwargs)
        except (OSError, SafetensorError) as exc:  # e.g. a damaged weights or tokenizer file
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ValueError(f"cannot load model folder {str(path)!r} ({type(exc).__name__}: {first})") from exc
    else:
        try:
            with quiet_loading(quiet):
                pipe = StableDiffusionPipeline.from_pretrained(str(model), **kwargs)
        except Exception as exc:  # network errors, missing repos, gated models, no safetensors...
            raise FileNotFoundError(
                f"could not load {str(model)!r} as a local folder or from the Hugging Face hub ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); pass a local Stable Diffusion folder instead"
            ) from exc
    if torch_dtype is not None:
        check_loaded_dtype(pipe, torch_dtype)
    return pipe


_VOLATILE_CONFIG_KEYS = {"dtype", "torch_dtype", "transformers_version", "use_cache", "output_attentions"}


def _samples(tensor: torch.Tensor) -> torch.Tensor:
    """A few strided float32 samples of a tensor: the fingerprint's cheap content summary."""
    flat = tensor.detach().reshape(-1)
    return flat[:: max(1, flat.numel() // 64)].float().cpu()


def _stored_samples(module: Any, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """For a module loaded in a lower precision than float32 from a local folder: the samples of
    its weights as stored in the folder's safetensors, provided each equals the loaded weight's
    sample once cast to the loaded dtype (so these are the weights, in the precision they were
    saved in). None where that cannot be shown: the loaded weights are then sampled as they are."""
    folder = getattr(module.config, "_name_or_path", None)
    files = list(Path(folder).glob("*.safetensors")) if folder and Path(folder).is_dir() else []
    files.sort(key=lambda f: (f.name.count("."), f.name))  # the full-precision file before variants (x.fp16.safetensors)
    if not files:
        return None
    from safetensors import safe_open

    found: dict[str, torch.Tensor] = {}
    try:
        for file in files:
            with safe_open(str(file), framework="pt") as f:
                for key in f.keys():
                    if key in state and key not in found:
                        found[key] = _samples(f.get_tensor(key))
    except Exception:  # an unreadable file: no stored samples
        return None
    for key, tensor in state.items():
        mine = _samples(tensor)
        if key not in found or found[key].shape != mine.shape or not torch.equal(found[key].to(tensor.dtype).float(), mine):
            return None
    return found


def model_fingerprint(pipe) -> str:
    """A short stable hash of a pipeline's component configs and sampled weights: keys caches
    (latents, engines) and detects a changed model against an existing output.

    The model's identity, not its precision: a component loaded from a local folder in a lower
    precision than float32 (fp16, bf16) is sampled from the folder's stored weights (checked to
    be the loaded ones), so loading one folder in another dtype keeps the fingerprint; what
    depends on the precision keys it separately (the latent cache folder, generation.json's
    'dtype'). A pipeline built or changed in memory in a lower precision is sampled as it is."""
    h = hashlib.sha256()
    for name in ("unet", "vae", "text_encoder"):
        module = getattr(pipe, name)
        h.update(name.encode())
        config = module.config.to_dict() if hasattr(module.config, "to_dict") else dict(module.config)
        # Loading details (dtype, paths, library versions) are not part of the model.
        config = {k: v for k, v in config.items() if not k.startswith("_") and k not in _VOLATILE_CONFIG_KEYS}
        h.update(json.dumps(config, sort_keys=True, default=str).encode())
        state = module.state_dict()
        lower = any(t.is_floating_point() and t.dtype not in (torch.float32, torch.float64) for t in state.values())
        stored = _stored_samples(module, state) if lower else None
        for key, tensor in sorted(state.items()):
            h.update(key.encode())
            h.update(str(tuple(tensor.shape)).encode())
            h.update((stored[key] if stored is not None else _samples(tensor)).numpy().tobytes())
    tok = pipe.tokenizer
    h.update(str(len(tok)).encode())
    return h.hexdigest()[:16]
