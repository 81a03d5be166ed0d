"""Each step's options, declared once: name, type, default, range or choices, help text.

A step's configuration is a dataclass whose fields are declared with `option(...)`:

    @dataclass
    class GenerateConfig(Config):
        steps: int = option(25, INT, "sampling steps", min=1)

Everything else derives from the declarations:
- the Python API validates with `config.validate()` (ValueError naming the option);
- the CLI gets its flags from `Config.add_arguments(parser)` (`--steps`, with the type,
  choices, default and help) and its values back with `Config.from_args(args)`;
- `bridgedfast run`'s YAML sections take their keys, types, ranges and did-you-mean suggestions
  from the same options (`bridgedfast.experiment.config`), and `run --help` lists them;
- `keyed` says whether an option identifies a result (step keys, recorded configurations):
  `keyed=False` options say how to run, not what to compute; `keyed="if_set"` ones (every option
  added after the stored formats were frozen) count only when they differ from their default
  (`new_keyed_values`), so older outputs keep their keys.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Literal, Mapping, Sequence

__all__ = [
    "REQUIRED", "Kind", "Option", "Config", "option", "spec", "shared", "OptionError", "Naming",
    "INT", "POSITIVE_INT", "FLOAT", "STR", "BOOL", "PATH", "INT_OR_AUTO", "SIZE", "FLOAT_PAIR", "STR_LIST", "MAPPING",
    "list_of", "one_or_more", "SEED_RANGE", "INT64_MIN", "INT64_MAX",
    "HelpFormatter", "RawHelpFormatter", "check_option", "check_fields", "unknown_key_error", "python_name", "flag_name",
    "dashed_name", "takes_options",
]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()  # default of an option that has none: the caller must give it

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # every integer option fits in int64 (torch, numpy, files)
#: The range of a seed option: `option(0, INT, "...", **SEED_RANGE)` (a larger one would wrap).
SEED_RANGE: dict[str, int] = {"min": 0, "max": INT64_MAX}


class OptionError(ValueError):
    """A value does not fit its option; the message names the option as the caller spells it."""


# ------------------------------------------------------------------------------------------ kinds
@dataclass(frozen=True)
class Kind:
    """A value type: how a configuration value is checked (`coerce`: the value converted, or
    TypeError when it is not of this kind), parsed from a command line (`parse`: text -> value,
    argparse.ArgumentTypeError when malformed) and described in messages (`description`, e.g. "an integer")."""

    name: str
    description: str
    coerce: Callable[[Any], Any]
    parse: Callable[[str], Any]
    metavar: str = "X"
    item: "Kind | None" = None  # one_or_more(item): each list item is checked as an `item` value


def _coerce_int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError
    return int(v)


def _coerce_float(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError
    return float(v)


def _coerce_str(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError
    return v


def _coerce_bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise TypeError
    return v


def _coerce_path(v: Any) -> str | Path:
    if not isinstance(v, (str, Path)):
        raise TypeError
    return v


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _parse_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _coerce_int_or_auto(v: Any) -> int | str:
    return v if v == "auto" else _coerce_int(v)


def _parse_int_or_auto(text: str) -> int | str:
    if text == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer or 'auto', got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer or 'auto', got {text!r}")
    return value


def _coerce_size(v: Any) -> int | tuple[int, int]:
    if isinstance(v, (list, tuple)):
        if len(v) != 2:
            raise TypeError
        return (_coerce_int(v[0]), _coerce_int(v[1]))
    return _coerce_int(v)


def _parse_size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be N or HxW, got {text!r}") from None
    if len(values) not in (1, 2) or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"must be N or HxW with positive sizes, got {text!r}")
    return (values[0], values[-1])


def _coerce_float_pair(v: Any) -> tuple[float, float]:
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        raise TypeError
    return (_coerce_float(v[0]), _coerce_float(v[1]))


def _parse_float_pair(text: str) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected two comma-separated numbers MIN,MAX, got {text!r}") from exc
    return a, b


def _coerce_str_list(v: Any) -> list[str]:
    if not isinstance(v, (list, tuple)) or not all(isinstance(s, str) for s in v):
        raise TypeError
    return list(v)


def _coerce_mapping(v: Any) -> dict:
    if not isinstance(v, Mapping):
        raise TypeError
    return dict(v)


def _no_parse(text: str) -> Any:
    raise argparse.ArgumentTypeError("not a command-line option")


def _coerce_positive_int(v: Any) -> int:
    v = _coerce_int(v)
    if v < 1:
        raise TypeError
    return v


def _parse_positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


INT = Kind("int", "an integer", _coerce_int, _parse_int, "N")
# An integer >= 1 that a command line checks while parsing (INT with min=1 is checked with the
# other values, after parsing).
POSITIVE_INT = Kind("positive int", "a positive integer", _coerce_positive_int, _parse_positive_int, "N")
FLOAT = Kind("float", "a number", _coerce_float, _parse_float, "X")
STR = Kind("str", "a string", _coerce_str, str, "TEXT")
BOOL = Kind("bool", "true/false", _coerce_bool, _no_parse)
PATH = Kind("path", "a path", _coerce_path, str, "PATH")
INT_OR_AUTO = Kind("int|auto", "an integer or 'auto'", _coerce_int_or_auto, _parse_int_or_auto, "N|auto")
SIZE = Kind("size", "an integer or [height, width]", _coerce_size, _parse_size, "N|HxW")
FLOAT_PAIR = Kind("pair", "a pair of numbers [min, max]", _coerce_float_pair, _parse_float_pair, "MIN,MAX")
STR_LIST = Kind("list[str]", "a list of strings", _coerce_str_list, str, "TEXT")
MAPPING = Kind("mapping", "a mapping", _coerce_mapping, _no_parse)


def list_of(item: Kind, *, nullable_items: bool = False, choices: Sequence[Any] | None = None) -> Kind:
    """A list of `item` values (a single value means a one-item list), each maybe None or one of `choices`."""
    what = " or ".join(repr(c) for c in choices) if choices else item.description + (" or null" if nullable_items else "")

    def coerce(v: Any) -> list:
        items = v if isinstance(v, list) else [v]
        out = []
        for i, x in enumerate(items):
            if x is None and nullable_items:
                out.append(None)
                continue
            if choices is not None:
                if x not in choices:
                    raise TypeError(i, x)
                out.append(x)
                continue
            try:
                out.append(item.coerce(x))
            except TypeError:
                raise TypeError(i, x) from None
        return out

    return Kind(f"list[{item.name}]", f"a list of ({what})", coerce, item.parse, item.metavar)


def one_or_more(item: Kind) -> Kind:
    """One `item` value or a non-empty list of them; a one-item list means that item (so a
    configuration that gives a single value in either form keys, and records, the same)."""

    def coerce(v: Any) -> Any:
        if not isinstance(v, (list, tuple)):
            return item.coerce(v)
        if not v:
            raise TypeError
        out = []
        for i, x in enumerate(v):
            try:
                out.append(item.coerce(x))
            except TypeError:
                raise TypeError(i, x) from None
        return out[0] if len(out) == 1 else out

    return Kind(f"{item.name}|list[{item.name}]", f"{item.description} or a non-empty list of them", coerce,
                item.parse, item.metavar, item=item)


# ------------------------------------------------------------------------------------------ options
@dataclass(frozen=True)
class Option:
    """One option of a step. `min`/`max` bound numbers (`min_open`/`max_open`: strictly);
    `check(value, name)` raises ValueError for anything else a value must satisfy; `nullable`:
    None is a valid value (it is whenever the default is None). `flag` overrides the CLI flag
    (`--quiet` sets a bool option to the opposite of its default; `--[no-]name` gives both
    forms); `repeat`: the flag may be given several times (one occurrence = one value, several =
    their list). `surfaces`: where it is exposed besides the Python API ('cli', 'yaml')."""

    name: str
    kind: Kind
    default: Any
    help: str
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None
    min_open: bool = False
    max_open: bool = False
    nullable: bool = False
    check: Callable[[Any, str], None] | None = None
    flag: str | None = None
    metavar: str | None = None
    surfaces: tuple[str, ...] = ("cli", "yaml")
    keyed: bool | Literal["if_set"] = True
    repeat: bool = False

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def allows_none(self) -> bool:
        return self.nullable or self.default is None

    def replace(self, **changes: Any) -> "Option":
        return dataclasses.replace(self, **changes)

    def default_value(self) -> Any:
        """A fresh copy of the default (lists and dicts are not shared between configurations)."""
        return type(self.default)(self.default) if isinstance(self.default, (list, dict)) else self.default


def option(default: Any, kind: Kind, help: str, **spec: Any) -> Any:
    """A dataclass field declared as an option (the name comes from the field)."""
    meta = {"option": dict(default=default, kind=kind, help=help, **spec)}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def spec(default: Any, kind: Kind, help: str, **rest: Any) -> dict[str, Any]:
    """An option declaration shared by several steps (e.g. `device`); use it with `shared`."""
    return dict(default=default, kind=kind, help=help, **rest)


def shared(base: Mapping[str, Any], **changes: Any) -> Any:
    """A dataclass field declared as the shared option `base`, with `changes` (e.g. its help text)."""
    return option(**{**base, **changes})


Naming = Callable[[str], str]  # option name -> how the caller spells it in messages


def _number_text(value: float, integer: bool) -> str:
    return str(int(value)) if integer else f"{value:g}"


def _range_text(opt: Option, terse: bool) -> str:
    lo, hi = opt.min, opt.max
    kind = opt.kind.item or opt.kind
    integer = kind is INT or kind is INT_OR_AUTO
    noun = "integer" if integer else "number"
    positive = (lo == 1 and integer and not opt.min_open) or (lo == 0 and opt.min_open)
    if hi is None and positive:
        return "positive" if terse else f"a positive {noun}"
    lo_text = None if lo is None else _number_text(lo, integer)
    hi_text = None if hi is None else _number_text(hi, integer)
    if hi is None:
        return f"{'>' if opt.min_open else '>='} {lo_text}"
    if lo is None:
        return f"{'<' if opt.max_open else '<='} {hi_text}"
    return f"in {'(' if opt.min_open else '['}{lo_text}, {hi_text}{')' if opt.max_open else ']'}"


def _bad_number(value: Any) -> str | None:
    """What is wrong with a converted value's numbers, if anything: a non-finite float (inf, nan:
    no option means them) or an integer beyond int64. Looks into lists and tuples."""
    if isinstance(value, (list, tuple)):
        return next((why for why in map(_bad_number, value) if why), None)
    if isinstance(value, float) and not math.isfinite(value):
        return "a finite number"
    if isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
        return f"an integer in [{INT64_MIN}, {INT64_MAX}]"
    return None


def check_option(opt: Option, value: Any, name: str, *, terse: bool = False, kind_only: bool = False) -> Any:
    """`value` converted to the option's kind and checked against it; OptionError (naming the
    option as `name`) otherwise. `terse`: range messages as the experiment file states them
    ("must be positive"), the kind being reported on its own ("must be an integer").
    `kind_only`: convert and check the kind only (the rest is checked where the value is used)."""
    if value is REQUIRED:
        raise OptionError(f"{name} is required")
    if value is None and opt.allows_none:
        return None
    if kind_only and opt.choices is not None:
        return value
    if opt.choices is not None:
        if value not in opt.choices:
            listed = ", ".join(str(c) for c in opt.choices)
            raise OptionError(f"unknown {name} {value!r} ({name} must be one of {listed})")
        return value
    try:
        value = opt.kind.coerce(value)
    except TypeError as exc:
        if len(exc.args) == 2:  # a list item
            i, item = exc.args
            what = (opt.kind.item.description if opt.kind.item is not None
                    else opt.kind.description.removeprefix("a list of (").removesuffix(")"))
            raise OptionError(f"{name}[{i}] must be {what}, got {item!r}") from None
        if opt.kind in (INT, FLOAT) and opt.min is not None and opt.max is None and not terse:  # "a positive integer"
            raise OptionError(f"{name} must be {_range_text(opt, False)}, got {value!r}") from None
        raise OptionError(f"{name} must be {opt.kind.description}, got {value!r}") from None
    if kind_only:
        return value
    if opt.kind.item is not None and isinstance(value, list):
        return [_check_value(opt, x, f"{name}[{i}]", terse) for i, x in enumerate(value)]
    return _check_value(opt, value, name, terse)


def _check_value(opt: Option, value: Any, name: str, terse: bool) -> Any:
    """The range and `check` of one (converted) value."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and (opt.min is not None or opt.max is not None):
        low = opt.min is not None and (value <= opt.min if opt.min_open else value < opt.min)
        high = opt.max is not None and (value >= opt.max if opt.max_open else value > opt.max)
        if low or high or value != value:  # NaN fits no range
            raise OptionError(f"{name} must be {_range_text(opt, terse)}, got {value!r}")
    for item, item_name in ([(x, f"{name}[{i}]") for i, x in enumerate(value)] if isinstance(value, list)
                            else [(value, name)]):
        bad = _bad_number(item)
        if bad is not None:
            raise OptionError(f"{item_name} must be {bad}, got {item!r}")
    if opt.check is not None:
        try:
            opt.check(value, name)
        except OptionError:
            raise
        except ValueError as exc:
            raise OptionError(str(exc)) from None
    return value


