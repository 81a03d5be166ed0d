"""The text side of style inversion: the prompt templates, the new token, and the text encoder
that reads it without modifying the pipeline.

The token's embedding row is substituted in the embedding lookup only during each call, so the
frozen [V, D] embedding matrix is never written and gets no gradient or optimiser state."""
from __future__ import annotations

import copy
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ..options import check_fields

__all__ = ["DEFAULT_TEMPLATES", "StyleTextEncoder", "check_templates", "check_token", "check_token_text",
           "format_prompts", "init_embedding"]

DEFAULT_TEMPLATES: tuple[str, ...] = (
    # class-agnostic: the style alone
    "a photo in the style of {token}",
    "a picture in the style of {token}",
    "an image in the style of {token}",
    "a rendering in the style of {token}",
    "a cropped photo in the style of {token}",
    "a close-up photo in the style of {token}",
    # class-aware: the style of this dataset's objects (as generation prompts will use it)
    "a photo of a {class} in the style of {token}",
    "a {class} photo in the style of {token}",
    "a picture of a {class} in the style of {token}",
    "a close-up photo of a {class} in the style of {token}",
    "a cropped photo of a {class} in the style of {token}",
    "a rendering of a {class} in the style of {token}",
)


class _StyleTokenEmbedding(torch.nn.Module):
    """The frozen token embedding with one row (token_id) taken from `vector` instead."""

    def __init__(self, base: torch.nn.Embedding, token_id: int, vector: torch.Tensor) -> None:
        super().__init__()
        self.base = base
        self.token_id = token_id
        self.vector = vector

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = F.embedding(ids.clamp(max=self.base.num_embeddings - 1), self.base.weight)
        return torch.where((ids == self.token_id).unsqueeze(-1), self.vector.to(rows.dtype), rows)


def check_token_text(token: Any, name: str = "token") -> None:
    """ValueError unless `token` is a non-empty string without whitespace (a prompt keeps it whole)."""
    if not isinstance(token, str) or not token or any(c.isspace() for c in token):
        raise ValueError(f"{name} must be a non-empty string without spaces, e.g. '<dataset-style>', got {token!r}")


def check_token(tokenizer: Any, token: str) -> None:
    """ValueError unless `token` is a new, whitespace-free string the tokenizer does not know."""
    check_token_text(token)
    # A token the tokenizer already reads as one id (a word, a sub-word, an added token) would
    # take that id's meaning over in every prompt.
    existing = tokenizer(token, add_special_tokens=False)["input_ids"]
    if token in tokenizer.get_vocab() or len(existing) == 1:
        raise ValueError(
            f"token {token!r} is already in the tokenizer's vocabulary: choose a new one, e.g. '<{token.strip('<>')}-style>'"
        )


class StyleTextEncoder:
    """The pipeline's tokenizer and text encoder plus one new token whose embedding is `vector`.

    The pipeline is not modified: the tokenizer is a copy, and the token's row is substituted in
    the embedding lookup only during each call. `encoder(encoder.tokenize(prompts))` equals
    `pipe.encode_prompt(prompts, ...)` of a stock pipeline that loaded the saved style file."""

    def __init__(self, pipe: Any, token: str, vector: torch.Tensor) -> None:
        check_token(pipe.tokenizer, token)
        self.tokenizer = copy.deepcopy(pipe.tokenizer)
        if self.tokenizer.add_tokens(token) != 1:
            raise ValueError(f"token {token!r} is already in the tokenizer's vocabulary")
        self.token = token
        self.token_id = int(self.tokenizer.convert_tokens_to_ids(token))
        probe = self.tokenize([f"a {token} b"])[0]
        if int((probe == self.token_id).sum()) != 1:
            raise ValueError(f"token {token!r} is not kept whole by the tokenizer; use lowercase, e.g. '<dataset-style>'")
        self.text_encoder = pipe.text_encoder
        self.vector = vector

    def tokenize(self, prompts: Sequence[str]) -> torch.Tensor:
        """int64 [N, model_max_length], padded and truncated as StableDiffusionPipeline does."""
        return self.tokenizer(
            list(prompts), padding="max_length", max_length=self.tokenizer.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        te = self.text_encoder
        original = te.get_input_embeddings()
        te.set_input_embeddings(_StyleTokenEmbedding(original, self.token_id, self.vector))
        try:
            mask = None
            if getattr(te.config, "use_attention_mask", False):
                mask = (ids != self.tokenizer.pad_token_id).long()
            return te(ids, attention_mask=mask)[0]
        finally:
            te.set_input_embeddings(original)


def init_embedding(pipe: Any, init_word: str) -> torch.Tensor:
    """float32 [D]: the embedding of `init_word` (the mean of its rows if it is several tokens)."""
    ids = pipe.tokenizer(init_word, add_special_tokens=False)["input_ids"] if isinstance(init_word, str) else []
    if not ids:
        raise ValueError(f"init word {init_word!r} gives no token to start from; use a word such as 'photo'")
    weight = pipe.text_encoder.get_input_embeddings().weight
    return weight.detach()[torch.tensor(ids, device=weight.device)].float().mean(0).cpu()


def format_prompts(templates: Sequence[str], classes: Sequence[str], token: str) -> list[str]:
    """Prompt of (template t, class c) at index t * len(classes) + c; '_' in class names reads as a space."""
    prompts = []
    for template in templates:
        for name in classes:
            prompts.append(template.replace("{class}", name.replace("_", " ")).replace("{token}", token))
    return prompts


def check_templates(templates: Sequence[str], name: str = "templates") -> list[str]:
    """The templates as a list; ValueError unless each holds '{token}'."""
    if isinstance(templates, str) or not templates:
        raise ValueError(f"{name} must be a non-empty list of strings, got {templates!r}")
    for t in templates:
        if not isinstance(t, str) or "{token}" not in t:
            raise ValueError(f"template {t!r} must contain '{{token}}' (and may contain '{{class}}')")
        check_fields(t, ("{token}", "{class}"), "template")
    return list(templates)
