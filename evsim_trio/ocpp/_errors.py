"""OCPP errors: one exception class per OCPP 1.6 CALLERROR code (OCPP-J 1.6, section 4.2.3).

Each class carries its wire code in `code`; an instance becomes a `CallError` with
`to_call_error`, and a received code becomes an instance with `error_from_code`. `FrameError` is
the mixin for errors found while decoding a frame: the concrete classes raised by `decode` are
both a `FrameError` and the `OcppError` to reply with (`FrameProtocolError` is a `ProtocolError`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from ._messages import CallError

__all__ = [
    "FormationViolation",
    "FrameError",
    "FrameFormationViolation",
    "FrameProtocolError",
    "GenericError",
    "InternalError",
    "NotImplementedOcppError",
    "NotSupportedError",
    "OccurenceConstraintViolation",
    "OcppError",
    "PropertyConstraintViolation",
    "ProtocolError",
    "SecurityError",
    "TypeConstraintViolation",
    "error_from_code",
]


class OcppError(Exception):
    """Base of the OCPP errors; `code` is the CALLERROR ErrorCode sent on the wire."""

    # A bare OcppError still has to serialize to a valid 1.6 code.
    code: ClassVar[str] = "GenericError"

    def __init__(self, description: str = "", details: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.description = description
        self.details: dict[str, Any] = {} if details is None else details

    def __str__(self) -> str:
        return f"{self.code}: {self.description}" if self.description else self.code

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep `details` when the error crosses a process boundary.
        return (type(self), (self.description, self.details))

    def to_call_error(self, unique_id: str) -> CallError:
        """Return the CALLERROR answering the CALL `unique_id` with this error."""
        return CallError(unique_id, self.code, self.description, self.details)


class NotImplementedOcppError(OcppError):
    """Requested Action is not known by the receiver."""

    code = "NotImplemented"


class NotSupportedError(OcppError):
    """Requested Action is recognized but not supported by the receiver."""

    code = "NotSupported"


class InternalError(OcppError):
    """An internal error occurred and the receiver could not process the Action."""

    code = "InternalError"


class ProtocolError(OcppError):
    """Payload for Action is incomplete (also: the frame breaks the RPC framework rules)."""

    code = "ProtocolError"


class SecurityError(OcppError):
    """A security issue prevented the receiver from completing the Action."""

    code = "SecurityError"


class FormationViolation(OcppError):
    """Payload is syntactically incorrect or does not conform to the PDU structure."""

    code = "FormationViolation"


class PropertyConstraintViolation(OcppError):
    """Payload is syntactically correct but a field contains an invalid value."""

    code = "PropertyConstraintViolation"


class OccurenceConstraintViolation(OcppError):
    """Payload is syntactically correct but a field violates occurrence constraints.

    The misspelling is the one of the OCPP 1.6 specification, and therefore of the wire.
    """

    code = "OccurenceConstraintViolation"


class TypeConstraintViolation(OcppError):
    """Payload is syntactically correct but a field violates data type constraints."""

    code = "TypeConstraintViolation"


class GenericError(OcppError):
    """Any other error not covered by the other codes."""

    code = "GenericError"


class FrameError(OcppError):
    """Mixin of the errors raised by `decode` for a malformed frame.

    `unique_id` is the frame's message id if it could be read, else ``"-1"``; `message_type` is
    the frame's MessageTypeNumber if it is a known one, else None; `error` is the `OcppError`
    to reply with (the exception itself, which is also an instance of the code's class).
    """

    def __init__(
        self,
        description: str = "",
        details: dict[str, Any] | None = None,
        unique_id: str = "-1",
        message_type: int | None = None,
    ) -> None:
        super().__init__(description, details)
        self.unique_id = unique_id
        self.message_type = message_type

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.description, self.details, self.unique_id, self.message_type))

    @property
    def error(self) -> OcppError:
        """The error to put in the CALLERROR reply."""
        return self


class FrameProtocolError(FrameError, ProtocolError):
    """A frame that breaks the OCPP-J RPC framework: wrong shape, type, id or arity."""


class FrameFormationViolation(FrameError, FormationViolation):
    """A frame that is not UTF-8 JSON, or whose payload is not a JSON object."""


_BY_CODE: dict[str, type[OcppError]] = {
    cls.code: cls
    for cls in (
        NotImplementedOcppError,
        NotSupportedError,
        InternalError,
        ProtocolError,
        SecurityError,
        FormationViolation,
        PropertyConstraintViolation,
        OccurenceConstraintViolation,
        TypeConstraintViolation,
        GenericError,
    )
}
# Spellings of OCPP 2.0.1 that some 1.6 peers send (the `ocpp` library sends FormatViolation).
_BY_CODE["FormatViolation"] = FormationViolation
_BY_CODE["OccurrenceConstraintViolation"] = OccurenceConstraintViolation


def error_from_code(
    code: str, description: str = "", details: dict[str, Any] | None = None
) -> OcppError:
    """Return the `OcppError` for a received CALLERROR code; an unknown code gives GenericError.

    The OCPP 2.0.1 spellings ``FormatViolation`` and ``OccurrenceConstraintViolation`` map to
    their 1.6 classes.
    """
    return _BY_CODE.get(code, GenericError)(description, details)
