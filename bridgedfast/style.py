"""The style file: a diffusers textual-inversion safetensors file, one key (the token) holding a
float32 [1, D] embedding, exactly what diffusers' textual-inversion example writes and what
stock `pipe.load_textual_inversion(path, token=...)` loads."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .files import atomic_write


def save_style(path: str | Path, token: str, embedding: torch.Tensor, metadata: dict[str, Any] | None = None) -> Path:
    """Writes `{token: embedding[1, D]}` (float32) atomically; `metadata` goes into the
    safetensors header as JSON under "bridgedfast"."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensor = embedding.detach().float().cpu().reshape(1, -1).contiguous()
    header = {"format": "pt"}
    if metadata:
        header["bridgedfast"] = json.dumps(metadata, sort_keys=True)
    # safetensors creates files owner-only; the embedding is meant to be shared.
    with atomic_write(path, mode=0o644) as tmp:
        save_file({token: tensor}, str(tmp), metadata=header)
    return path


def read_style(path: str | Path) -> tuple[str, torch.Tensor]:
    """(token, embedding [D]) from a single-token diffusers textual-inversion safetensors file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"style file {str(path)!r} does not exist")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"style file {str(path)!r} is not a safetensors file: {exc}") from None
    if len(state) != 1:
        raise ValueError(f"style file {str(path)!r} must hold one token embedding, found keys {sorted(state)}")
    token, embedding = next(iter(state.items()))
    if embedding.dim() == 2 and embedding.shape[0] == 1:
        embedding = embedding[0]
    if embedding.dim() != 1:
        raise ValueError(f"style file {str(path)!r}: expected a [1, D] embedding, got {tuple(embedding.shape)}")
    return token, embedding


def load_style(pipe: Any, path: str | Path, token: str | None = None) -> str:
    """Loads the style file into a diffusers pipeline with stock `load_textual_inversion` and
    returns the token to put in prompts. Loading the same file twice is a no-op."""
    file_token, embedding = read_style(path)
    token = token or file_token
    if token in pipe.tokenizer.get_vocab():
        row = pipe.text_encoder.get_input_embeddings().weight[pipe.tokenizer.convert_tokens_to_ids(token)]
        if torch.equal(row.detach().cpu().float(), embedding.to(row.dtype).float()):
            return token
        raise ValueError(f"token {token!r} is already in the pipeline's vocabulary with another embedding")
    from .sd import quiet_loading

    with quiet_loading(enabled=False):  # transformers' note on how it sizes the new embedding row
        pipe.load_textual_inversion(str(path), token=token)
    return token
