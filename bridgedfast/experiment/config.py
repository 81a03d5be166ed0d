"""The experiment file (`bridgedfast run experiment.yaml`): its sections, keys, defaults and validation.

Each section's keys are the YAML-exposed options of the steps it configures, taken from their
declarations (`bridgedfast.options`): `data:` from `PackConfig`, `generation:` from
`GeneratorConfig` and `GenerateConfig`, `style:` from `InvertConfig`, `training:` from
`TrainConfig` (any further TrainConfig/StageConfig option under `training.options`), plus the
keys only an experiment has (the data split, the style's prompt, the modes and seeds, ...).
`bridgedfast run --help` lists them from the same declarations.

Everything is checked before any work starts: an unknown key (with a suggestion), a value of
the wrong type or outside its range, and a missing input path each give one clear message
naming the key.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import textwrap
from pathlib import Path
from typing import Any

from ..data.pack import PackConfig
from ..filter.config import FilterConfig
from ..generate.config import GenerateConfig, GeneratorConfig
from ..invert.config import InvertConfig
from ..options import (BOOL, FLOAT, INT, MAPPING, SEED_RANGE, STR, Option, OptionError, check_fields, check_option,
                       list_of, one_or_more, unknown_key_error)
from ..transfer.config import MODES, StageConfig, TrainConfig

__all__ = ["Experiment", "ExperimentError", "SECTIONS", "describe_sections", "load_experiment", "parse_experiment",
           "section_payload", "step_options", "train_config"]


class ExperimentError(ValueError):
    """The experiment file is invalid; the message names the offending key."""


def _positive_items(values: list[int | None], name: str) -> None:
    for i, k in enumerate(values):
        if k is not None and k <= 0:
            raise ValueError(f"{name}[{i}] must be positive, got {k!r}")


def _style_template(value: str, name: str) -> None:
    if "{}" not in value or "{token}" not in value:
        raise ValueError(f"{name} must contain '{{}}' and '{{token}}', got {value!r}")
    check_fields(value, ("{}", "{token}"), name)


def _seed_items(values: list[int], name: str) -> None:
    for i, seed in enumerate(values):
        if not SEED_RANGE["min"] <= seed <= SEED_RANGE["max"]:
            raise ValueError(f"{name}[{i}] must be a seed in [{SEED_RANGE['min']}, {SEED_RANGE['max']}], got {seed!r}")


def _default(config: type, name: str, default: Any) -> Option:
    """A step's option with the experiment's own default (None: the step's)."""
    return config.options()[name].replace(default=default)


def _sweep(option: Option, default: Any, study: str) -> Option:
    """A generation option that may list several values: one study point each."""
    return option.replace(kind=one_or_more(option.kind), default=default,
                          help=f"{option.help}; a list = the {study} study, one point each")


def _generation_option(o: Option) -> Option:
    if o.name == "per_class":
        return _sweep(o, 1000, "volume (generated once, at the largest; smaller volumes train on each class's first "
                      "images)")
    if o.name == "guidance_scale":
        return _sweep(o, o.default, "guidance (one synthetic store each)")
    return o


# TrainConfig options the training section shows with their own default (the others: null = the trainer's).
_OWN_DEFAULTS = ("model", "pretrained", "device", "min_steps")

SECTIONS: dict[str, list[Option]] = {
    "data": [
        Option("real", STR, "", "folder of class sub-folders or an image store (required)"),
        Option("test", STR, None, "held-out real images (folder or store); null: split `real`"),
        Option("test_fraction", FLOAT, 0.2, "per-class share of `real` held out for testing when `test` is not given",
               min=0.0, max=1.0, min_open=True, max_open=True),
        Option("split_seed", INT, 0, "seed of that split", **SEED_RANGE),
        Option("shots", list_of(INT, nullable_items=True), [None], "real training images per class, one run each; "
               "null = all, e.g. [1, 5, null]", check=_positive_items),
        *PackConfig.exposed("yaml"),
    ],
    "generation": [
        Option("model", STR, "", "Stable Diffusion folder or hub id (needed by mixed, bridged, bridged++)"),
        *GeneratorConfig.exposed("yaml"),
        *[_generation_option(o) for o in GenerateConfig.exposed("yaml")],
        Option("init", STR, None, "img2img: 'real' starts image i of class c from the run's own (few-shot) real "
               "training image i mod n of its class (with `strength`); null = text-to-image", choices=("real",),
               keyed="if_set"),
    ],
    "style": [
        Option("enabled", one_or_more(BOOL), True, "dataset style inversion before generation (on the K-shot split "
               "of each shots value, null shots: all real training images); [true, false] = the style study: also a "
               "plain store (no style token) and every synthetic mode trained on each"),
        Option("template", one_or_more(STR), "a photo of a {} in the style of {token}", "the generation prompt with the "
               "style token (a list: image i uses template i mod T)",
               check=_style_template, keyed=False),  # keys the generation step, not the inversion
        *InvertConfig.exposed("yaml"),
    ],
    "training": [
        _default(TrainConfig, "model", "resnet50"),
        *[o.replace(default=None) if o.default is not None and o.name not in _OWN_DEFAULTS else o
          for o in TrainConfig.exposed("yaml") if o.name != "model"],
        Option("modes", list_of(STR, choices=MODES), list(MODES), "training modes, one run each"),
        Option("seeds", list_of(INT), [0], "training seeds, one run each", check=_seed_items),
        Option("stage1_epochs", INT, None, "epochs of the synthetic stage (default: epochs)", min=1),
        Option("stage2_epochs", INT, None, "epochs of the real stage (default: epochs)", min=1),
        Option("options", MAPPING, {}, "any further `bridgedfast train` setting by its Python name "
               "(stage1/stage2: mappings of StageConfig settings)"),
    ],
    "filter": [
        Option("enabled", BOOL, False, "filter each synthetic store (`bridgedfast filter`) and train on the kept images"),
        *FilterConfig.exposed("yaml"),
    ],
    "report": [
        Option("samples_per_class", INT, 4, "samples per class in the real vs synthetic grid", min=1),
        Option("max_classes", INT, 10, "classes shown in the sample grid", min=1),
        Option("measure_images", INT, 500, "images per store (and of the real training images), balanced across "
               "classes, for the synthetic-real gap (KID in the pretrained classifier's features) and class "
               "faithfulness; 0 = not measured", min=0),
        Option("judge_steps", INT, 500, "optimiser steps (batch 32) of the class-faithfulness judge: the pretrained "
               "classifier fine-tuned on the real training images only, a seeded fifth of each class held out to "
               "measure the judge's own accuracy (reported beside the figure)", min=1),
    ],
}


def _section_class(name: str, options: list[Option]) -> type:
    fields = [(o.name, Any, dataclasses.field(default_factory=o.default_value)) for o in options]
    cls = dataclasses.make_dataclass(f"{name.capitalize()}Section", fields)
    cls.OPTIONS = {o.name: o for o in options}
    return cls


SECTION_CLASSES = {name: _section_class(name, options) for name, options in SECTIONS.items()}
DEFAULT_OUT = "runs/experiment"


@dataclasses.dataclass
class Experiment:
    out: str = DEFAULT_OUT
    data: Any = dataclasses.field(default_factory=SECTION_CLASSES["data"])
    generation: Any = dataclasses.field(default_factory=SECTION_CLASSES["generation"])
    style: Any = dataclasses.field(default_factory=SECTION_CLASSES["style"])
    training: Any = dataclasses.field(default_factory=SECTION_CLASSES["training"])
    filter: Any = dataclasses.field(default_factory=SECTION_CLASSES["filter"])
    report: Any = dataclasses.field(default_factory=SECTION_CLASSES["report"])

    def to_dict(self) -> dict:
        """Plain JSON/YAML-safe values (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))


def section_payload(section: Any, *, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """A section's values that identify its step's result (its step key): every option but the
    excluded and the `keyed=False` ones; options declared `keyed="if_set"` only when set."""
    out = {}
    for name, opt in type(section).OPTIONS.items():
        value = getattr(section, name)
        if name in exclude or opt.keyed is False or (opt.keyed == "if_set" and value == opt.default):
            continue
        out[name] = value
    return out


def step_options(section: Any, config: type) -> dict[str, Any]:
    """The section's values of the options `config` (a step's configuration) declares."""
    return {name: getattr(section, name) for name in type(section).OPTIONS if name in config.options()}


def describe_sections(width: int = 100) -> str:
    """`bridgedfast run --help`'s list of sections and keys, defaults in brackets."""
    lines = [f"  {'out:':<12}output folder (relative paths are relative to the YAML file) [{DEFAULT_OUT}]"]
    for name, options in SECTIONS.items():
        keys = [o.name if o.default in ("", {}) else f"{o.name} [{_shown(o.default)}]" for o in options]
        lines += textwrap.wrap(", ".join(keys), width, initial_indent=f"  {name + ':':<12}", subsequent_indent=" " * 14,
                               break_on_hyphens=False, break_long_words=False)
    return "\n".join(lines)


