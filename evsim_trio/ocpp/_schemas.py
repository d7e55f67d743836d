"""Payload validation against the official OCPP JSON schemas, with fastjsonschema.

The schemas of version V live in ``data_dir("schemas") / "ocpp" / V``: ``<Action>.json`` for
the request, ``<Action>Response.json`` for the response. A validator is compiled the first time
an (action, kind) is used and kept; the hot path is one dict look-up and one call.

A schema violation becomes the closest CALLERROR code (OCPP-J 1.6, section 4.2.3), chosen by
the JSON-schema keyword that failed:

=====================================================  ===============================
keyword                                                code
=====================================================  ===============================
type                                                   TypeConstraintViolation
required, minItems, maxItems                           OccurenceConstraintViolation
enum, const, minLength, maxLength, minimum, maximum,   PropertyConstraintViolation
pattern, format, multipleOf
additionalProperties and anything else                 FormationViolation
=====================================================  ===============================
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastjsonschema

from .._resources import data_dir
from ._errors import (
    FormationViolation,
    NotImplementedOcppError,
    OccurenceConstraintViolation,
    OcppError,
    PropertyConstraintViolation,
    TypeConstraintViolation,
)

__all__ = ["SchemaValidator", "get_validator"]

_Validate = Callable[[Any], Any]

_ERROR_BY_RULE: dict[str, type[OcppError]] = {
    "type": TypeConstraintViolation,
    "required": OccurenceConstraintViolation,
    "minItems": OccurenceConstraintViolation,
    "maxItems": OccurenceConstraintViolation,
    **dict.fromkeys(
        (
            "enum",
            "const",
            "minLength",
            "maxLength",
            "minimum",
            "maximum",
            "exclusiveMinimum",
            "exclusiveMaximum",
            "pattern",
            "format",
            "multipleOf",
        ),
        PropertyConstraintViolation,
    ),
}


def _to_ocpp_error(exc: fastjsonschema.JsonSchemaValueException) -> OcppError:
    message: str = exc.message
    name: str = exc.name or "data"
    rule: str = exc.rule or ""
    # fastjsonschema's messages start with the path ("data.idTag must ..."); make sure of it.
    description = message if name in message else f"{name}: {message}"
    return _ERROR_BY_RULE.get(rule, FormationViolation)(description)


class SchemaValidator:
    """Validates the payloads of one OCPP version against its JSON schemas.

    Use `get_validator` for the shared instance of a version; `directory` overrides where the
    schemas are read from (tests).
    """

    def __init__(self, version: str, directory: Path | None = None) -> None:
        self.version = version
        self._dir = data_dir("schemas") / "ocpp" / version if directory is None else directory
        if not self._dir.is_dir():
            raise ValueError(f"no OCPP schemas for version {version!r} in {self._dir}")
        stems = {path.stem for path in self._dir.glob("*.json")}
        self._actions = frozenset(
            stem for stem in stems if not stem.endswith("Response") and f"{stem}Response" in stems
        )
        # One dict per kind so that the hot path needs no key tuple.
        self._requests: dict[str, _Validate] = {}
        self._responses: dict[str, _Validate] = {}

    def __repr__(self) -> str:
        return f"SchemaValidator({self.version!r})"

    def knows(self, action: str) -> bool:
        """Whether `action` has a request and a response schema in this version."""
        return action in self._actions

    def actions(self) -> frozenset[str]:
        """All the actions of this version."""
        return self._actions

    def validate_request(self, action: str, payload: dict[str, Any]) -> None:
        """Check a CALL payload of `action`.

        Raises a constraint `OcppError` (see the module docstring) if it is invalid, and
        `NotImplementedOcppError` if the action is not part of this version.
        """
        validate = self._requests.get(action)
        if validate is None:
            validate = self._requests[action] = self._compile(action, "")
        try:
            validate(payload)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise _to_ocpp_error(exc) from None

    def validate_response(self, action: str, payload: dict[str, Any]) -> None:
        """Check the CALLRESULT payload answering a CALL of `action`.

        Raises like `validate_request`.
        """
        validate = self._responses.get(action)
        if validate is None:
            validate = self._responses[action] = self._compile(action, "Response")
        try:
            validate(payload)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise _to_ocpp_error(exc) from None

    def _compile(self, action: str, suffix: str) -> _Validate:
        if action not in self._actions:
            raise NotImplementedOcppError(f"action {action!r} is not part of OCPP {self.version}")
        path = self._dir / f"{action}{suffix}.json"
        schema = json.loads(path.read_text(encoding="utf-8"))
        # use_default=False: validation must never change the payload it checks.
        validate: _Validate = fastjsonschema.compile(schema, use_default=False)
        return validate


_VALIDATORS: dict[str, SchemaValidator] = {}


def get_validator(version: str = "1.6") -> SchemaValidator:
    """Return the shared `SchemaValidator` of OCPP `version` (``"1.6"``).

    Raises ValueError if no schemas are shipped for that version.
    """
    validator = _VALIDATORS.get(version)
    if validator is None:
        validator = _VALIDATORS[version] = SchemaValidator(version)
    return validator
