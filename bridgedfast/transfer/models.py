"""timm classifiers: creation with explicit pretrained weights, head/backbone parameter groups,
and the seeded classifier re-initialisation of bridged transfer++."""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["check_model_name", "create_model", "create_source_model", "load_weights_file", "classifier_parameters",
           "param_groups", "reset_head", "data_config"]

def check_model_name(name: Any) -> None:
    """ValueError (with the closest timm names) unless `name` is a timm model name."""
    import timm

    if isinstance(name, str) and timm.is_model(name):
        return
    close = difflib.get_close_matches(str(name), timm.list_models(), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
    raise ValueError(f"unknown timm model {str(name)!r}{hint}")


def _size_kwargs(name: str, image_size: int | None) -> dict[str, Any]:
    """Models with a fixed input size (ViTs' position embeddings) are built for `image_size`;
    timm resamples pretrained position embeddings to it."""
    import timm

    cfg = timm.models.get_pretrained_cfg(name)
    if image_size is None or cfg is None or not getattr(cfg, "fixed_input_size", False):
        return {}
    return {} if cfg.input_size[-1] == image_size else {"img_size": image_size}


def create_model(name: str, num_classes: int, pretrained: str = "none", image_size: int | None = None) -> nn.Module:
    """A timm model with a `num_classes` head. `pretrained`: 'timm' (timm's ImageNet weights from
    the Hugging Face hub or its local cache), 'none' (random init) or a weights file
    (.safetensors, or a .pt/.pth/.bin state dict). Weights that cannot be had raise; there is no
    silent fallback to random init. `image_size` matters only to fixed-input-size models (ViT)."""
    import timm

    check_model_name(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    size = _size_kwargs(name, image_size)
    if pretrained == "timm":
        if not timm.is_model_pretrained(name):
            raise ValueError(f"timm has no pretrained weights for {name!r}; use --pretrained FILE or --pretrained none")
        try:
            return timm.create_model(name, pretrained=True, num_classes=num_classes, **size)
        except Exception as exc:  # no network and not cached, gated repo, corrupt download...
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise FileNotFoundError(
                f"could not load timm's pretrained weights for {name!r} ({type(exc).__name__}: {first}); "
                "they come from the Hugging Face hub or its local cache - pass --pretrained FILE with a local "
                "weights file, or --pretrained none for random init"
            ) from exc
    model = timm.create_model(name, pretrained=False, num_classes=num_classes, **size)
    if pretrained == "none" or pretrained is None:
        return model
    load_weights_file(model, pretrained)
    return model


def create_source_model(name: str, num_classes: int, pretrained: str = "none",
                        image_size: int | None = None) -> tuple[nn.Module, bool]:
    """(model, has_source_head): like `create_model`, but the classifier stays the one the
    pretrained weights came with (ImageNet's 1000 classes for 'timm', the file's for a weights
    file that holds one), so LEEP can score the source model before fine-tuning. Without one
    (random init, or a headless file) the head is already a fresh `num_classes` head."""
    import timm

    if pretrained in ("none", None):
        return create_model(name, num_classes, "none", image_size), False
    if pretrained == "timm":
        check_model_name(name)
        cfg = timm.models.get_pretrained_cfg(name)
        source_classes = getattr(cfg, "num_classes", 0) if cfg is not None else 0
        if not source_classes:
            return create_model(name, num_classes, "timm", image_size), False
        return create_model(name, source_classes, "timm", image_size), True
    path = Path(pretrained).expanduser()
    probe = create_model(name, 1, "none", image_size)  # also validates the name
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights {str(pretrained)!r} not found (use --pretrained timm, none, or an existing weights file)"
        )
    state = {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in _read_state_dict(path).items()}
    head_weights = [n for n, t in _classifier_named_tensors(probe) if t.dim() == 2 and n in state and state[n].dim() == 2]
    if not head_weights:
        return create_model(name, num_classes, str(path), image_size), False
    return create_model(name, int(state[head_weights[0]].shape[0]), str(path), image_size), True


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise ValueError(f"pretrained weights {str(path)!r} are not a readable safetensors file ({exc})") from None
    if path.suffix in (".pt", ".pth", ".bin", ".ckpt"):
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"{path} is not a plain state dict loadable with weights_only=True ({type(exc).__name__})") from exc
        for key in ("state_dict", "model", "model_state_dict", "state_dict_ema"):
            if isinstance(obj, dict) and isinstance(obj.get(key), dict):
                obj = obj[key]
                break
        if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise ValueError(f"{path} does not hold a state dict of tensors")
        return obj
    raise ValueError(f"pretrained weights file {str(path)!r} must be .safetensors, .pt, .pth or .bin")


