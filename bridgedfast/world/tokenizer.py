"""The world's tokenizer: a stock byte-level `CLIPTokenizer` whose small vocabulary makes every
caption word one token (the byte alphabet, its end-of-word forms, left-to-right merges that
build each word, and CLIP's special tokens). Any other text still encodes, byte by byte."""
from __future__ import annotations

import json
from pathlib import Path

from ..testing import SPECIAL_BOS, SPECIAL_EOS, _bytes_to_unicode


def _merge_chain(word: str) -> list[tuple[str, str]]:
    symbols = list(word[:-1]) + [word[-1] + "</w>"]
    chain = []
    while len(symbols) > 1:
        chain.append((symbols[0], symbols[1]))
        symbols = [symbols[0] + symbols[1]] + symbols[2:]
    return chain


def _apply(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """CLIP's BPE on one word (the lowest-ranked merge first), to check the table."""
    symbols = list(word[:-1]) + [word[-1] + "</w>"]
    while len(symbols) > 1:
        pairs = [(ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(symbols, symbols[1:]))]
        rank, i = min(pairs)
        if rank == 1 << 30:
            break
        symbols = symbols[:i] + [symbols[i] + symbols[i + 1]] + symbols[i + 2:]
    return symbols


def merges_for(words: list[str]) -> list[tuple[str, str]]:
    """Merge rules, in rank order, under which CLIP's BPE turns each word into one symbol.

    Each word's left-to-right chain is appended in turn; a word whose chain another word's
    earlier merges would break (a pair inside it merged first) gets the chain of its longest
    broken piece instead, until every word comes out whole."""
    merges: list[tuple[str, str]] = []
    for word in sorted(set(words), key=lambda w: (len(w), w)):
        for pair in _merge_chain(word):
            if pair not in merges:
                merges.append(pair)
        ranks = {p: i for i, p in enumerate(merges)}
        for _ in range(len(word)):
            pieces = _apply(word, ranks)
            if len(pieces) == 1:
                break
            # join the pieces left to right, at the end of the table (highest ranks)
            acc = pieces[0]
            for piece in pieces[1:]:
                if (acc, piece) not in ranks:
                    merges.append((acc, piece))
                    ranks[(acc, piece)] = len(merges) - 1
                acc += piece
    return merges


def write_tokenizer(folder: str | Path, words: list[str]) -> Path:
    """Writes `vocab.json` + `merges.txt` (loadable with `CLIPTokenizer.from_pretrained`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    alphabet = list(_bytes_to_unicode().values())
    vocab = alphabet + [c + "</w>" for c in alphabet]
    merges = merges_for([w.lower() for w in words])
    vocab += [a + b for a, b in merges]
    vocab = list(dict.fromkeys(vocab)) + [SPECIAL_BOS, SPECIAL_EOS]
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    return folder


def world_tokenizer(folder: str | Path, words: list[str] | None = None):
    """A `CLIPTokenizer` (max length 77, as SD's) over the corpus vocabulary, saved in `folder`."""
    from transformers import CLIPTokenizer

    from .corpus import vocabulary

    write_tokenizer(folder, vocabulary() if words is None else words)
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=77)
