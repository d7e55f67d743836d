"""The three OCPP-J message types as frozen values (OCPP-J 1.6, sections 4.1.3 and 4.2)."""

from __future__ import annotations

import enum
from typing import Any

import attrs

__all__ = ["Call", "CallError", "CallResult", "Message", "MessageType"]


class MessageType(enum.IntEnum):
    """The MessageTypeNumber, first element of every frame (OCPP-J 1.6, section 4.1.3)."""

    CALL = 2
    CALLRESULT = 3
    CALLERROR = 4


@attrs.frozen
class Call:
    """A request: ``[2, unique_id, action, payload]`` (OCPP-J 1.6, section 4.2.1)."""

    unique_id: str
    action: str
    payload: dict[str, Any]


@attrs.frozen
class CallResult:
    """A successful answer: ``[3, unique_id, payload]`` (OCPP-J 1.6, section 4.2.2)."""

    unique_id: str
    payload: dict[str, Any]


@attrs.frozen
class CallError:
    """An error answer: ``[4, unique_id, code, description, details]`` (OCPP-J 1.6, 4.2.3)."""

    unique_id: str
    error_code: str
    error_description: str = ""
    error_details: dict[str, Any] = attrs.field(factory=dict)


Message = Call | CallResult | CallError
