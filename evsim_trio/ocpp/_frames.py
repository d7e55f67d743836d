"""OCPP-J framing: messages to JSON text frames and back (OCPP-J 1.6, sections 4.1 and 4.2).

`decode` turns a malformed frame into a `FrameError` that is also the error to reply with:

====================================================  ============================  ===========
malformed frame                                       error                         unique_id
====================================================  ============================  ===========
not UTF-8, not JSON (also NaN/Infinity, too deep)     FormationViolation            ``"-1"``
JSON but not an array, or an empty array              ProtocolError                 ``"-1"``
message type not an int, or not 2, 3 or 4             ProtocolError                 element 1 if
                                                                                    a valid id,
                                                                                    else ``"-1"``
wrong number of elements for the message type         ProtocolError                 the id if
                                                                                    readable
id not a string, or longer than 36 characters         ProtocolError                 ``"-1"``
CALL action not a string                              ProtocolError                 the id
CALL or CALLRESULT payload not a JSON object          FormationViolation            the id
CALLERROR code or description not a string            ProtocolError                 the id
CALLERROR details not a JSON object                   ProtocolError                 the id
====================================================  ============================  ===========

A valid id is a string of at most 36 characters (section 4.1.4). The JSON codec lives in
`_dumps` / `_loads` below and nowhere else, so that it can be swapped for a faster one.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

from ._errors import FrameFormationViolation, FrameProtocolError
from ._messages import Call, CallError, CallResult, Message

__all__ = ["MAX_ID_LENGTH", "decode", "encode"]

MAX_ID_LENGTH = 36
"""Longest message id allowed by OCPP-J 1.6, section 4.1.4."""


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


# The codec: stdlib json, compact, UTF-8 on the wire (the websocket layer encodes the text).
# Prebuilt encoder/decoder objects keep the C accelerators and avoid per-call setup.
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_loads = json.JSONDecoder(parse_constant=_reject_constant).decode

# Elements per message type (sections 4.2.1 to 4.2.3).
_ARITY = {2: 4, 3: 3, 4: 5}


def encode(message: Message) -> str:
    """Return `message` as a compact JSON text frame.

    Raises TypeError or ValueError if the payload is not JSON-serializable (NaN included).
    """
    frame: list[Any]
    if isinstance(message, Call):
        frame = [2, message.unique_id, message.action, message.payload]
    elif isinstance(message, CallResult):
        frame = [3, message.unique_id, message.payload]
    elif isinstance(message, CallError):
        frame = [
            4,
            message.unique_id,
            message.error_code,
            message.error_description,
            message.error_details,
        ]
    else:
        raise TypeError(f"not an OCPP-J message: {message!r}")
    return _dumps(frame)


def decode(text: str | bytes) -> Message:
    """Parse a text frame (`bytes` must be UTF-8) into a `Call`, `CallResult` or `CallError`.

    Raises a `FrameError` (see the table in the module docstring) for a malformed frame.
    """
    try:
        if not isinstance(text, str):
            text = bytes(text).decode("utf-8")
        frame = _loads(text)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise FrameFormationViolation(f"frame is not UTF-8 JSON: {exc}") from None

    if type(frame) is not list or not frame:
        raise FrameProtocolError("frame is not a non-empty JSON array")
    size = len(frame)
    message_type = frame[0]
    unique_id: Any = frame[1] if size > 1 else None
    id_ok = type(unique_id) is str and len(unique_id) <= MAX_ID_LENGTH
    readable_id: str = unique_id if id_ok else "-1"
    # `message_type in _ARITY` alone would accept 2.0 and True.
    if type(message_type) is not int or message_type not in _ARITY:
        raise FrameProtocolError(
            f"unknown message type {message_type!r}",
            unique_id=readable_id,
        )
    if size != _ARITY[message_type]:
        raise FrameProtocolError(
            f"message type {message_type} needs {_ARITY[message_type]} elements, got {size}",
            unique_id=readable_id,
            message_type=message_type,
        )
    if not id_ok:
        raise FrameProtocolError(
            f"message id must be a string of at most {MAX_ID_LENGTH} characters",
            message_type=message_type,
        )

    if message_type == 2:
        action, payload = frame[2], frame[3]
        if type(action) is not str:
            raise FrameProtocolError(
                "CALL action must be a string", unique_id=readable_id, message_type=2
            )
        if type(payload) is not dict:
            raise FrameFormationViolation(
                "CALL payload must be a JSON object", unique_id=readable_id, message_type=2
            )
        return Call(readable_id, action, payload)

    if message_type == 3:
        payload = frame[2]
        if type(payload) is not dict:
            raise FrameFormationViolation(
                "CALLRESULT payload must be a JSON object", unique_id=readable_id, message_type=3
            )
        return CallResult(readable_id, payload)

    code, description, details = frame[2], frame[3], frame[4]
    if type(code) is not str or type(description) is not str:
        raise FrameProtocolError(
            "CALLERROR code and description must be strings",
            unique_id=readable_id,
            message_type=4,
        )
    if type(details) is not dict:
        raise FrameProtocolError(
            "CALLERROR details must be a JSON object", unique_id=readable_id, message_type=4
        )
    return CallError(readable_id, code, description, details)
