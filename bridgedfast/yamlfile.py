"""Reading the YAML (and JSON) files a user writes: experiment files and prompts files.

`load_yaml` is `yaml.safe_load` that refuses a mapping with the same key twice (PyYAML keeps the
last one silently, so a duplicated setting would quietly win) and reports any problem as one
ValueError line naming the file and the line.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["YAMLFileError", "load_yaml"]


class YAMLFileError(ValueError):
    """The file is not valid YAML, or a mapping in it repeats a key."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader whose mappings refuse duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: its keys may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                if key in seen:
                    raise YAMLFileError(f"duplicate key {key!r} (lines {seen[key] + 1} and "
                                        f"{key_node.start_mark.line + 1})")
                seen[key] = key_node.start_mark.line
            except TypeError:  # an unhashable key: the base class reports it
                break
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path, what: str = "YAML file", *, syntax: str = "YAML") -> Any:
    """The parsed content of the YAML (or JSON) file `path`; YAMLFileError naming `what`, the file and
    the line for invalid YAML, a duplicate key or undecodable text; FileNotFoundError when it is missing."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} {str(p)!r} does not exist")
    try:
        return yaml.load(p.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except YAMLFileError as exc:
        raise YAMLFileError(f"{what} {str(p)!r}: {exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise YAMLFileError(f"{what} {str(p)!r} is not valid {syntax}{where} ({first})") from None
