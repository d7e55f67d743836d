"""attrs validators that raise `Invalid` with the field name and what was expected."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import attrs

from evsim_trio.config._errors import Invalid, show

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]

# RFC 3986 path-segment characters without "%" and "/": a station id is the last URL segment.
_URL_SAFE = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@-]*")


@attrs.frozen
class Range:
    """A number within bounds; `expect` states it ("an integer >= 0")."""

    noun: str
    ge: float | None = None
    gt: float | None = None
    le: float | None = None

    @property
    def expect(self) -> str:
        """What the field expects, for messages."""
        if self.ge is not None and self.le is not None:
            return f"{self.noun} between {_num(self.ge)} and {_num(self.le)}"
        bounds = []
        if self.gt is not None:
            bounds.append(f"> {_num(self.gt)}")
        if self.ge is not None:
            bounds.append(f">= {_num(self.ge)}")
        if self.le is not None:
            bounds.append(f"<= {_num(self.le)}")
        return " ".join([self.noun, *bounds])

    def ok(self, value: float) -> bool:
        """Whether `value` is within bounds."""
        return not (
            (self.ge is not None and value < self.ge)
            or (self.gt is not None and value <= self.gt)
            or (self.le is not None and value > self.le)
            or (isinstance(value, float) and not math.isfinite(value))
        )

    def __call__(self, _inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        """attrs validator protocol; None passes (for optional fields)."""
        if value is None:
            return
        values: Iterable[Any] = value if isinstance(value, tuple) else (value,)
        if isinstance(value, tuple) and not value:
            raise Invalid((attribute.name,), f"expected {self.expect} or a non-empty array")
        for index, item in enumerate(values):
            if not self.ok(item):
                path = (attribute.name, index) if isinstance(value, tuple) else (attribute.name,)
                raise Invalid(path, f"expected {self.expect}, got {show(item)}")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def integer(*, ge: float | None = None, gt: float | None = None, le: float | None = None) -> Range:
    """An integer field's bounds."""
    return Range("an integer", ge=ge, gt=gt, le=le)


def number(*, ge: float | None = None, gt: float | None = None, le: float | None = None) -> Range:
    """A number field's bounds."""
    return Range("a number", ge=ge, gt=gt, le=le)


PORT = integer(ge=0, le=65535)


def ws_urls(_inst: Any, attribute: attrs.Attribute[Any], value: tuple[str, ...] | None) -> None:
    """Every URL is ws:// or wss:// with a host."""
    for index, url in enumerate(value or ()):
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise Invalid(
                (attribute.name, index), f"expected a ws:// or wss:// URL, got {show(url)}"
            )


def url_safe(_inst: Any, attribute: attrs.Attribute[Any], value: str | None) -> None:
    """The text can be part of a station id, i.e. of a URL path segment."""
    if value is not None and not _URL_SAFE.fullmatch(value):
        raise Invalid(
            (attribute.name,),
            f"expected letters, digits and . _ ~ - (no spaces or /), got {show(value)}",
        )


def length(low: int, high: int, what: str) -> Validator:
    """A string of `low` to `high` characters; `what` names the OCPP field it becomes."""

    def check(_inst: Any, attribute: attrs.Attribute[Any], value: str) -> None:
        if not low <= len(value) <= high:
            span = f"at most {high}" if low == 0 else f"{low} to {high}"
            raise Invalid(
                (attribute.name,),
                f"expected a string of {span} characters ({what}), got {show(value)}",
            )

    return check


def non_empty_when_enabled(_inst: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    """A credential that must be set when its section is enabled."""
    if getattr(_inst, "enabled", False) and not value:
        raise Invalid((attribute.name,), "expected a non-empty string when enabled is true")
