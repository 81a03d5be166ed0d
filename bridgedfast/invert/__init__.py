"""Dataset style inversion: learn ONE new token S* from all real training images of a dataset
(textual inversion with the diffusion model frozen), written as a diffusers textual-inversion
file for prompts such as "a photo of a {class} in the style of S*".

Modules: `api` (`invert_style`, the entry point), `config` (its options), `text` (templates,
the token and the text encoder that reads it), `train` (`StyleTrainer`: the steps),
`checkpoint`, `images` (folder or store input), `latents` (the VAE latent cache).

    from bridgedfast.invert import invert_style
    invert_style("path/to/sd15", "path/to/images", "style.safetensors")
    pipe.load_textual_inversion("style.safetensors", token="<dataset-style>")
"""
from __future__ import annotations

from ..style import load_style, read_style, save_style
from .api import invert_style
from .config import InvertConfig
from .text import DEFAULT_TEMPLATES, StyleTextEncoder

__all__ = ["DEFAULT_TEMPLATES", "InvertConfig", "StyleTextEncoder", "invert_style", "load_style", "read_style",
           "save_style"]
