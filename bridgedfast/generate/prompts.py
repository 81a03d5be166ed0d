"""Per-class prompts from a template, and the dataset-style token from a textual-inversion file."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_TEMPLATE = "a photo of a {}"


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


def check_template_text(template: Any, name: str = "template") -> None:
    """ValueError unless the template holds exactly one '{}' (where the class name goes)."""
    if not isinstance(template, str) or template.count("{}") != 1:
        raise ValueError(f"{name} {template!r} must contain exactly one '{{}}' where the class name goes")


def check_template(template: str, style: Style | None) -> None:
    """The template's text, and a {style} placeholder only with a style file."""
    check_template_text(template)
    if "{style}" in template and style is None:
        raise ValueError(f"template {template!r} has a {{style}} placeholder but no style file was given")


def make_prompt(template: str, name: str, style: Style | None) -> str:
    """`template` with `{}` -> the class name (underscores as spaces) and `{style}` -> the style
    token; with a style and no `{style}` placeholder, " in the style of <token>" is appended."""
    prompt = template.replace("{}", name.replace("_", " "))
    if style is not None:
        if "{style}" in prompt:
            prompt = prompt.replace("{style}", style.token)
        else:
            prompt = f"{prompt} in the style of {style.token}"
    return prompt


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
