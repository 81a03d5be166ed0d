"""Skip-or-run bookkeeping for the experiment pipeline.

Each step has a key: a hash of its own settings and of the keys of the steps it depends on.
A finished step whose key still matches is skipped; a step started under the same key
resumes (pack, invert, generate and train all resume themselves); a step whose key changed
has its outputs removed and runs again, and so does everything downstream of it.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Callable

from ..files import atomic_write_json


def content_key(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def input_fingerprint(path: str | Path) -> str:
    """Changes whenever a file under `path` is added, removed, resized or rewritten."""
    path = Path(path)
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(path) if f != path else f.name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


class Steps:
    def __init__(self, out: Path, log: Callable[[str], None] = print) -> None:
        self.dir = out / ".steps"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = log
        self.ran: list[str] = []
        self.skipped: list[str] = []

    def _state(self, name: str, kind: str) -> dict | None:
        path = self.dir / f"{name}.{kind}.json"
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def key_of(self, name: str) -> str | None:
        """The key step `name` last finished under (None if it has not finished)."""
        done = self._state(name, "done")
        return None if done is None else done.get("key")

    def run(self, name: str, payload: Any, outputs: list[Path], fn: Callable[[], Any], *,
            enough: Callable[[Any], bool] | None = None) -> tuple[str, Any]:
        """Runs `fn` unless step `name` already finished with this payload; returns (key, result).
        `enough(result)`: whether a finished step's result still suffices (a step whose output
        can grow, e.g. more images per class, is resumed rather than redone when it does not)."""
        key = content_key(payload)
        done = self._state(name, "done")
        if (done is not None and done.get("key") == key and all(p.exists() for p in outputs)
                and (enough is None or enough(done.get("result")))):
            self.log(f"[skip] {name}: up to date")
            self.skipped.append(name)
            return key, done.get("result")
        started = self._state(name, "started")
        if started is not None and started.get("key") != key or done is not None and done.get("key") != key:
            self.log(f"[redo] {name}: its settings or inputs changed; removing its old outputs")
            for p in outputs:
                if p.is_dir():
                    shutil.rmtree(p)
                elif p.exists():
                    p.unlink()
        elif started is not None:
            self.log(f"[resume] {name}")
        else:
            self.log(f"[run] {name}")
        (self.dir / f"{name}.done.json").unlink(missing_ok=True)
        atomic_write_json(self.dir / f"{name}.started.json", {"key": key, "payload": payload})
        result = fn()
        atomic_write_json(
            self.dir / f"{name}.done.json",
            {"key": key, "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "result": result},
        )
        self.ran.append(name)
        return key, result
