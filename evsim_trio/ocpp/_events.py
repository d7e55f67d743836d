"""What `OcppSession.receive` reports for each frame: frozen event values."""

from __future__ import annotations

from typing import Any

import attrs

from ._errors import OcppError
from ._messages import Call, CallError, Message

__all__ = [
    "BadFrame",
    "ErrorReceived",
    "Event",
    "Ignored",
    "IncomingCall",
    "InvalidResult",
    "ResultReceived",
]


@attrs.frozen
class IncomingCall:
    """A valid CALL from the peer; answer it with `prepare_result` or `prepare_error`."""

    call: Call


@attrs.frozen
class ResultReceived:
    """The (valid) CALLRESULT answering our outstanding `call`."""

    call: Call
    payload: dict[str, Any]


@attrs.frozen
class ErrorReceived:
    """The CALLERROR answering our outstanding `call`."""

    call: Call
    error: CallError


@attrs.frozen
class InvalidResult:
    """An answer to our outstanding `call` that we cannot use.

    A CALLRESULT that failed the response schema, or a result/error frame with the call's id
    that is malformed. `error` says what is wrong; nothing is sent back.
    """

    call: Call
    error: OcppError


@attrs.frozen
class BadFrame:
    """A malformed frame or an invalid incoming CALL.

    Send `reply` (a CALLERROR frame) if it is not None; the connection stays up.
    """

    error: OcppError
    reply: str | None


@attrs.frozen
class Ignored:
    """A well-formed frame that needs nothing: e.g. an answer to no outstanding CALL."""

    message: Message
    reason: str


Event = IncomingCall | ResultReceived | ErrorReceived | InvalidResult | BadFrame | Ignored
