"""The OCPP-J protocol, sans-I/O: framing, message ids, errors and schema validation.

Text frames go in, events come out, text frames go out: `OcppSession` keeps the state of one
connection and never does I/O, so that the station and the embedded CSMS drive it from their
own tasks (and tests drive it with plain calls). Action names per version are in `v16`.
"""

from __future__ import annotations

from . import v16
from ._errors import (
    FormationViolation,
    FrameError,
    GenericError,
    InternalError,
    NotImplementedOcppError,
    NotSupportedError,
    OccurenceConstraintViolation,
    OcppError,
    PropertyConstraintViolation,
    ProtocolError,
    SecurityError,
    TypeConstraintViolation,
    error_from_code,
)
from ._events import (
    BadFrame,
    ErrorReceived,
    Event,
    Ignored,
    IncomingCall,
    InvalidResult,
    ResultReceived,
)
from ._frames import MAX_ID_LENGTH, decode, encode
from ._messages import Call, CallError, CallResult, Message, MessageType
from ._schemas import SchemaValidator, get_validator
from ._session import MAX_ID_PREFIX_LENGTH, CallInProgress, OcppSession

__all__ = [
    "MAX_ID_LENGTH",
    "MAX_ID_PREFIX_LENGTH",
    "BadFrame",
    "Call",
    "CallError",
    "CallInProgress",
    "CallResult",
    "ErrorReceived",
    "Event",
    "FormationViolation",
    "FrameError",
    "GenericError",
    "Ignored",
    "IncomingCall",
    "InternalError",
    "InvalidResult",
    "Message",
    "MessageType",
    "NotImplementedOcppError",
    "NotSupportedError",
    "OccurenceConstraintViolation",
    "OcppError",
    "OcppSession",
    "PropertyConstraintViolation",
    "ProtocolError",
    "ResultReceived",
    "SchemaValidator",
    "SecurityError",
    "TypeConstraintViolation",
    "decode",
    "encode",
    "error_from_code",
    "get_validator",
    "v16",
]
