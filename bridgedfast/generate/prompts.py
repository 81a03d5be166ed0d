"""Each image's prompt: from one template or a list of them (image i uses template i mod T), or
from a prompts file (class name -> list of prompts; image i of class c uses prompt i mod n of
its class); and the dataset-style token from a textual-inversion file."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..options import check_fields

DEFAULT_TEMPLATE = "a photo of a {}"
STYLE_PLACEHOLDER = "{style}"


@dataclass(frozen=True)
class Style:
    path: Path
    token: str
    sha256: str


def class_names(classes: Any) -> list[str]:
    """Class names from a list of names or an ImageStore (its `.classes`)."""
    if hasattr(classes, "classes") and not isinstance(classes, (str, list, tuple)):
        classes = list(classes.classes)
    if isinstance(classes, str):
        raise ValueError(f"classes must be a list of names or an ImageStore, got the string {classes!r}")
    names = [str(c) for c in classes]
    if not names:
        raise ValueError("the class list is empty: give at least one class name")
    blank = [i for i, n in enumerate(names) if not n.strip()]
    if blank:
        raise ValueError(f"class name at position {blank[0]} is empty")
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ValueError(f"class name {n!r} appears twice")
        seen.add(n)
    return names


def templates_of(template: str | Sequence[str]) -> list[str]:
    """The template list (one template is a list of one)."""
    return [template] if isinstance(template, str) else list(template)


def check_template_text(template: Any, name: str = "template") -> None:
    """ValueError unless each template holds exactly one '{}' (where the class name goes)."""
    if isinstance(template, (list, tuple)):
        if not template:
            raise ValueError(f"{name} is an empty list: give at least one template")
        for k, t in enumerate(template):
            check_template_text(t, f"{name}[{k}]")
        return
    if not isinstance(template, str) or template.count("{}") != 1:
        raise ValueError(f"{name} {template!r} must contain exactly one '{{}}' where the class name goes")
    check_fields(template, ("{}", STYLE_PLACEHOLDER), name)


def check_template(template: str | Sequence[str], style: Style | None) -> None:
    """The templates' text, and a {style} placeholder only with a style file."""
    check_template_text(template)
    for t in templates_of(template):
        if STYLE_PLACEHOLDER in t and style is None:
            raise ValueError(f"template {t!r} has a {{style}} placeholder but no style file was given")


def with_style(prompt: str, style: Style | None) -> str:
    """`{style}` -> the style token; with a style and no `{style}` placeholder, " in the style of
    <token>" is appended."""
    if style is None:
        return prompt
    if STYLE_PLACEHOLDER in prompt:
        return prompt.replace(STYLE_PLACEHOLDER, style.token)
    return f"{prompt} in the style of {style.token}"


def make_prompt(template: str, name: str, style: Style | None) -> str:
    """`template` with `{}` -> the class name (underscores as spaces) and the style token placed
    by `with_style`."""
    return with_style(template.replace("{}", name.replace("_", " ")), style)


@dataclass(frozen=True)
class PromptPlan:
    """Every class's prompts: image i of class c is prompted with `prompts[c][i % len(prompts[c])]`."""

    prompts: list[list[str]]
    digest: str | None = None  # sha256 of a prompts file's lists (None for templates)

    def prompt(self, class_index: int, image_index: int) -> str:
        own = self.prompts[class_index]
        return own[image_index % len(own)]

    def variant(self, class_index: int, image_index: int) -> int:
        return image_index % len(self.prompts[class_index])


def template_plan(template: str | Sequence[str], names: list[str], style: Style | None) -> PromptPlan:
    return PromptPlan([[make_prompt(t, name, style) for t in templates_of(template)] for name in names])


def read_prompts(path: str | Path, names: list[str]) -> dict[str, list[str]]:
    """The prompts file (YAML or JSON): class name -> non-empty list of prompts, for exactly the
    classes `names` (an unknown or a missing class is a ValueError naming them)."""
    from ..yamlfile import load_yaml

    p = Path(path).expanduser()
    raw = load_yaml(p, "prompts file", syntax="YAML or JSON")  # JSON is YAML; a duplicate class is refused
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"prompts file {str(p)!r} must map class names to lists of prompts")
    raw = {str(k): v for k, v in raw.items()}
    unknown = [k for k in raw if k not in names]
    if unknown:
        raise ValueError(f"prompts file {str(p)!r} has prompts for unknown classes {_few(unknown)} "
                         "(classes are matched by exact name)")
    missing = [n for n in names if n not in raw]
    if missing:
        raise ValueError(f"prompts file {str(p)!r} has no prompts for classes {_few(missing)}")
    for name in names:
        value = raw[name]
        if isinstance(value, str):
            value = raw[name] = [value]
        if (not isinstance(value, list) or not value
                or not all(isinstance(v, str) and v.strip() for v in value)):
            raise ValueError(f"prompts file {str(p)!r}: class {name!r} must have a non-empty list of non-empty "
                             f"prompts, got {value!r}")
    return {name: list(raw[name]) for name in names}


def _few(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")


def file_plan(path: str | Path, names: list[str], style: Style | None) -> PromptPlan:
    lists = read_prompts(path, names)
    for name, prompts in lists.items():
        for prompt in prompts:
            if STYLE_PLACEHOLDER in prompt and style is None:
                raise ValueError(f"prompt {prompt!r} of class {name!r} has a {{style}} placeholder but no style file "
                                 "was given")
    digest = hashlib.sha256(json.dumps([lists[n] for n in names]).encode()).hexdigest()
    return PromptPlan([[with_style(p, style) for p in lists[n]] for n in names], digest)


def read_style(path: str | Path, token: str | None = None) -> Style:
    """The style to prompt with: a diffusers textual-inversion safetensors file (one token, as
    `invert_style` writes it; see `bridgedfast.style`); the token is the file's own unless
    `token` overrides it."""
    from ..style import read_style as read_style_file

    p = Path(path).expanduser()
    if p.suffix != ".safetensors":
        raise ValueError(f"style file {str(p)!r} must be a .safetensors textual-inversion file (no pickle)")
    file_token, _ = read_style_file(p)
    return Style(p.resolve(), token or file_token, hashlib.sha256(p.read_bytes()).hexdigest())


def load_style(pipe: Any, style: Style) -> None:
    """Adds the style token to the pipeline's tokenizer and text encoder (stock
    `load_textual_inversion`); loading the same embedding again is a no-op, another one for an
    already known token is refused."""
    from ..style import load_style as load_style_file

    try:
        load_style_file(pipe, style.path, style.token)
    except ValueError as exc:
        raise ValueError(f"style file {str(style.path)!r} does not fit this model: {exc}") from exc
