"""Reading files: TOML syntax, structuring, path resolution, and the checks across files."""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any, TypeVar

import attrs
from cattrs.errors import BaseValidationError

from evsim_trio.config._convert import structure
from evsim_trio.config._errors import ConfigError, Invalid, in_file, messages, raise_errors, show
from evsim_trio.config._site import Site, SiteConfig, StationEntry
from evsim_trio.config._template import ConnectorTemplate, StationTemplate

T = TypeVar("T")

# OCPP 1.6 IdToken is a CiString20Type.
_ID_TAG_MAX = 20
_TOML_WHERE = re.compile(r" \(at line (\d+), column (\d+)\)$")


def _read_text(path: Path, display: str) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{display}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{display}: cannot read: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{display}: not UTF-8 text (byte {exc.start})") from None


def _read_toml(path: Path, display: str) -> dict[str, Any]:
    text = _read_text(path, display)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        where = _TOML_WHERE.search(message)
        if where is not None:
            line, column = where.groups()
            message = f"{message[: where.start()]} (column {column})"
        else:
            line = str(text.count("\n") + 1)
            message = message.replace(" (at end of document)", " at the end of the file")
        raise ConfigError(f"{display}:{line}: TOML syntax error: {message}") from None


def _structure(data: dict[str, Any], cl: type[T], display: str) -> T:
    try:
        return structure(data, cl)
    except (BaseValidationError, Invalid) as exc:
        problems = in_file(display, messages(exc))
        raise ConfigError(problems[0], problems) from None


def _beside(display: str, relative: Path) -> str:
    """How to name a file given relative to another file that was named `display`."""
    if relative.is_absolute():
        return str(relative)
    return os.path.normpath(os.path.join(os.path.dirname(display), relative))


def _fill_connectors(template: StationTemplate) -> dict[int, ConnectorTemplate]:
    # Like the reference: ids beyond the last defined connector reuse its definition, and
    # definitions beyond number_of_connectors are not used.
    defined = template.connectors
    count = template.max_connectors()
    last_id = max((cid for cid in defined if cid > 0), default=None)
    last = defined[last_id] if last_id is not None else ConnectorTemplate()
    filled = {0: defined[0]} if 0 in defined else {}
    filled.update({cid: defined.get(cid, last) for cid in range(1, count + 1)})
    return filled


def _load_template(path: Path, display: str) -> tuple[StationTemplate, str | None]:
    """The template and how to name its authorization file in messages."""
    template = _structure(_read_toml(path, display), StationTemplate, display)
    if template.max_connectors() == 0:
        raise ConfigError(
            f"{display}: number_of_connectors: expected an integer >= 1 or [connectors.N] "
            "tables with N >= 1: the template defines no connector"
        )
    auth_file = template.authorization_file
    auth_display = None
    if auth_file is not None:
        auth_display = _beside(display, auth_file)
        auth_file = (path.parent / auth_file).resolve()
        if not auth_file.is_file():
            raise ConfigError(f"{display}: authorization_file: file not found: {auth_file}")
    template = attrs.evolve(
        template,
        authorization_file=auth_file,
        connectors=_fill_connectors(template),
        path=path.resolve(),
    )
    return template, auth_display


def load_template(path: str | os.PathLike[str]) -> StationTemplate:
    """Read and check one station template (TOML); raises ConfigError.

    `authorization_file` comes back resolved against the template's directory (it must exist;
    its tags are read by `load_site` or `load_id_tags`).
    """
    template, _ = _load_template(Path(path), os.fspath(path))
    return template


def _tag_errors(tags: Any, where: str) -> list[str]:
    if not isinstance(tags, list):
        return [f"{where}: expected an array of id tags, got {show(tags)}"]
    if not tags:
        return [f"{where}: expected at least one id tag"]
    return [
        f"{where}[{index}]: expected a string of 1 to {_ID_TAG_MAX} characters "
        f"(an OCPP 1.6 IdToken), got {show(tag)}"
        for index, tag in enumerate(tags)
        if not isinstance(tag, str) or not 1 <= len(tag) <= _ID_TAG_MAX
    ]


def load_id_tags(path: str | os.PathLike[str], display: str | None = None) -> tuple[str, ...]:
    """Read an authorization file: TOML `id_tags = [...]`, or a JSON array as the reference's.

    `display` names the file in messages (default: `path` as given). Raises ConfigError.
    """
    file = Path(path)
    display = display or os.fspath(path)
    tags: Any
    if file.suffix.lower() == ".json":
        try:
            tags = json.loads(_read_text(file, display))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{display}:{exc.lineno}: JSON syntax error: {exc.msg}") from None
        errors = _tag_errors(tags, "(top level)")
    else:
        data = _read_toml(file, display)
        tags = data.get("id_tags")
        errors = [f"{key}: unknown key" for key in data if key != "id_tags"]
        errors += (
            ["id_tags: missing required key"] if tags is None else _tag_errors(tags, "id_tags")
        )
    raise_errors(in_file(display, errors))
    return tuple(tags)


def load_site(path: str | os.PathLike[str]) -> Site:
    """Read and check a site config, every template it names and their id tag files.

    Template paths are resolved against the site file's directory. Raises ConfigError naming the
    first problem (all of them in `.errors`).
    """
    site_path = Path(path)
    display = os.fspath(path)
    config = _structure(_read_toml(site_path, display), SiteConfig, display)
    errors: list[str] = []
    templates: dict[Path, StationTemplate] = {}
    auth_displays: dict[Path, str] = {}
    failed: set[Path] = set()
    entries: list[StationEntry] = []
    for index, entry in enumerate(config.stations):
        resolved = (site_path.parent / entry.template).resolve()
        if not resolved.is_file():
            errors.append(f"{display}: stations[{index}].template: file not found: {resolved}")
            continue
        if resolved not in templates and resolved not in failed:
            try:
                template, auth_display = _load_template(resolved, _beside(display, entry.template))
            except ConfigError as exc:
                errors.extend(exc.errors)
                failed.add(resolved)
            else:
                templates[resolved] = template
                if template.authorization_file is not None and auth_display is not None:
                    auth_displays.setdefault(template.authorization_file, auth_display)
        if resolved in templates:
            entries.append(attrs.evolve(entry, template=resolved))
    id_tags: dict[Path, tuple[str, ...]] = {}
    for auth_file, auth_display in auth_displays.items():
        try:
            id_tags[auth_file] = load_id_tags(auth_file, auth_display)
        except ConfigError as exc:
            errors.extend(exc.errors)
    if not errors:
        errors.extend(_url_errors(config, entries, templates, display))
    raise_errors(errors)
    return Site(
        path=site_path,
        config=attrs.evolve(config, stations=tuple(entries)),
        templates=templates,
        id_tags=id_tags,
    )


def _url_errors(
    config: SiteConfig,
    entries: list[StationEntry],
    templates: dict[Path, StationTemplate],
    display: str,
) -> list[str]:
    if config.csms.enabled or config.supervision.urls:
        return []
    return [
        f"{display}: supervision.urls: no supervision URL and the embedded CSMS is disabled "
        f"(stations[{index}] and its template {entry.template.name} name none)"
        for index, entry in enumerate(entries)
        if entry.count > 0
        and not entry.supervision_urls
        and not templates[entry.template].supervision_urls
    ]


def validate_site(path: str | os.PathLike[str]) -> list[str]:
    """Every problem `load_site` finds in a site config, one line each (empty: it is valid)."""
    try:
        load_site(path)
    except ConfigError as exc:
        return exc.errors
    return []
