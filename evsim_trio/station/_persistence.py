"""Persisted station state: one TOML file per hashId, written atomically.

A write goes to a temporary file in the same directory, is flushed to disk, then renamed over
the old file: a crash leaves either the old state or the new one, never a torn file.
"""

from __future__ import annotations

import logging
import os
import tempfile
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import tomli_w

log = logging.getLogger(__name__)

STATE_VERSION = 1


def state_path(state_dir: Path, hash_id: str) -> Path:
    """Where the state of station `hash_id` lives."""
    return state_dir / f"{hash_id}.toml"


def load_state(path: Path) -> dict[str, Any] | None:
    """Read a state file; None when missing. An unusable file is set aside and reported."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        state = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        set_aside(path, ".damaged", f"unreadable station state ({exc})")
        return None
    version = state.get("version")
    if version != STATE_VERSION:
        # Empty, foreign or from a newer evsim-trio: kept for a human, never overwritten.
        set_aside(path, ".unsupported", f"station state version {version!r} not understood")
        return None
    return state


def set_aside(path: Path, suffix: str, why: str) -> None:
    """Move an unusable state file out of the way (never delete it, nor an earlier copy)."""
    aside = path.with_suffix(suffix)
    n = 1
    while aside.exists():
        aside = path.with_suffix(f"{suffix}.{n}")
        n += 1
    os.replace(path, aside)
    log.warning("%s: %s; moved to %s, the station starts afresh", path, why, aside)


def remove_temp_files(state_dir: Path, paths: Iterable[Path]) -> int:
    """Delete the temporary files that writes of these state files left when a kill interrupted
    them (never renamed, never needed); returns how many.

    One listing of the directory for the whole fleet; files of other processes sharing the
    directory (shards) are left alone.
    """
    names = {path.name for path in paths}
    removed = 0
    for entry in os.scandir(state_dir):
        name = entry.name
        if name.startswith(".") and name.endswith(".tmp"):
            owner = name[1:].rsplit(".", 2)[0]  # ".<hash>.toml.<random>.tmp" -> "<hash>.toml"
            if owner in names:
                Path(entry.path).unlink(missing_ok=True)
                removed += 1
    return removed


def save_state(path: Path, state: Mapping[str, Any], *, fsync: bool = True) -> None:
    """Write `state` atomically (temp file + fsync + rename; rename alone without `fsync`)."""
    write_state_file(path, tomli_w.dumps({"version": STATE_VERSION, **state}).encode(), fsync=fsync)


def write_state_file(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Write the text of a state file atomically: a fresh temp file, fsync'd unless not
    `fsync`, renamed over `path`. (The station's running writes go through `_state_writer`.)
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            write_all(fd, data)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_all(fd: int, data: bytes) -> None:
    """os.write until all of `data` is written."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
