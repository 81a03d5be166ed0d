"""The generation manifest: `OUT/generation.json` beside the image store, holding the full
configuration (what decides the images) and run facts (what does not). A re-run with a
different configuration against the same OUT is refused, naming the keys that differ."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..files import atomic_write_json
from .config import GenerateConfig, store_size_pair
from .prompts import Style
from .schedulers import scheduler_description

__all__ = ["MANIFEST_NAME", "FORMAT", "read_manifest", "write_manifest", "check_same_config", "generation_config",
           "manifest", "run_facts", "check_out"]

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


def generation_config(cfg: GenerateConfig, *, classes: list[str], fingerprint: str, dtype: torch.dtype,
                      scheduler: Any, style: Style | None, run: Any = None) -> dict[str, Any]:
    """What decides the images (frozen: stored outputs are compared against it); a different
    value against an existing output is refused. Batching never changes an image, so
    `batch_size` is not part of it. A prompts file and init images count by their contents
    (`run`, the PreparedRun, has them), not their paths."""
    config = {
        "format": FORMAT,
        "model_fingerprint": fingerprint,
        "dtype": str(dtype).replace("torch.", ""),
        "classes": classes,
        "per_class": cfg.per_class,
        "template": cfg.template,
        "negative_prompt": cfg.negative_prompt,
        "style": None if style is None else {"token": style.token, "sha256": style.sha256},
        "scheduler": scheduler_description(scheduler),
        "guidance_scale": float(cfg.guidance_scale),
        "steps": cfg.steps,
        "height": cfg.height,
        "width": cfg.width,
        "seed": cfg.seed,
        "store_size": None if cfg.store_size is None else list(store_size_pair(cfg.store_size)),
        "encoding": cfg.encoding,
    }
    if cfg.encoding == "jpeg":  # the stored bytes depend on it (raw outputs keep their original keys)
        config["quality"] = cfg.quality
    config.update(GenerateConfig.new_keyed_values(cfg.values()))
    if cfg.prompts is not None:
        config["prompts"] = {"sha256": run.plan.digest}
    if cfg.init_images is not None:
        config["init_images"] = {"fingerprint": run.init.fingerprint}
        config["strength"] = run.strength
    return config


def manifest(config: dict, entry: dict[str, Any], *, status: str, previous: dict | None) -> dict[str, Any]:
    """The manifest to write: the configuration, the status and every run's facts (`entry` appended)."""
    runs = list((previous or {}).get("runs", []))
    runs.append(entry)
    return {"config": config, "status": status, "runs": runs, "batch_size": entry["batch_size"]}


def run_facts(*, model: str, backend: str, attention: str, device: torch.device, world_size: int, batch_size: int,
              report: dict | None = None) -> dict[str, Any]:
    """One call's entry in the manifest's `runs`: what it ran on (nothing that decides the images)."""
    import time

    import diffusers

    from .. import __version__

    entry = {
        "model": model, "backend": backend, "attention": attention, "device": str(device), "world_size": world_size,
        "batch_size": batch_size,
        "versions": {"bridgedfast": __version__, "torch": torch.__version__, "diffusers": diffusers.__version__},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if report is not None:
        entry["report"] = report
    return entry


def check_out(out: Path, config: dict) -> dict | None:
    """The existing manifest (None for a fresh output); refuses a different configuration or a
    folder that is not a generation output."""
    from .sink import existing_store_size

    if out.exists() and not out.is_dir():
        raise ValueError(f"output {str(out)!r} exists and is not a folder")
    found = read_manifest(out) if out.is_dir() else None
    if found is not None:
        old = found["config"]
        if isinstance(old.get("per_class"), int) and old["per_class"] > config["per_class"]:
            raise ValueError(f"{str(out)!r} holds a generation of {old['per_class']} images per class; per_class can "
                             f"only grow on an existing output (now {config['per_class']}): choose a new output folder")
        # A larger per_class extends the output: image (c, i) does not depend on it.
        check_same_config(out, {**old, "per_class": config["per_class"]}, config)
        return found
    if out.is_dir() and any(out.iterdir()):
        if existing_store_size(out) == 0:
            return None  # a crash between creating the store and writing the manifest
        raise ValueError(f"output {str(out)!r} is not empty and holds no bridgedfast generation: choose a new folder")
    return None
