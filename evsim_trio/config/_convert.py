"""The private cattrs converter: strict TOML types, no extra keys, errors that name the key.

cattrs' own hooks are lenient (`int("3")`, `bool("false")`, a string iterated as a list); a config
file deserves the opposite, so every primitive, array and table goes through a strict hook here.
Field-specific hooks and "do not read from the file" flags live in attrs field metadata.
"""

from __future__ import annotations

import collections.abc
import functools
import math
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import attrs
from cattrs.errors import IterableValidationError, IterableValidationNote
from cattrs.gen import make_dict_structure_fn, override
from cattrs.preconf.tomllib import TomllibConverter, make_converter

from evsim_trio.config._checks import Range
from evsim_trio.config._errors import OMIT, Invalid, Mismatch

T = TypeVar("T")
Hook = Callable[[Any, Any], Any]

# attrs field metadata keys
HOOK = "evsim_trio.structure_hook"  # a (value, type) -> value hook for this field only


def _int(value: Any, _: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Mismatch("an integer", value)
    return value


def _float(value: Any, _: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Mismatch("a number", value)
    if not math.isfinite(value):
        raise Mismatch("a finite number", value)
    return float(value)


def _bool(value: Any, _: Any) -> bool:
    if not isinstance(value, bool):
        raise Mismatch("true or false", value)
    return value


def _str(value: Any, _: Any) -> str:
    if not isinstance(value, str):
        raise Mismatch("a string", value)
    return value


def _path(value: Any, _: Any) -> Path:
    if not isinstance(value, str) or not value:
        raise Mismatch("a file path (a non-empty string)", value)
    return Path(value)


def ocpp_text(value: Any, _: Any) -> str:
    """An OCPP configuration or meter value: a string, or a number/boolean written plainly."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    if not isinstance(value, str):
        raise Mismatch("a string", value)
    return value


def string_or_strings(value: Any, _: Any) -> tuple[str, ...]:
    """A string (empty = none) or an array of strings, as the seed's supervisionUrls."""
    if isinstance(value, str):
        return (value,) if value else ()
    return _tuple_of(_str, "a string or an array of strings", value)


def _tuple_of(item: Hook, expected: str, value: Any, item_type: Any = None) -> tuple[Any, ...]:
    if not isinstance(value, list):
        raise Mismatch(expected, value)
    result: list[Any] = []
    errors: list[Exception] = []
    for index, element in enumerate(value):
        try:
            result.append(item(element, item_type))
        except Exception as exc:
            exc.add_note(IterableValidationNote(f"Structuring @ index {index}", index, item_type))
            errors.append(exc)
    if errors:
        raise IterableValidationError("While structuring an array", errors, tuple)
    return tuple(result)


def one_or_many(item: Hook, noun: str) -> Hook:
    """`x` or `[x, ...]` (the seed's `power` and `numberOfConnectors`)."""

    def structure(value: Any, _: Any) -> Any:
        if isinstance(value, list):
            return _tuple_of(item, f"{noun} or an array of them", value)
        try:
            return item(value, None)
        except Mismatch:
            raise Mismatch(f"{noun} or an array of them", value) from None

    return structure


def int_or_ints(value: Any, cl: Any) -> int | tuple[int, ...]:
    """An integer or an array of integers."""
    return typing.cast("int | tuple[int, ...]", _int_or_ints(value, cl))


def number_or_numbers(value: Any, cl: Any) -> float | tuple[float, ...]:
    """A number or an array of numbers."""
    return typing.cast("float | tuple[float, ...]", _number_or_numbers(value, cl))


_int_or_ints = one_or_many(_int, "an integer")
_number_or_numbers = one_or_many(_float, "a number")


def int_or_auto(value: Any, _: Any) -> int | Literal["auto"]:
    """`"auto"` or an integer."""
    if value == "auto":
        return "auto"
    try:
        return _int(value, None)
    except Mismatch:
        raise Mismatch('"auto" or an integer', value) from None


def _literal_hook(cl: Any) -> Hook:
    choices = typing.get_args(cl)
    expected = "one of " + ", ".join(str(c) for c in choices)

    def structure(value: Any, _: Any) -> Any:
        # bool is an int subclass, and True == 1: keep `true` from matching a Literal[1].
        for choice in choices:
            if type(value) is type(choice) and value == choice:
                return choice
        if not isinstance(value, str) and str(value) in choices:
            # `ocpp_version = 1.6`: TOML read a number where a string was meant.
            raise Mismatch(f'{expected} (a string: write "{value}")', value)
        raise Mismatch(expected, value)

    return structure


def _is_literal(cl: Any) -> bool:
    return typing.get_origin(cl) is Literal


def _is_homogeneous_tuple(cl: Any) -> bool:
    args = typing.get_args(cl)
    return typing.get_origin(cl) is tuple and len(args) == 2 and args[1] is Ellipsis


def _is_mapping(cl: Any) -> bool:
    return typing.get_origin(cl) in (dict, collections.abc.Mapping)


def _mapping_key(key: str, key_type: Any) -> Any:
    if key_type is int:
        if not key.isdigit():
            raise Invalid((), "expected an integer key >= 0")
        return int(key)
    return key


class _Converter:
    """Builds the private converter once; `structure(data, cls)` is the only entry point."""

    def __init__(self) -> None:
        conv = make_converter(forbid_extra_keys=True, detailed_validation=True)
        self.conv: TomllibConverter = conv
        for cl, hook in ((int, _int), (float, _float), (bool, _bool), (str, _str), (Path, _path)):
            conv.register_structure_hook(cl, hook)
        conv.register_structure_hook_factory(_is_literal, _literal_hook)
        conv.register_structure_hook_factory(_is_homogeneous_tuple, self._tuple_hook)
        conv.register_structure_hook_factory(_is_mapping, self._mapping_hook)
        conv.register_structure_hook_factory(attrs.has, self._attrs_hook)

    def _tuple_hook(self, cl: Any) -> Hook:
        item_type = typing.get_args(cl)[0]
        item = self.conv.get_structure_hook(item_type)
        return functools.partial(_structure_tuple, item, item_type)

    def _mapping_hook(self, cl: Any) -> Hook:
        key_type, value_type = typing.get_args(cl)
        value_hook = self.conv.get_structure_hook(value_type)

        def structure(value: Any, _: Any) -> dict[Any, Any]:
            if not isinstance(value, dict):
                raise Mismatch("a table", value)
            result: dict[Any, Any] = {}
            errors: list[Exception] = []
            for key, element in value.items():
                try:
                    result[_mapping_key(key, key_type)] = value_hook(element, value_type)
                except Exception as exc:
                    exc.add_note(IterableValidationNote(f"Structuring @ key {key!r}", key, cl))
                    errors.append(exc)
            if errors:
                raise IterableValidationError("While structuring a table", errors, dict)
            return result

        return structure

    def _attrs_hook(self, cl: Any) -> Hook:
        attrs.resolve_types(cl)
        overrides: dict[str, Any] = {}
        for field in attrs.fields(cl):
            if field.metadata.get(OMIT):
                overrides[field.name] = override(omit=True)
                continue
            hook = field.metadata.get(HOOK) or self.conv.get_structure_hook(field.type)
            if isinstance(field.validator, Range) and HOOK not in field.metadata:
                hook = _restating(hook, field.validator)
            overrides[field.name] = override(struct_hook=hook)
        generated = make_dict_structure_fn(
            cl,
            self.conv,
            _cattrs_forbid_extra_keys=True,
            _cattrs_detailed_validation=True,
            **overrides,
        )

        def structure(value: Any, _: Any) -> Any:
            if not isinstance(value, dict):
                raise Mismatch("a table", value)
            return generated(value, cl)

        return structure

    def structure(self, data: Any, cl: type[T]) -> T:
        """Structure TOML data into `cl`; raises cattrs' error groups or `Invalid`."""
        return self.conv.structure(data, cl)


def _structure_tuple(item: Hook, item_type: Any, value: Any, _: Any) -> tuple[Any, ...]:
    return _tuple_of(item, "an array", value, item_type)


def _restating(hook: Hook, check: Range) -> Hook:
    """A wrong type for a bounded field says the bounds too ("an integer >= 0, got "x"")."""

    def structure(value: Any, cl: Any) -> Any:
        try:
            return hook(value, cl)
        except Mismatch:
            raise Mismatch(check.expect, value) from None

    return structure


@functools.cache
def _converter() -> _Converter:
    return _Converter()


def structure(data: Any, cl: type[T]) -> T:
    """Structure `data` (from tomllib) into the attrs class `cl` with the private converter."""
    return _converter().structure(data, cl)
