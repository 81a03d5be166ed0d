"""`bridgedfast COMMAND --help`: every option's help says its default once, in words where the
declaration gives them, and never '(default: None)' or a default on a required option."""
from __future__ import annotations

import argparse

from bridgedfast.cli import build_parser


def rendered_help() -> dict[tuple[str, str], tuple[argparse.Action, str]]:
    """(command, first flag) -> (action, its help text as --help prints it, unwrapped)."""
    parser, _ = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out = {}
    for command, p in sub.choices.items():
        formatter = p._get_formatter()
        for action in p._actions:
            if action.help and action.option_strings:
                out[command, action.option_strings[0]] = (action, formatter._expand_help(action))
    return out


def test_each_default_is_shown_once_and_never_as_none():
    helps = rendered_help()
    assert len(helps) > 100  # every command's options were seen
    for (command, flag), (action, text) in helps.items():
        where = f"bridgedfast {command} {flag}: {text!r}"
        assert text.count("(default:") <= 1, where
        assert "(default: None)" not in text, where
        if action.required:
            assert "default" not in text, where
    # What the formatter adds, and what it leaves to a declaration that says it in words.
    assert helps["pack", "--quality"][1] == "JPEG quality for encoding jpeg (default: 95)"
    assert helps["pack", "--workers"][1] == "decode threads (default: up to 8, one per core)"
    assert helps["pack", "--max-side"][1] == "shrink images so the longer side is at most N pixels"
    assert helps["train", "--channels-last"][1] == "channels_last memory format (default: on CUDA)"
    required = [(c, f) for (c, f), (a, _) in helps.items() if a.required]
    assert {("invert", "--model"), ("generate", "--out"), ("generate", "--per-class")} <= set(required)
