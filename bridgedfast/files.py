"""Atomic files: a reader sees the old content or the new one, never a half-written file.

Every output the package writes whole (JSON state, reports, plots, safetensors files, engines)
goes through `atomic_write`: the content is written to a temporary sibling, flushed to disk,
and renamed over the target. A crash (even kill -9) leaves at most a temporary sibling, which
`is_temporary` recognises so that folder checks can ignore it.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any, Iterator

__all__ = ["atomic_write", "atomic_write_text", "atomic_write_json", "check_output_path", "fsync_dir", "is_temporary",
           "temporary_path"]

# `.NAME.PID.tmp.SUFFIX`: the target's suffix stays last, so writers that pick a format from
# the file name (PIL, matplotlib) still do.
_TEMPORARY = re.compile(r"^\..+\.tmp(\d*)(\.[A-Za-z0-9]+)?$")


def temporary_path(path: Path) -> Path:
    """The temporary sibling `path` is written as before it is renamed into place (unique per process)."""
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def is_temporary(name: str) -> bool:
    """Whether a file name is a temporary sibling an interrupted atomic write may leave behind
    (also the names earlier versions used: `.NAME.tmp`, `.NAME.tmp.png`, `.NAME.tmpPID`)."""
    return bool(_TEMPORARY.match(name))


def fsync_dir(path: Path) -> None:
    """Makes a rename inside `path` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | Path, *, mode: int | None = None, durable: bool = True) -> Iterator[Path]:
    """Yields a temporary path to write `path`'s new content to; on a clean exit it is fsync'ed
    and renamed over `path` (and the rename made durable), on an error it is removed.
    `mode`: permission bits for the result (e.g. 0o644 for files written owner-only by a library)."""
    path = Path(path)
    tmp = temporary_path(path)
    try:
        yield tmp
        if mode is not None:
            os.chmod(tmp, mode)
        if durable:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str, *, durable: bool = True) -> Path:
    path = Path(path)
    with atomic_write(path, durable=durable) as tmp:
        tmp.write_text(text)
    return path


def atomic_write_json(path: str | Path, payload: Any, *, indent: int | None = 2, sort_keys: bool = False,
                      durable: bool = True) -> Path:
    """JSON (values it cannot encode written as their str()), one trailing newline."""
    text = json.dumps(payload, indent=indent, sort_keys=sort_keys, default=str) + "\n"
    return atomic_write_text(path, text, durable=durable)


def check_output_path(path: str | Path, what: str, *, folder: bool, marker: str | None = None,
                      marker_what: str = "", marker_ok: bool = False) -> Path:
    """`path` (user expanded) if it can be written as an output: a `folder` or a file. ValueError, one
    line naming `what`, when an existing part of it is a file where a folder must be (creating it
    would fail half-way), when it is a folder where a file goes or a file where a folder goes, or
    when it lies inside (or, unless `marker_ok`, is) a folder holding `marker`: a file that says
    what the folder is, e.g. an image store's header (`marker_what`: "an image store").
    Commands call it before any work starts."""
    p = Path(path).expanduser()
    if p.exists():
        if folder and not p.is_dir():
            raise ValueError(f"{what} {str(p)!r} is a file; it must be a folder (or a path to create)")
        if not folder and p.is_dir():
            raise ValueError(f"{what} {str(p)!r} is a folder; it must be a file path")
    for parent in p.absolute().parents:
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"{what} {str(p)!r} cannot be created: {str(parent)!r} is a file, not a folder")
    if marker is not None:
        kind = marker_what or f"a folder holding {marker}"
        if folder and not marker_ok and (p / marker).is_file():
            raise ValueError(f"{what} {str(p)!r} is {kind}; choose another folder")
        for owner in p.absolute().parents:
            if (owner / marker).is_file():
                raise ValueError(f"{what} {str(p)!r} lies inside {str(owner)!r}, {kind}; choose another path")
    return p
