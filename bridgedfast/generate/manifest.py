"""The generation manifest: `OUT/generation.json` beside the image store, holding the full
configuration (what decides the images) and run facts (what does not). A re-run with a
different configuration against the same OUT is refused, naming the keys that differ."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..files import atomic_write_json

MANIFEST_NAME = "generation.json"
FORMAT = 1


def manifest_path(out: Path) -> Path:
    return Path(out) / MANIFEST_NAME


def read_manifest(out: Path) -> dict | None:
    path = manifest_path(out)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a readable generation manifest: {exc}") from exc
    if not isinstance(data, dict) or "config" not in data:
        raise ValueError(f"{path} is not a bridgedfast generation manifest")
    return data


def write_manifest(out: Path, data: dict) -> None:
    atomic_write_json(manifest_path(out), data, indent=2, sort_keys=True)


def config_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted names of the keys whose values differ between two configurations."""
    diffs = []
    for key in sorted(set(old) | set(new)):
        name = f"{prefix}{key}"
        a, b = old.get(key, "<missing>"), new.get(key, "<missing>")
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += config_differences(a, b, prefix=f"{name}.")
        elif a != b:
            diffs.append(name)
    return diffs


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def check_same_config(out: Path, old: dict, new: dict) -> None:
    """Raises ValueError naming each differing key (with both values) when `old != new`."""
    diffs = config_differences(old, new)
    if not diffs:
        return
    details = []
    for name in diffs[:6]:
        a, b = old, new
        for part in name.split("."):
            a = a.get(part, "<missing>") if isinstance(a, dict) else "<missing>"
            b = b.get(part, "<missing>") if isinstance(b, dict) else "<missing>"
        details.append(f"{name} (existing {_show(a)}, now {_show(b)})")
    more = f" and {len(diffs) - 6} more" if len(diffs) > 6 else ""
    raise ValueError(
        f"{str(out)!r} holds images generated with a different configuration: {'; '.join(details)}{more}. "
        "Re-run with the original options to resume, or choose a new output folder"
    )
