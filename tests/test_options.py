"""The option-declaration layer: one declaration gives the Python API its signature and
validation, the CLI its flag, the experiment file its key, and the step keys their entries.
Checked on a small configuration declared here, and on the public facades against the
signatures DESIGN.md fixes."""
from __future__ import annotations

import argparse
import inspect
from dataclasses import dataclass
from typing import Any

import pytest

from bridgedfast.options import (
    BOOL, FLOAT, INT, INT_OR_AUTO, REQUIRED, STR, Config, OptionError, check_option, flag_name, option, takes_options,
)


@dataclass
class Toy(Config):
    count: int = option(REQUIRED, INT, "how many", min=1)
    scale: float = option(7.0, FLOAT, "a scale", min=0.0, max=10.0)
    mode: str = option("fast", STR, "how", choices=("fast", "slow"))
    batch: int | str = option("auto", INT_OR_AUTO, "batch or auto", min=1)
    verbose: bool = option(True, BOOL, "chatter", flag="--quiet")
    later: float | None = option(None, FLOAT, "added after the stored formats froze", keyed="if_set")
    where: str = option("cpu", STR, "how to run", keyed=False)
    hidden: int = option(3, INT, "python only", surfaces=())


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="toy", exit_on_error=False)
    Toy.add_arguments(p)
    return p


def test_cli_flags_types_defaults_and_choices_derive_from_the_declaration():
    p = parser()
    flags = {a.dest: a for a in p._actions if a.option_strings}
    assert set(flags) == {"help", "count", "scale", "mode", "batch", "verbose", "later", "where"}  # not `hidden`
    assert flags["count"].required and flags["mode"].choices == ["fast", "slow"] and flags["scale"].default == 7.0
    args = p.parse_args(["--count", "3", "--scale", "2.5", "--mode", "slow", "--quiet", "--later", "0.5"])
    cfg = Toy.from_args(args).validate(flag_name)
    assert (cfg.count, cfg.scale, cfg.mode, cfg.batch, cfg.verbose, cfg.later, cfg.hidden) == (3, 2.5, "slow", "auto",
                                                                                                  False, 0.5, 3)
    with pytest.raises(argparse.ArgumentError, match="positive integer or .auto."):  # malformed: argparse rejects it
        parser().parse_args(["--count", "3", "--batch", "many"])


@pytest.mark.parametrize("values, naming, message", [
    ({"count": 0}, str, "count must be a positive integer, got 0"),
    ({"count": 0}, flag_name, "--count must be a positive integer, got 0"),
    ({"count": 2, "scale": 11.0}, str, "scale must be in [0, 10], got 11.0"),
    ({"count": 2, "scale": float("nan")}, str, "scale must be in [0, 10], got nan"),
    ({"count": 2, "mode": "medium"}, str, "unknown mode 'medium' (mode must be one of fast, slow)"),
    ({"count": 2, "batch": "big"}, str, "batch must be an integer or 'auto', got 'big'"),
    ({"count": 2, "batch": 0}, str, "batch must be a positive integer, got 0"),
    ({"count": 1.5}, str, "count must be a positive integer, got 1.5"),
    ({}, str, "count is required"),
])
def test_validation_names_the_option_as_the_caller_spells_it(values, naming, message):
    with pytest.raises(OptionError) as exc:
        Toy(**values).validate(naming)
    assert str(exc.value) == message


def test_experiment_files_get_terse_range_messages_and_list_items_are_named():
    from bridgedfast.options import list_of

    opt = Toy.options()["count"]
    with pytest.raises(OptionError, match=r"^section\.count must be positive, got 0$"):
        check_option(opt, 0, "section.count", terse=True)
    with pytest.raises(OptionError, match=r"^section\.count must be an integer, got 'x'$"):
        check_option(opt, "x", "section.count", terse=True)
    seeds = opt.replace(name="seeds", kind=list_of(INT), default=[0], min=None)
    assert check_option(seeds, 4, "s") == [4]  # one value is a one-item list
    with pytest.raises(OptionError, match=r"^s\[1\] must be an integer, got 'b'$"):
        check_option(seeds, [1, "b"], "s")


def test_options_added_later_leave_stored_keys_alone():
    """A keyed="if_set" option counts only once set: a configuration at its default has the key
    it had before the option existed."""
    cfg = Toy(count=2)
    assert Toy.new_keyed_values(cfg.values()) == {}
    cfg.later = 0.25
    assert Toy.new_keyed_values(cfg.values()) == {"later": 0.25}


def test_a_facade_takes_every_option_as_a_keyword():
    @takes_options(Toy)
    def run(data: str, **options: Any) -> Toy:
        return Toy(**options).validate()

    params = inspect.signature(run).parameters
    assert list(params) == ["data", *Toy.options()]
    assert all(params[n].kind is inspect.Parameter.KEYWORD_ONLY and params[n].default == o.default
               for n, o in Toy.options().items())
    assert run("x", count=2, scale=1).scale == 1.0
    with pytest.raises(TypeError):
        run("x", count=2, colour="red")


def test_public_facades_keep_the_documented_signatures():
    """DESIGN.md's contracts: the names and defaults of the public entry points."""
    from bridgedfast.data import pack
    from bridgedfast.generate import Generator
    from bridgedfast.invert import invert_style

    def defaults(fn):
        return {n: p.default for n, p in inspect.signature(fn).parameters.items()
                if p.default is not inspect.Parameter.empty}

    gen = defaults(Generator.generate)
    assert list(inspect.signature(Generator.generate).parameters)[:4] == ["self", "classes", "per_class", "out"]
    assert {k: gen[k] for k in ("template", "style", "height", "width", "seed", "batch_size", "store_size", "encoding")} == {
        "template": "a photo of a {}", "style": None, "height": 512, "width": 512, "seed": 0, "batch_size": "auto",
        "store_size": None, "encoding": "raw"}
    assert {"guidance_scale", "steps"} <= set(gen)
    init = defaults(Generator.__init__)
    assert {k: init[k] for k in ("backend", "attention", "dtype", "scheduler", "device")} == {
        "backend": "eager", "attention": "auto", "dtype": "auto", "scheduler": "dpmpp", "device": "auto"}
    inv = defaults(invert_style)
    assert list(inspect.signature(invert_style).parameters)[:3] == ["model", "data", "out"]
    assert inv["token"] == "<dataset-style>" and inv["seed"] == 0 and {"steps", "lr", "batch_size", "resolution"} <= set(inv)
    assert defaults(pack) == {**defaults(pack), "max_side": None, "encoding": "raw", "quality": 95, "workers": None}
