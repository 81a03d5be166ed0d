"""The experiment file (`bridgedfast run experiment.yaml`): its schema, defaults and validation.

Everything is checked before any work starts: an unknown key (with a suggestion), a value of
the wrong type or outside its choices, and a missing input path each give one clear message
naming the key.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

MODES = ("vanilla", "mixed", "bridged", "bridged++")


class ExperimentError(ValueError):
    """The experiment file is invalid; the message names the offending key."""


@dataclass
class DataConfig:
    real: str = ""                          # folder of class sub-folders, or an ImageStore
    test: Optional[str] = None              # held-out real images (folder or store); None: split `real`
    test_fraction: float = 0.2              # per-class share held out when `test` is not given
    split_seed: int = 0
    shots: list[Optional[int]] = field(default_factory=lambda: [None])  # K images per class; None = all
    max_side: Optional[int] = None          # downscale real images when packing
    encoding: Literal["raw", "jpeg"] = "raw"


@dataclass
class GenerationConfig:
    model: str = ""                         # diffusers Stable Diffusion folder or hub id
    per_class: int = 1000
    template: str = "a photo of a {}"
    negative_prompt: Optional[str] = None
    guidance_scale: float = 7.5
    steps: int = 25
    scheduler: Optional[str] = "dpmpp"
    backend: Literal["eager", "compile", "tensorrt"] = "eager"
    attention: Literal["auto", "sdpa", "xformers"] = "auto"
    dtype: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    device: str = "auto"
    height: int = 512
    width: int = 512
    batch_size: Union[int, Literal["auto"]] = "auto"
    seed: int = 0
    store_size: Optional[int] = None        # resize generated images before storing
    encoding: Literal["raw", "jpeg"] = "raw"


@dataclass
class StyleConfig:
    enabled: bool = True
    token: str = "<dataset-style>"
    init_word: str = "photo"
    template: str = "a photo of a {} in the style of {token}"   # generation prompt when enabled
    steps: int = 3000
    lr: float = 5e-4
    batch_size: int = 4
    resolution: int = 512
    seed: int = 0
    dtype: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    device: str = "auto"


@dataclass
class TrainingConfig:
    model: str = "resnet50"
    pretrained: str = "timm"                # timm | none | path to a weights file
    modes: list[Literal["vanilla", "mixed", "bridged", "bridged++"]] = field(default_factory=lambda: list(MODES))
    seeds: list[int] = field(default_factory=lambda: [0])
    epochs: Optional[int] = None            # each stage, unless stage1/stage2 are given
    stage1_epochs: Optional[int] = None
    stage2_epochs: Optional[int] = None
    batch_size: Optional[int] = None
    image_size: Optional[int] = None
    lr: Optional[float] = None
    synthetic_fraction: Optional[float] = None   # mixed mode; None = proportional to store sizes
    device: str = "auto"
    workers: Optional[int] = None
    options: dict[str, Any] = field(default_factory=dict)   # any further TrainConfig field


@dataclass
class ReportConfig:
    samples_per_class: int = 4
    max_classes: int = 10                   # classes shown in the sample grid


@dataclass
class Experiment:
    out: str = "runs/experiment"
    data: DataConfig = field(default_factory=DataConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    style: StyleConfig = field(default_factory=StyleConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    def to_dict(self) -> dict:
        """Plain JSON/YAML-safe values (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of ({_type_name(typing.get_args(tp)[0])})"
    if origin is dict:
        return "a mapping"
    if tp is type(None):
        return "null"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(tp, getattr(tp, "__name__", str(tp)))


def _convert(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
    elif origin in (Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _convert(value, option, key)
            except ExperimentError:
                continue
    elif origin is list:
        items = value if isinstance(value, list) else [value]  # a single value means a one-item list
        return [_convert(v, typing.get_args(tp)[0], f"{key}[{i}]") for i, v in enumerate(items)]
    elif origin is tuple:
        args = typing.get_args(tp)
        if isinstance(value, (list, tuple)) and len(value) == len(args):
            return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    elif origin is dict:
        if isinstance(value, dict):
            return dict(value)
    elif tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is Any:
        return value
    raise ExperimentError(f"{key} must be {_type_name(tp)}, got {value!r}")


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ExperimentError(f"{prefix or 'the experiment file'} must be a mapping of keys to values, got {raw!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(known)})"
            raise ExperimentError(f"unknown key '{full}'{hint}")
        kwargs[key] = _convert(value, hints[key], full)
    return cls(**kwargs)


# TrainConfig fields that `training.options` may not set: the experiment decides them.
_MANAGED_TRAIN_KEYS = {"model", "real_train", "real_test", "out", "mode", "synthetic", "shots", "seed", "progress",
                       "pretrained", "device"}


def _check_train_options(options: dict[str, Any]) -> dict[str, Any]:
    """Validates `training.options` against `bridgedfast.transfer.TrainConfig` (stage1/stage2
    as StageConfig mappings) and returns them converted."""
    from ..transfer import StageConfig, TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    known = sorted(set(hints) - _MANAGED_TRAIN_KEYS)
    out: dict[str, Any] = {}
    for key, value in options.items():
        full = f"training.options.{key}"
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            managed = f" (set it as training.{key} or data.{key})" if key in _MANAGED_TRAIN_KEYS else ""
            hint = f" (did you mean '{close[0]}'?)" if close and not managed else ""
            raise ExperimentError(f"unknown key '{full}'{managed or hint}")
        out[key] = _build(StageConfig, value, full) if key in ("stage1", "stage2") else _convert(value, hints[key], full)
    return out


def _check_values(exp: Experiment, base: Path) -> None:
    def positive(key: str, value: Any) -> None:
        if value is not None and value <= 0:
            raise ExperimentError(f"{key} must be positive, got {value!r}")

    if not exp.data.real:
        raise ExperimentError("data.real is required: a folder of class sub-folders or an image store")
    for key, value in (("data.real", exp.data.real), ("data.test", exp.data.test)):
        if value is not None and not _resolve(value, base).exists():
            raise ExperimentError(f"{key}: {value!r} does not exist")
    if exp.data.max_side is not None and exp.data.max_side <= 0:
        raise ExperimentError(f"data.max_side must be positive, got {exp.data.max_side!r}")
    if exp.data.test is None and not 0 < exp.data.test_fraction < 1:
        raise ExperimentError(f"data.test_fraction must be between 0 and 1, got {exp.data.test_fraction!r}")
    for i, k in enumerate(exp.data.shots):
        positive(f"data.shots[{i}]", k)
    needs_synthetic = any(m != "vanilla" for m in exp.training.modes)
    if needs_synthetic:
        if not exp.generation.model:
            raise ExperimentError("generation.model is required for the modes mixed/bridged/bridged++")
        model = exp.generation.model
        looks_like_hub_id = not model.startswith((".", "/", "~")) and model.count("/") == 1
        if not looks_like_hub_id and not _resolve(model, base).exists():
            raise ExperimentError(f"generation.model: {model!r} is neither an existing folder nor a hub id (org/name)")
        if "{}" not in exp.generation.template:
            raise ExperimentError(f"generation.template must contain '{{}}' for the class name, got {exp.generation.template!r}")
        if exp.style.enabled and ("{}" not in exp.style.template or "{token}" not in exp.style.template):
            raise ExperimentError(f"style.template must contain '{{}}' and '{{token}}', got {exp.style.template!r}")
    for key in ("per_class", "steps", "height", "width"):
        positive(f"generation.{key}", getattr(exp.generation, key))
    if isinstance(exp.generation.batch_size, int):
        positive("generation.batch_size", exp.generation.batch_size)
    for key in ("steps", "batch_size", "resolution"):
        positive(f"style.{key}", getattr(exp.style, key))
    positive("style.lr", exp.style.lr)
    for key in ("epochs", "stage1_epochs", "stage2_epochs", "batch_size", "image_size", "lr"):
        positive(f"training.{key}", getattr(exp.training, key))
    for key in ("samples_per_class", "max_classes"):
        positive(f"report.{key}", getattr(exp.report, key))
    if not exp.training.modes:
        raise ExperimentError("training.modes must list at least one of " + ", ".join(MODES))
    if not exp.training.seeds:
        raise ExperimentError("training.seeds must list at least one seed")
    sf = exp.training.synthetic_fraction
    if sf is not None and not 0 <= sf <= 1:
        raise ExperimentError(f"training.synthetic_fraction must be between 0 and 1, got {sf!r}")
    exp.training.options = _check_train_options(exp.training.options)
    pretrained = exp.training.pretrained
    if pretrained not in ("timm", "none") and not _resolve(pretrained, base).exists():
        raise ExperimentError(f"training.pretrained: {pretrained!r} is neither 'timm', 'none' nor an existing file")
    _check_late_failures(exp, needs_synthetic)


def _check_late_failures(exp: Experiment, needs_synthetic: bool) -> None:
    """What the steps themselves would refuse only when they start, possibly hours in (after
    style inversion and generation): checked here so that a typo fails before any work."""
    from ..devices import resolve_device

    g, s = exp.generation, exp.style
    devices = [("training.device", exp.training.device)]
    if needs_synthetic:
        devices += [("generation.device", g.device)] + ([("style.device", s.device)] if s.enabled else [])
        from ..generate.schedulers import check_scheduler_name

        try:
            check_scheduler_name(g.scheduler)
        except ValueError as exc:
            raise ExperimentError(f"generation.scheduler: {exc}") from None
        for key in ("height", "width"):
            if getattr(g, key) % 8:
                raise ExperimentError(f"generation.{key} must be a multiple of 8, got {getattr(g, key)!r}")
        if g.guidance_scale < 0:
            raise ExperimentError(f"generation.guidance_scale must be >= 0, got {g.guidance_scale!r}")
        if g.seed < 0:
            raise ExperimentError(f"generation.seed must be >= 0, got {g.seed!r}")
        if g.store_size is not None and g.store_size <= 0:
            raise ExperimentError(f"generation.store_size must be positive, got {g.store_size!r}")
        if s.enabled and (not s.token or any(c.isspace() for c in s.token)):
            raise ExperimentError(f"style.token must be a non-empty string without spaces, got {s.token!r}")
    for key, value in devices:
        try:
            resolve_device(value)
        except ValueError as exc:
            raise ExperimentError(f"{key}: {exc}") from None
    import timm

    from ..transfer.models import check_model_name

    try:
        check_model_name(exp.training.model)
    except ValueError as exc:
        raise ExperimentError(f"training.model: {exc}") from None
    if exp.training.pretrained == "timm" and not timm.is_model_pretrained(exp.training.model):
        raise ExperimentError(f"training.pretrained: timm has no pretrained weights for {exp.training.model!r}; "
                              "use a weights file or 'none'")
    for mode in exp.training.modes:
        for shots in exp.data.shots:
            try:
                train_config(exp, mode, shots, exp.training.seeds[0], real_train="real-train", real_test="real-test",
                             synthetic="synthetic", out="out").resolved()
            except (ValueError, TypeError) as exc:
                raise ExperimentError(f"training ({mode}): {exc}") from None


def train_config(exp: Experiment, mode: str, shots: int | None, seed: int, *, real_train: str | Path,
                 real_test: str | Path, synthetic: str | Path | None, out: str | Path, progress: bool = True):
    """The `bridgedfast.transfer.TrainConfig` of one training run of the experiment."""
    from ..transfer import TrainConfig

    t = exp.training
    cfg_kwargs: dict[str, Any] = dict(
        model=t.model, real_train=str(real_train), real_test=str(real_test), out=str(out), mode=mode,
        synthetic=None if mode == "vanilla" else str(synthetic), shots=shots, pretrained=t.pretrained,
        device=t.device, seed=seed, progress=progress,
    )
    for key in ("batch_size", "lr", "image_size", "workers"):
        if getattr(t, key) is not None:
            cfg_kwargs[key] = getattr(t, key)
    if t.epochs is not None:
        cfg_kwargs["epochs"] = t.epochs
    if mode == "mixed" and t.synthetic_fraction is not None:
        cfg_kwargs["synthetic_fraction"] = t.synthetic_fraction
    cfg_kwargs.update(copy.deepcopy(t.options))
    config = TrainConfig(**cfg_kwargs)
    for stage, epochs in (("stage1", t.stage1_epochs), ("stage2", t.stage2_epochs)):
        if epochs is not None:
            getattr(config, stage).epochs = epochs
    return config


def _resolve(path: str, base: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p


def _resolve_paths(exp: Experiment, base: Path) -> None:
    """Relative paths in the file are relative to the file's folder."""
    exp.data.real = str(_resolve(exp.data.real, base))
    if exp.data.test is not None:
        exp.data.test = str(_resolve(exp.data.test, base))
    if exp.generation.model and _resolve(exp.generation.model, base).exists():
        exp.generation.model = str(_resolve(exp.generation.model, base))
    if exp.training.pretrained not in ("timm", "none"):
        exp.training.pretrained = str(_resolve(exp.training.pretrained, base))
    exp.out = str(_resolve(exp.out, base))


def parse_experiment(raw: Any, *, base: str | Path = ".") -> Experiment:
    """Validates a mapping (the parsed YAML) into an Experiment, paths resolved against `base`."""
    exp = _build(Experiment, raw, "")
    base = Path(base)
    _check_values(exp, base)
    _resolve_paths(exp, base)
    return exp


def load_experiment(path: str | Path) -> Experiment:
    """Reads and validates an experiment YAML file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"experiment file {str(path)!r} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ExperimentError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    return parse_experiment(raw, base=path.resolve().parent)