def load_weights_file(model: nn.Module, path: str | Path) -> None:
    """Loads a weights file into `model`. Only the classifier may be missing or differ in shape
    (e.g. ImageNet's 1000 classes): it then keeps its fresh init. Anything else that does not fit
    is an error naming the keys."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights {str(path)!r} not found (use --pretrained timm, none, or an existing weights file)"
        )
    state = _read_state_dict(path)
    state = {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in state.items()}
    own = model.state_dict()
    head = {name for name, _ in _classifier_named_tensors(model)}
    skipped = [k for k, v in state.items() if k in head and k in own and own[k].shape != v.shape]
    for k in skipped:
        del state[k]
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items() if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in state and k not in head]
    unexpected = [k for k in state if k not in own]
    if wrong or missing or unexpected:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")

        parts = [f"{label}: {few(keys)}" for label, keys in (("shape mismatch", wrong), ("missing", missing), ("unexpected", unexpected)) if keys]
        raise ValueError(f"pretrained weights {str(path)!r} do not fit model {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(state, strict=False)


def _classifier_modules(model: nn.Module) -> list[nn.Module]:
    heads = model.get_classifier() if hasattr(model, "get_classifier") else None
    if heads is None:
        raise ValueError(f"{type(model).__name__} has no get_classifier(): a timm classifier is needed")
    return [h for h in (heads if isinstance(heads, (tuple, list)) else [heads]) if isinstance(h, nn.Module)]


def _classifier_named_tensors(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    ids = {id(t) for h in _classifier_modules(model) for t in [*h.parameters(), *h.buffers()]}
    tensors = [*model.named_parameters(), *model.named_buffers()]
    return [(n, t) for n, t in tensors if id(t) in ids]


def classifier_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The classifier head's parameters (what `reset_classifier` replaces)."""
    return [p for h in _classifier_modules(model) for p in h.parameters()]


def param_groups(model: nn.Module, *, lr: float, head_lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """Backbone and head groups, each split into decayed weights and undecayed biases/norms
    (1-D tensors), as timm does. Group order is fixed so optimiser states line up on resume."""
    head_ids = {id(p) for p in classifier_parameters(model)}
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {(h, d): [] for h in (False, True) for d in (True, False)}
    for _, p in model.named_parameters():
        if p.requires_grad:
            groups[(id(p) in head_ids, p.ndim > 1)].append(p)
    out = []
    for (is_head, decay), params in groups.items():
        if params:
            out.append(
                {
                    "params": params,
                    "lr": head_lr if is_head else lr,
                    "base_lr": head_lr if is_head else lr,
                    "weight_decay": weight_decay if decay else 0.0,
                    "name": f"{'head' if is_head else 'backbone'}_{'decay' if decay else 'no_decay'}",
                }
            )
    return out


def reset_head(model: nn.Module, num_classes: int, seed: int) -> None:
    """Re-initialises the classifier (timm `reset_classifier`) from a seeded RNG, on the device
    and dtype the model already uses."""
    ref = next(iter(model.parameters()))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.reset_classifier(num_classes)
    for h in _classifier_modules(model):
        h.to(device=ref.device, dtype=ref.dtype)


def data_config(model: nn.Module, image_size: int | None) -> dict[str, Any]:
    """Input size, mean/std (0-1 scale) and eval crop fraction from the model's pretrained config."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    size = image_size or int(cfg.get("input_size", (3, 224, 224))[-1])
    return {
        "image_size": size,
        "mean": tuple(float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406))),
        "std": tuple(float(v) for v in cfg.get("std", (0.229, 0.224, 0.225))),
        "crop_pct": float(cfg.get("crop_pct", 0.875) or 0.875),
    }
