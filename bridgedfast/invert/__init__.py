"""Dataset style inversion: learn ONE new token S* from all real training images of a dataset
(textual inversion with the diffusion model frozen), written as a diffusers textual-inversion
file for prompts such as "a photo of a {class} in the style of S*".

    from bridgedfast.invert import invert_style
    invert_style("path/to/sd15", "path/to/images", "style.safetensors", steps=3000)
    pipe.load_textual_inversion("style.safetensors", token="<dataset-style>")
"""
from __future__ import annotations

from ..style import load_style, read_style, save_style
from .train import DEFAULT_TEMPLATES, StyleTextEncoder, invert_style

__all__ = ["DEFAULT_TEMPLATES", "StyleTextEncoder", "invert_style", "load_style", "read_style", "save_style"]