def check_fields(text: str, allowed: Sequence[str], name: str) -> None:
    """ValueError unless every `{...}` field in the template `text` is one of `allowed` (e.g.
    "{}", "{style}"): an unknown field would stay in the prompt literally."""
    import re

    unknown = [f for f in re.findall(r"\{[^{}]*\}", text) if f not in allowed]
    if unknown:
        raise ValueError(f"{name} {text!r} has an unknown field {unknown[0]} (a template may hold "
                         f"{' and '.join(allowed)} only)")


def unknown_key_error(key: str, full: str, known: Iterable[str]) -> OptionError:
    """'unknown key 'a.b' (did you mean 'c'?)' or the list of known keys."""
    known = list(known)
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(known)})"
    return OptionError(f"unknown key '{full}'{hint}")


# ------------------------------------------------------------------------------------------ configs
def python_name(name: str) -> str:
    return name


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def dashed_name(name: str) -> str:
    return name.replace("_", "-")


class Config:
    """Base of a step's configuration dataclass (fields declared with `option`)."""

    _options: ClassVar[dict[str, Option]]
    _surfaces: ClassVar[tuple[str, ...]]

    def __init_subclass__(cls, surfaces: tuple[str, ...] = ("cli", "yaml"), **kwargs: Any) -> None:
        """`surfaces`: where this configuration's options are exposed unless an option says otherwise."""
        super().__init_subclass__(**kwargs)
        cls._options = {}  # filled by `options()` once the dataclass decorator has run
        cls._surfaces = tuple(surfaces)

    @classmethod
    def options(cls) -> dict[str, Option]:
        if not cls._options:
            for f in dataclasses.fields(cls):
                spec = f.metadata.get("option")
                if spec is not None:
                    cls._options[f.name] = Option(name=f.name, **{"surfaces": cls._surfaces, **spec})
        return cls._options

    @classmethod
    def exposed(cls, surface: str, *, exclude: Iterable[str] = ()) -> list[Option]:
        """The options shown on `surface` ('cli' or 'yaml'), in declaration order."""
        skip = set(exclude)
        return [o for o in cls.options().values() if surface in o.surfaces and o.name not in skip]

    def validate(self, naming: Naming = python_name, *, only: Iterable[str] | None = None) -> "Config":
        """Checks (and normalises, e.g. ints to floats) every option value in place; raises
        OptionError naming the first bad one as `naming(name)`."""
        names = list(self.options()) if only is None else list(only)
        for name in names:
            opt = self.options()[name]
            setattr(self, name, check_option(opt, getattr(self, name), naming(name)))
        return self

    def values(self, *, only: Iterable[str] | None = None, exclude: Iterable[str] = ()) -> dict[str, Any]:
        """{option name: value}, in declaration order."""
        names = list(self.options()) if only is None else list(only)
        skip = set(exclude)
        return {n: getattr(self, n) for n in names if n not in skip}

    @classmethod
    def new_keyed_values(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        """The `keyed="if_set"` options among `values` that differ from their default: what a
        frozen payload adds for options declared after it."""
        opts = cls.options()
        return {k: v for k, v in values.items() if k in opts and opts[k].keyed == "if_set" and v != opts[k].default}

    # ---------------------------------------------------------------- command line
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser | Any, *, only: Iterable[str] | None = None,
                      exclude: Iterable[str] = (), prefix: str = "", defaults: Mapping[str, Any] | None = None) -> None:
        """One flag per CLI-exposed option (`only` those, if given): `--name` (or its declared
        `flag`), `prefix` put before the name (`--stage1-lr`), `defaults` overriding declared defaults."""
        defaults = defaults or {}
        wanted = None if only is None else set(only)
        for opt in cls.exposed("cli", exclude=exclude):
            if wanted is None or opt.name in wanted:
                add_argument(parser, opt, prefix=prefix, default=defaults.get(opt.name, opt.default_value()))

    @classmethod
    def from_args(cls, args: argparse.Namespace, *, prefix: str = "", **extra: Any):
        """A configuration from parsed arguments (options not on the command line keep their
        defaults), plus `extra` values."""
        values = {}
        for opt in cls.exposed("cli"):
            dest = (prefix + opt.name).replace("-", "_")
            if hasattr(args, dest):
                value = getattr(args, dest)
                if opt.repeat:  # None: the flag was not given; one occurrence: that value
                    if value is None:
                        continue
                    value = value[0] if len(value) == 1 else list(value)
                values[opt.name] = value
        values.update(extra)
        return cls(**values)


