"""Checkpoints without pickle: model and optimiser tensors in safetensors, everything else
(stage, epoch, step, history, optimiser hyper-parameters, scaler) in one JSON state file.

Each save writes new files named by (stage, epoch), then atomically replaces `state.json`,
which names them: the commit point. A crash at any moment leaves the previous checkpoint
intact; files of older checkpoints are removed only after the commit."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..files import atomic_write, atomic_write_text

__all__ = ["save_checkpoint", "load_checkpoint", "optimizer_to_flat", "optimizer_from_flat"]


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    with atomic_write(path, durable=True) as tmp:
        save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(tmp))


def optimizer_to_flat(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Splits `optimizer.state_dict()` into tensors ('state.<param>.<key>') and JSON-able rest."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entries in state_dict["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{pid}.{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def optimizer_from_flat(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    for pid, entries in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(entries)
    # JSON turned tuples (AdamW's betas) into lists; give the optimiser back what it saved.
    groups = [{k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_checkpoint(
    folder: Path,
    *,
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any] | None,
    state: dict[str, Any],
) -> None:
    """Writes model (+ optimiser) tensors for state['stage'], state['epoch'] and commits `state`."""
    folder.mkdir(parents=True, exist_ok=True)
    tag = f"s{state['stage']}-e{state['epoch']}"
    model_file = folder / f"model-{tag}.safetensors"
    _save_tensors(model_state, model_file)
    state = dict(state, model_file=model_file.name, optimizer_file=None)
    if optimizer_state is not None:
        opt_tensors, opt_meta = optimizer_to_flat(optimizer_state)
        opt_file = folder / f"optimizer-{tag}.safetensors"
        _save_tensors(opt_tensors, opt_file)
        state.update(optimizer_file=opt_file.name, optimizer=opt_meta)
    atomic_write_text(folder / "state.json", json.dumps(state, indent=1))
    keep = {state["model_file"], state["optimizer_file"], "state.json"}
    for f in folder.iterdir():
        if f.suffix == ".safetensors" and f.name not in keep:
            f.unlink(missing_ok=True)


def _named_file(folder: Path, state: dict[str, Any], key: str) -> Path:
    """The file state.json names under `key`: a plain file name (no folder part, no '..') of an
    existing file in `folder`; anything else is a damaged or hand-edited state.json."""
    name = state.get(key)
    where = f"checkpoint {str(folder / 'state.json')!r}"
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name \
            or Path(name).name != name or not name.endswith(".safetensors"):
        raise ValueError(f"{where} is damaged: {key} must be a file name inside the run folder, got {name!r}")
    path = folder / name
    if path.is_symlink() or not path.is_file():
        raise ValueError(f"{where} names {key} {name!r}, which is not a file in {str(folder)!r}")
    return path


def load_checkpoint(folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any] | None] | None:
    """(state, model tensors, optimizer state dict or None) of the last commit, or None. The file
    names state.json holds are checked (plain names of files in `folder`) before they are read."""
    path = folder / "state.json"
    if not path.is_file():
        return None
    state = json.loads(path.read_text())
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {str(path)!r} is damaged: not a JSON object")
    model_state = load_file(str(_named_file(folder, state, "model_file")))
    optimizer_state = None
    if state.get("optimizer_file") is not None:
        opt_file = _named_file(folder, state, "optimizer_file")
        optimizer_state = optimizer_from_flat(load_file(str(opt_file)), state["optimizer"])
    return state, model_state, optimizer_state
