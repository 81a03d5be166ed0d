"""Schedulers by short name, each built `from_config` of the model's own scheduler config."""
from __future__ import annotations

from typing import Any

# name -> (diffusers class, config overrides)
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "dpmpp": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "dpmpp-karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True}),
    "dpmpp-single": ("DPMSolverSinglestepScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "ddim": ("DDIMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler-a": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "kdpm2": ("KDPM2DiscreteScheduler", {}),
    "kdpm2-a": ("KDPM2AncestralDiscreteScheduler", {}),
    "deis": ("DEISMultistepScheduler", {}),
}

DEFAULT_SCHEDULER = "dpmpp"


def check_scheduler_name(name: Any) -> None:
    """Fails on an unknown scheduler name (ValueError listing the names) without loading a model."""
    import diffusers

    if name is None or (isinstance(name, str) and name.strip().lower() in SCHEDULERS):
        return
    if isinstance(name, str) and name.endswith("Scheduler") and isinstance(getattr(diffusers, name, None), type):
        return
    build_scheduler(name, None)  # raises the ValueError listing the names


def build_scheduler(name: str | None, model_scheduler: Any) -> Any:
    """The scheduler `name` (a short name above or a diffusers scheduler class name) built from
    `model_scheduler.config`; None returns `model_scheduler` itself."""
    import diffusers

    if name is None:
        return model_scheduler
    if not isinstance(name, str):
        raise ValueError(f"scheduler must be a name or None, got {type(name).__name__}")
    key = name.strip().lower()
    if key in SCHEDULERS:
        cls_name, overrides = SCHEDULERS[key]
    elif name.endswith("Scheduler") and isinstance(getattr(diffusers, name, None), type):
        cls_name, overrides = name, {}
    else:
        raise ValueError(
            f"unknown scheduler {name!r}: use one of {', '.join(SCHEDULERS)} or a diffusers scheduler class name"
        )
    return getattr(diffusers, cls_name).from_config(model_scheduler.config, **overrides)


def scheduler_description(scheduler: Any) -> dict[str, Any]:
    """The scheduler's class and configuration, JSON-ready (for the manifest)."""
    config = {k: v for k, v in dict(scheduler.config).items() if not k.startswith("_")}
    return {"class": type(scheduler).__name__, "config": _jsonable(config)}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
