"""The TOML text of a station's state, rendered again only where it changed.

tomli_w is pure Python, and a station's state is mostly data that never moves during a run: the
~40 OCPP configuration keys alone were three quarters of the cost of a state write. `StateText`
keeps the text of every section (and of every entry of a table of tables, such as one
connector), keyed by a fingerprint of its data, and calls tomli_w only for the pieces whose
fingerprint moved. The pieces are joined the way tomli_w joins them, so the text is exactly
`tomli_w.dumps(state)` (the tests hold it to that): the file format does not change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import tomli_w

if TYPE_CHECKING:
    from evsim_trio.station._ocpp_config import OcppConfiguration


_SCALARS = frozenset({str, int, float, bool})


def plain(value: Any) -> Any:
    """Drop None values (TOML has no null) and turn int keys into strings, recursively."""
    if type(value) in _SCALARS:  # most values; isinstance(x, Mapping) is slow
        return value
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value if v is not None]
    return value


@attrs.frozen
class Deferred:
    """A section that is costly to build: built only when `fingerprint` differs from the
    fingerprint of the last render (compared with ==, so it must change whenever the data does).
    """

    fingerprint: object
    build: Callable[[], Any]


def configuration_section(configuration: OcppConfiguration) -> Deferred:
    """The configuration keys, fingerprinted by the configuration's change counter (the object
    too: a station given a new configuration renders it)."""
    return Deferred((id(configuration), configuration.version), configuration.to_state)


def resolve(sections: Mapping[str, Any]) -> dict[str, Any]:
    """The plain state (see `plain`) the sections stand for, deferred ones built."""
    state = {}
    for key, value in sections.items():
        data = plain(value.build() if isinstance(value, Deferred) else value)
        if data is not None:
            state[key] = data
    return state


def _is_table_of_tables(value: object) -> bool:
    return (
        isinstance(value, dict) and bool(value) and all(isinstance(v, dict) for v in value.values())
    )


class StateText:
    """Renders a station's state sections to TOML, reusing the text of unchanged pieces.

    A piece is a top-level section, or one entry of a section that is a table of tables
    (`[connectors.1]`, `[atg.2]`): a transaction on one connector leaves the other's text alone.
    A piece's fingerprint is its plain data (a fresh copy, compared with ==, at C speed), or a
    `Deferred`'s own. So a value that changes type but not value (1 to 1.0) keeps its old
    spelling until something else in its piece changes: the file still reads back equal. The
    state's values keep their types (the tests compare the text with tomli_w's byte for byte).
    """

    def __init__(self) -> None:
        self._pieces: dict[tuple[str, str], tuple[object, str]] = {}
        self.rendered = 0
        """Pieces rendered by tomli_w so far (the others were reused)."""

    def render(self, sections: Mapping[str, Any]) -> str:
        """`tomli_w.dumps(resolve(sections))`, with the text of unchanged pieces reused."""
        old = self._pieces
        new: dict[tuple[str, str], tuple[object, str]] = {}
        literals: list[str] = []
        tables: list[str] = []
        for key, value in sections.items():
            if isinstance(value, Deferred):
                fingerprint: object = value.fingerprint
                cached = old.get((key, ""))
                if cached is not None and cached[0] == fingerprint:
                    text = cached[1]
                else:
                    text = self._dump({key: plain(value.build())})
                new[key, ""] = (fingerprint, text)
                (tables if text.startswith("[") else literals).append(text)
                continue
            data = plain(value)
            if data is None:
                continue
            if _is_table_of_tables(data):
                for sub, entry in data.items():
                    cached = old.get((key, sub))
                    if cached is not None and cached[0] == entry:
                        text = cached[1]
                    else:
                        text = self._dump({key: {sub: entry}})
                    new[key, sub] = (entry, text)
                    tables.append(text)
                continue
            cached = old.get((key, ""))
            if cached is not None and cached[0] == data:
                text = cached[1]
            else:
                text = self._dump({key: data})
            new[key, ""] = (data, text)
            # tomli_w writes a table (or array of tables) under a header, anything else as
            # `key = value` lines, which must come before the first header.
            (tables if text.startswith("[") else literals).append(text)
        self._pieces = new
        # As tomli_w: the top-level values, then the tables, one blank line between tables.
        head = "".join(literals)
        if not tables:
            return head
        return (head + "\n" if head else "") + "\n".join(tables)

    def _dump(self, document: dict[str, Any]) -> str:
        self.rendered += 1
        text = _simple_table("", document)
        return tomli_w.dumps(document) if text is None else text


_BARE_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
# What tomli_w escapes in a string (all but tab of the ASCII control characters, quote, backslash).
_ESCAPED_CHARS = frozenset(chr(i) for i in (*range(9), *range(10, 32), 127)) | frozenset('"\\')


def _simple_table(name: str, table: dict[str, Any]) -> str | None:
    """What `tomli_w.dumps` writes for `table` as table `name` ("": the document), for the
    common case of tables of bare keys, booleans, numbers and strings that need no escape; None
    for anything else (arrays, say), which tomli_w renders instead. Several times faster.
    """
    literals: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    for key, value in table.items():
        if not (key and _BARE_KEY_CHARS.issuperset(key)):
            return None
        kind = type(value)
        if kind is dict:
            tables.append((key, value))
        elif kind is bool:
            literals.append(f"{key} = {'true' if value else 'false'}\n")
        elif kind is int or kind is float:
            literals.append(f"{key} = {value!s}\n")
        elif kind is str and _ESCAPED_CHARS.isdisjoint(value):
            literals.append(f'{key} = "{value}"\n')
        else:
            return None
    # tomli_w's layout (its gen_table_chunks): a header unless the table only holds tables,
    # its values, then its tables, a blank line before each.
    chunks: list[str] = []
    if name and (literals or not tables):
        chunks.append(f"[{name}]\n")
    chunks.extend(literals)
    for key, value in tables:
        if chunks:
            chunks.append("\n")
        text = _simple_table(f"{name}.{key}" if name else key, value)
        if text is None:
            return None
        chunks.append(text)
    return "".join(chunks)