def _shown(value: Any) -> str:
    return "null" if value is None else json.dumps(value) if isinstance(value, (list, bool)) else str(value)


# ------------------------------------------------------------------------------------------ parsing
def _build_section(name: str, raw: Any) -> Any:
    cls = SECTION_CLASSES[name]
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ExperimentError(f"{name} must be a mapping of keys to values, got {raw!r}")
    values = {}
    for key, value in raw.items():
        full = f"{name}.{key}"
        if key not in cls.OPTIONS:
            raise ExperimentError(str(unknown_key_error(key, full, cls.OPTIONS)))
        values[key] = check_option(cls.OPTIONS[key], value, full, terse=True)
    return cls(**values)


def _build(raw: Any) -> Experiment:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ExperimentError(f"the experiment file must be a mapping of keys to values, got {raw!r}")
    known = ["out", *SECTIONS]
    for key in raw:
        if key not in known:
            raise ExperimentError(str(unknown_key_error(key, str(key), known)))
    out = raw.get("out", DEFAULT_OUT)
    if not isinstance(out, str):
        raise ExperimentError(f"out must be a string, got {out!r}")
    return Experiment(out=out, **{name: _build_section(name, raw.get(name)) for name in SECTIONS})


# TrainConfig fields that `training.options` may not set: the experiment decides them.
_MANAGED_TRAIN_KEYS = {"model", "real_train", "real_test", "out", "mode", "synthetic", "shots", "seed", "progress",
                       "pretrained", "device", "synthetic_per_class"}