class HelpFormatter(argparse.HelpFormatter):
    """Adds '(default: X)' where a help text does not state its default itself and the default
    is a value (not None, False or required)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default is None or default is False or default is argparse.SUPPRESS or action.required
                or not action.option_strings or action.nargs == 0):  # flags say what they do
            return text
        if isinstance(default, (list, tuple)):
            shown = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default)
        else:
            shown = f"{default:g}" if isinstance(default, float) else str(default)
        return f"{text} (default: {shown})"


class RawHelpFormatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """HelpFormatter that keeps a description's own line breaks."""


def add_argument(parser: Any, opt: Option, *, prefix: str = "", default: Any = None) -> None:
    """The argparse argument of one option (see `Config.add_arguments`)."""
    flag = opt.flag or ("--no-" + dashed_name(opt.name) if opt.kind is BOOL and opt.default is True else flag_name(opt.name))
    dest = (prefix + opt.name).replace("-", "_")
    if prefix:
        flag = "--" + prefix.replace("_", "-") + flag.removeprefix("--")
    kw: dict[str, Any] = {"dest": dest, "help": opt.help}
    if opt.kind is BOOL:
        if flag.startswith("--[no-]"):
            parser.add_argument("--" + flag.removeprefix("--[no-]"), action=argparse.BooleanOptionalAction,
                                default=default, **kw)
            return
        if opt.default is True:  # the flag turns it off
            kw["help"] = f"no {opt.help}"
        parser.add_argument(flag, action="store_false" if opt.default is True else "store_true", default=default, **kw)
        return
    if default is REQUIRED:
        kw["required"] = True
        default = None
    if opt.choices is not None:
        kw["choices"] = list(opt.choices)
    else:
        kw["type"] = opt.kind.parse
        kw["metavar"] = opt.metavar or opt.kind.metavar
    if opt.kind.name.startswith("list["):
        kw["nargs"] = "+"
    if opt.repeat:  # argparse would append to a default list: the default is filled in by from_args
        kw["action"] = "append"
        if default is not None and "default" not in opt.help:
            kw["help"] = f"{opt.help} (default: {default})"
        default = None
    parser.add_argument(flag, default=default, **kw)


def takes_options(*configs: type[Config], skip: Iterable[str] = ()) -> Callable[[Callable], Callable]:
    """Gives a facade `def f(positional..., **options)` the signature of its configurations: one
    keyword-only parameter per option (with its default), so `help(f)`, `inspect.signature(f)`
    and editors show every option, while the options are declared only in the configs."""
    import inspect

    skipped = set(skip)

    def decorate(fn: Callable) -> Callable:
        sig = inspect.signature(fn)
        params = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        taken = {p.name for p in params}
        extra = []
        for cfg in configs:
            types = {f.name: f.type for f in dataclasses.fields(cfg)}
            for name, opt in cfg.options().items():
                if name in taken or name in skipped:
                    continue
                taken.add(name)
                extra.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=opt.default,
                                               annotation=types[name]))
        ordered = sorted(params, key=lambda p: p.kind)  # stable: keeps the order within each kind
        keyword = [p for p in ordered if p.kind is inspect.Parameter.KEYWORD_ONLY]
        others = [p for p in ordered if p.kind is not inspect.Parameter.KEYWORD_ONLY]
        fn.__signature__ = sig.replace(parameters=others + extra + keyword)
        return fn

    return decorate
