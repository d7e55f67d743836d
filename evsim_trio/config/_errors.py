"""Config errors: one line each, naming the file, the key path and what was expected."""

from __future__ import annotations

import datetime
import difflib
import json
from collections.abc import Sequence

import attrs
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)

# attrs field metadata: the field is filled in by the loader, never read from the file.
OMIT = "evsim_trio.omit"

PathPart = str | int
KeyPath = tuple[PathPart, ...]


class ConfigError(Exception):
    """A site config, station template or id tag file is unreadable or invalid.

    `str(error)` is one line, `"<file>: <key path>: <what was expected>"` (or
    `"<file>:<line>: TOML syntax error: ..."`); `errors` holds every problem found, the first
    being the one `str()` shows.
    """

    def __init__(self, message: str, errors: Sequence[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors: list[str] = list(errors) if errors else [message]

    def __str__(self) -> str:
        return self.message


class Invalid(ValueError):
    """A value failed a check; `path` is relative to the object that raised it."""

    def __init__(self, path: KeyPath, message: str) -> None:
        super().__init__(f"{format_path(path)}: {message}" if path else message)
        self.path = path
        self.message = message


class Mismatch(Invalid):
    """A value has the wrong TOML type; the field's checks may restate what is expected."""

    def __init__(self, expected: str, value: object) -> None:
        super().__init__((), f"expected {expected}, got {show(value)}")
        self.value = value


def format_path(path: KeyPath) -> str:
    """`("stations", 1, "count")` -> `stations[1].count`; mapping keys are dotted."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def show(value: object) -> str:
    """A value as the user wrote it in TOML, short enough for a one-line message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 60 else text[:56] + '..."'
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # numbers are structured as floats; show them as written
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, datetime.date | datetime.time):
        return "a date/time"
    return type(value).__name__


def _unknown_key(cl: type, key: str) -> str:
    message = "unknown key"
    if attrs.has(cl):
        names = [a.name for a in attrs.fields(cl) if not a.metadata.get(OMIT)]
        close = difflib.get_close_matches(key, names, n=1)
        if close:
            message += f" (did you mean {close[0]}?)"
    return message


def _walk(exc: BaseException, path: KeyPath, out: list[tuple[int, str]]) -> None:
    # Unknown keys sort first: a misspelt key is the cause of its "missing required key".
    if isinstance(exc, ClassValidationError):
        with_notes, without = exc.group_exceptions()
        for sub, note in with_notes:
            _walk(sub, (*path, note.name), out)
        for sub in without:
            _walk(sub, path, out)
    elif isinstance(exc, IterableValidationError):
        with_notes_i, without_i = exc.group_exceptions()
        for sub, inote in with_notes_i:
            _walk(sub, (*path, inote.index), out)
        for sub in without_i:
            _walk(sub, path, out)
    elif isinstance(exc, ForbiddenExtraKeysError):
        for key in sorted(exc.extra_fields):
            out.append((0, f"{format_path((*path, key))}: {_unknown_key(exc.cl, key)}"))
    elif isinstance(exc, Invalid):
        out.append((1, f"{format_path((*path, *exc.path))}: {exc.message}"))
    elif isinstance(exc, KeyError) and path:
        # cattrs reports a missing required field as a KeyError noted with the field name.
        out.append((1, f"{format_path(path)}: missing required key"))
    else:
        where = format_path(path) or "(top level)"
        out.append((1, f"{where}: invalid value ({exc})"))


def messages(exc: BaseException, prefix: KeyPath = ()) -> list[str]:
    """Every problem in a cattrs structuring error (or an `Invalid`), as `key.path: message`."""
    out: list[tuple[int, str]] = []
    _walk(exc, prefix, out)
    return [text for _, text in sorted(out, key=lambda item: item[0])]


def in_file(display: str, problems: Sequence[str]) -> list[str]:
    """Prefix each problem with the file it was found in."""
    return [f"{display}: {problem}" for problem in problems]


def raise_errors(errors: Sequence[str]) -> None:
    """Raise a ConfigError for `errors` (the first one is its message); no-op when empty."""
    if errors:
        raise ConfigError(errors[0], errors)