def _check_train_options(options: dict[str, Any]) -> dict[str, Any]:
    """Validates `training.options`' keys and kinds against TrainConfig's options (stage1/stage2
    as StageConfig mappings) and returns them converted; their ranges are checked with the whole
    training configuration, which knows what each value combines with (`_check_training`)."""
    known = sorted(set(TrainConfig.options()) - _MANAGED_TRAIN_KEYS | {"stage1", "stage2"})
    out: dict[str, Any] = {}
    for key, value in options.items():
        full = f"training.options.{key}"
        if key == "synthetic_per_class":
            raise ExperimentError(f"unknown key '{full}' (give generation.per_class a list of volumes: a volume sweep)")
        if key in _MANAGED_TRAIN_KEYS:
            raise ExperimentError(f"unknown key '{full}' (set it as training.{key} or data.{key})")
        if key not in known:
            raise ExperimentError(str(unknown_key_error(key, full, known)).split(" (known keys")[0])
        if key in ("stage1", "stage2"):
            out[key] = _stage_config(value, full)
        else:
            out[key] = check_option(TrainConfig.options()[key], value, full, terse=True, kind_only=True)
    return out


def _stage_config(raw: Any, prefix: str) -> StageConfig:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ExperimentError(f"{prefix} must be a mapping of keys to values, got {raw!r}")
    opts = StageConfig.options()
    values = {}
    for key, value in raw.items():
        if key not in opts:
            raise ExperimentError(str(unknown_key_error(key, f"{prefix}.{key}", opts)))
        values[key] = check_option(opts[key], value, f"{prefix}.{key}", terse=True, kind_only=True)
    return StageConfig(**values)


def _check_values(exp: Experiment, base: Path) -> None:
    """What the steps need of each other and of the files, before any work starts."""
    if not exp.data.real:
        raise ExperimentError("data.real is required: a folder of class sub-folders or an image store")
    for key, value in (("data.real", exp.data.real), ("data.test", exp.data.test)):
        if value is not None and not _resolve(value, base).exists():
            raise ExperimentError(f"{key}: {value!r} does not exist")
    needs_synthetic = any(m != "vanilla" for m in exp.training.modes)
    if needs_synthetic:
        if not exp.generation.model:
            raise ExperimentError("generation.model is required for the modes mixed/bridged/bridged++")
        model = exp.generation.model
        looks_like_hub_id = not model.startswith((".", "/", "~")) and model.count("/") == 1
        if not looks_like_hub_id and not _resolve(model, base).exists():
            raise ExperimentError(f"generation.model: {model!r} is neither an existing folder nor a hub id (org/name)")
        _check_generation_setup(exp, base)
    if not exp.training.modes:
        raise ExperimentError("training.modes must list at least one of " + ", ".join(MODES))
    if not exp.training.seeds:
        raise ExperimentError("training.seeds must list at least one seed")
    if needs_synthetic:
        _check_studies(exp, base)
    exp.training.options = _check_train_options(exp.training.options)
    pretrained = exp.training.pretrained
    if pretrained not in ("timm", "none") and not _resolve(pretrained, base).exists():
        raise ExperimentError(f"training.pretrained: {pretrained!r} is neither 'timm', 'none' nor an existing file")
    _check_training(exp)


