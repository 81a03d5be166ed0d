"""Per-class prompts from a template, and the dataset-style token from a textual-inversion file."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_TEMPLATE = "a photo of a {}"
DEFAULT_STYLE_TOKEN = "<dataset-style>"


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


def check_template(template: str, style: Style | None) -> None:
    if not isinstance(template, str) or template.count("{}") != 1:
        raise ValueError(f"template {template!r} must contain exactly one '{{}}' where the class name goes")
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
    """Reads a textual-inversion file (diffusers format `{token: [n, dim]}` or A1111 format) in
    safetensors; the token is the file's own unless `token` overrides it."""
    from safetensors import safe_open

    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"style file {str(path)!r} does not exist")
    if p.suffix != ".safetensors":
        raise ValueError(f"style file {str(p)!r} must be a .safetensors textual-inversion file (no pickle)")
    try:
        with safe_open(str(p), framework="pt") as f:
            keys = list(f.keys())
    except Exception as exc:
        raise ValueError(f"style file {str(p)!r} is not a readable safetensors file: {exc}") from exc
    if token is None:
        if len(keys) == 1 and keys[0] not in ("emb_params", "string_to_param"):
            token = keys[0]
        elif keys:
            token = DEFAULT_STYLE_TOKEN
        else:
            raise ValueError(f"style file {str(p)!r} holds no embedding")
    return Style(p.resolve(), token, hashlib.sha256(p.read_bytes()).hexdigest())


def load_style(pipe: Any, style: Style, loaded: dict[str, str]) -> None:
    """Adds the style token to the pipeline's tokenizer and text encoder (diffusers
    `load_textual_inversion`), once per token; `loaded` maps token -> file hash already loaded."""
    if style.token in loaded:
        if loaded[style.token] != style.sha256:
            raise ValueError(
                f"token {style.token!r} is already loaded from another file; use a new Generator for {str(style.path)!r}"
            )
        return
    if style.token in pipe.tokenizer.get_vocab():
        raise ValueError(f"style token {style.token!r} is already a word of the tokenizer: pick another token")
    try:
        pipe.load_textual_inversion(str(style.path), token=style.token)
    except ValueError as exc:
        raise ValueError(f"style file {str(style.path)!r} does not fit this model: {exc}") from exc
    loaded[style.token] = style.sha256
