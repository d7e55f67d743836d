"""Persisted station state: one TOML file per hashId, written atomically.

A write goes to a temporary file in the same directory, is flushed to disk, then renamed over
the old file: a crash leaves either the old state or the new one, never a torn file.
"""

from __future__ import annotations

import logging
import os
import tempfile
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomli_w

log = logging.getLogger(__name__)

STATE_VERSION = 1


def state_path(state_dir: Path, hash_id: str) -> Path:
    """Where the state of station `hash_id` lives."""
    return state_dir / f"{hash_id}.toml"


def load_state(path: Path) -> dict[str, Any] | None:
    """Read a state file; None when missing. A damaged file is set aside and reported."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        state = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        damaged = path.with_suffix(".damaged")
        os.replace(path, damaged)
        log.warning("%s: unreadable station state (%s); moved to %s", path, exc, damaged)
        return None
    if state.get("version") != STATE_VERSION:
        log.warning("%s: state version %r not understood; ignored", path, state.get("version"))
        return None
    return state


def save_state(path: Path, state: Mapping[str, Any]) -> None:
    """Write `state` atomically (temp file + fsync + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = tomli_w.dumps({"version": STATE_VERSION, **state})
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