def _check_generation_setup(exp: Experiment, base: Path) -> None:
    """The model folder is complete and GPU-only settings do not meet a CPU (both cheap)."""
    from ..generate.config import check_device_settings
    from ..sd import check_model_folder

    model = _resolve(exp.generation.model, base)
    try:
        if model.exists():
            check_model_folder(model)
    except (ValueError, FileNotFoundError) as exc:
        raise ExperimentError(f"generation.model: {exc}") from None
    generator = GeneratorConfig(**step_options(exp.generation, GeneratorConfig))
    try:
        check_device_settings(generator, lambda name: f"generation.{name}")
    except ValueError as exc:
        raise ExperimentError(str(exc)) from None


def _check_out(exp: Experiment) -> None:
    """`out` is a folder that can be made (no file in its way) and not an image store."""
    from ..data.format import HEADER_FILE
    from ..files import check_output_path

    try:
        check_output_path(exp.out, "out", folder=True, marker=HEADER_FILE, marker_what="an image store")
    except ValueError as exc:
        raise ExperimentError(str(exc)) from None


def _check_studies(exp: Experiment, base: Path) -> None:
    """The generation controls and the filter: what they need of each other and of the files."""
    from ..generate.prompts import DEFAULT_TEMPLATE

    g, f = exp.generation, exp.filter
    if g.strength is not None and g.init is None:
        raise ExperimentError("generation.strength applies to img2img only: set generation.init: real")
    if g.prompts is not None:
        if not _resolve(g.prompts, base).is_file():
            raise ExperimentError(f"generation.prompts: {g.prompts!r} does not exist")
        if g.template != DEFAULT_TEMPLATE:
            raise ExperimentError("give generation.template or generation.prompts, not both")
    for name, value in (("generation.per_class", g.per_class), ("generation.guidance_scale", g.guidance_scale),
                        ("style.enabled", exp.style.enabled)):
        if isinstance(value, list) and len(set(value)) != len(value):
            raise ExperimentError(f"{name} lists a value twice: {value}")
    if f.enabled:
        needed = "clip_model" if f.by == "clip" else "classifier"
        path = getattr(f, needed)
        if path is None:
            raise ExperimentError(f"filter.{needed} is required with filter.by: {f.by}")
        if not _resolve(path, base).exists():
            raise ExperimentError(f"filter.{needed}: {path!r} does not exist")


def _check_training(exp: Experiment) -> None:
    """What training would refuse only when it starts, possibly hours in (after style inversion
    and generation): checked here so that a typo fails before any work."""
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
                 real_test: str | Path, synthetic: str | Path | None, out: str | Path, progress: bool = True) -> TrainConfig:
    """The `bridgedfast.transfer.TrainConfig` of one training run of the experiment."""
    t = exp.training
    kwargs: dict[str, Any] = dict(
        model=t.model, real_train=str(real_train), real_test=str(real_test), out=str(out), mode=mode,
        synthetic=None if mode == "vanilla" else str(synthetic), shots=shots, pretrained=t.pretrained,
        device=t.device, seed=seed, progress=progress,
    )
    # The section's other TrainConfig options: null = the trainer's default.
    for name in TrainConfig.options():
        if name in SECTION_CLASSES["training"].OPTIONS and name not in kwargs and name != "synthetic_fraction":
            if getattr(t, name) is not None:
                kwargs[name] = getattr(t, name)
    if mode == "mixed" and t.synthetic_fraction is not None:
        kwargs["synthetic_fraction"] = t.synthetic_fraction
    kwargs.update(copy.deepcopy(t.options))
    config = TrainConfig(**kwargs)
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
    if exp.generation.prompts is not None:
        exp.generation.prompts = str(_resolve(exp.generation.prompts, base))
    for key in ("clip_model", "classifier"):
        if getattr(exp.filter, key) is not None:
            setattr(exp.filter, key, str(_resolve(getattr(exp.filter, key), base)))
    exp.out = str(_resolve(exp.out, base))


def parse_experiment(raw: Any, *, base: str | Path = ".") -> Experiment:
    """Validates a mapping (the parsed YAML) into an Experiment, paths resolved against `base`."""
    try:
        exp = _build(raw)
        base = Path(base)
        _check_values(exp, base)
    except OptionError as exc:
        raise ExperimentError(str(exc)) from None
    _resolve_paths(exp, base)
    _check_out(exp)
    return exp


def load_experiment(path: str | Path) -> Experiment:
    """Reads and validates an experiment YAML file."""
    from ..yamlfile import load_yaml

    path = Path(path)
    raw = load_yaml(path, "experiment file")  # one line for invalid YAML or a duplicate key
    return parse_experiment(raw, base=path.resolve().parent)
