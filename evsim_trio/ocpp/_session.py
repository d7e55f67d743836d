"""One end of an OCPP-J connection as a sans-I/O state machine: text in, events out, text out.

The rules (OCPP-J 1.6):

- section 4.1.1, Synchronicity: at most one outstanding CALL in each direction. `prepare_call`
  raises `CallInProgress` while `outgoing` is set; a CALL received while `incoming` is
  unanswered is refused with a ProtocolError CALLERROR.
- section 4.1.4, message ids: ``id_prefix`` + a hexadecimal counter, unique per session (across
  reconnections too) and at most 36 characters.
- section 4.2.3, CALLERROR: a malformed frame or an invalid incoming CALL is answered with one
  (`BadFrame.reply`). A malformed CALLRESULT or CALLERROR is never answered with a CALLERROR,
  which could start an error ping-pong between two peers; if its id is the one of our
  outstanding CALL, the call completes as `InvalidResult`.
- payloads are validated against the schemas in both directions when a validator is given.

Nothing here blocks or logs: the caller feeds `receive` with each text frame and sends what the
`prepare_*` methods return.
"""

from __future__ import annotations

from typing import Any

from ._errors import FrameError, OcppError, ProtocolError
from ._events import (
    BadFrame,
    ErrorReceived,
    Event,
    Ignored,
    IncomingCall,
    InvalidResult,
    ResultReceived,
)
from ._frames import decode, encode
from ._messages import Call, CallResult
from ._schemas import SchemaValidator

__all__ = ["MAX_ID_PREFIX_LENGTH", "CallInProgress", "OcppSession"]

MAX_ID_PREFIX_LENGTH = 24
"""Longest `id_prefix`: leaves 12 hex digits (2.8e14 calls) within the 36-character limit."""

_NOT_OUTSTANDING = "answer to no outstanding CALL"


class CallInProgress(Exception):
    """`prepare_call` while our previous CALL is still unanswered (OCPP-J 1.6, section 4.1.1)."""


class OcppSession:
    """The OCPP-J state of one connection, for either a station or a CSMS.

    `outgoing` is our outstanding CALL, `incoming` the peer's CALL that we have not answered
    yet. `validator` None disables schema validation (and lets actions unknown to the schemas
    through). Message ids are ``f"{id_prefix}{counter:x}"``; give sessions that must not share
    ids prefixes that end with a character that is not a hex digit (``"cs1-"``).
    """

    __slots__ = ("_counter", "_prefix", "_validator", "incoming", "outgoing")

    def __init__(self, *, validator: SchemaValidator | None, id_prefix: str = "") -> None:
        if len(id_prefix) > MAX_ID_PREFIX_LENGTH:
            raise ValueError(
                f"id_prefix {id_prefix!r} is longer than {MAX_ID_PREFIX_LENGTH} characters"
            )
        self._validator = validator
        self._prefix = id_prefix
        self._counter = 0
        self.outgoing: Call | None = None
        self.incoming: Call | None = None

    def prepare_call(self, action: str, payload: dict[str, Any]) -> tuple[Call, str]:
        """Make our next CALL the outstanding one; return it and its frame to send.

        Raises `CallInProgress` if a CALL is outstanding, and the `OcppError` of the request
        schema (NotImplemented for an unknown action) if `payload` is invalid.
        """
        if self.outgoing is not None:
            raise CallInProgress(
                f"cannot send {action}: {self.outgoing.action} "
                f"({self.outgoing.unique_id}) is still unanswered"
            )
        if self._validator is not None:
            self._validator.validate_request(action, payload)
        self._counter += 1
        call = Call(f"{self._prefix}{self._counter:x}", action, payload)
        text = encode(call)
        self.outgoing = call
        return call, text

    def receive(self, text: str | bytes) -> Event:
        """Digest one text frame from the peer and say what it was."""
        try:
            message = decode(text)
        except FrameError as exc:
            return self._bad_frame(exc)

        if isinstance(message, Call):
            return self._receive_call(message)

        call = self.outgoing
        if call is None or message.unique_id != call.unique_id:
            return Ignored(message, _NOT_OUTSTANDING)
        self.outgoing = None
        if isinstance(message, CallResult):
            if self._validator is not None:
                try:
                    self._validator.validate_response(call.action, message.payload)
                except OcppError as exc:
                    return InvalidResult(call, exc)
            return ResultReceived(call, message.payload)
        return ErrorReceived(call, message)

    def _receive_call(self, call: Call) -> Event:
        if self.incoming is not None:
            error: OcppError = ProtocolError(
                f"CALL {call.unique_id} received while CALL {self.incoming.unique_id} "
                "is unanswered: one outstanding CALL per direction"
            )
            return BadFrame(error, encode(error.to_call_error(call.unique_id)))
        if self._validator is not None:
            try:
                self._validator.validate_request(call.action, call.payload)
            except OcppError as exc:
                return BadFrame(exc, encode(exc.to_call_error(call.unique_id)))
        self.incoming = call
        return IncomingCall(call)

    def _bad_frame(self, exc: FrameError) -> Event:
        if exc.message_type == 3 or exc.message_type == 4:
            call = self.outgoing
            if call is not None and exc.unique_id == call.unique_id:
                self.outgoing = None
                return InvalidResult(call, exc)
            return BadFrame(exc, None)
        return BadFrame(exc, encode(exc.to_call_error(exc.unique_id)))

    def prepare_result(self, unique_id: str, payload: dict[str, Any]) -> str:
        """Answer the incoming CALL `unique_id` with `payload`; return the CALLRESULT frame.

        Raises the `OcppError` of the response schema if `payload` is invalid; `incoming` is
        then kept, so that the caller can answer with `prepare_error` (InternalError). Raises
        ValueError if `unique_id` is not the incoming CALL (e.g. after `reset`).
        """
        call = self.incoming
        if call is None or call.unique_id != unique_id:
            raise ValueError(f"no incoming CALL {unique_id!r} to answer")
        if self._validator is not None:
            self._validator.validate_response(call.action, payload)
        text = encode(CallResult(unique_id, payload))
        self.incoming = None
        return text

    def prepare_error(self, unique_id: str, error: OcppError) -> str:
        """Answer the CALL `unique_id` with `error`; return the CALLERROR frame.

        Clears `incoming` if it is that CALL.
        """
        call = self.incoming
        if call is not None and call.unique_id == unique_id:
            self.incoming = None
        return encode(error.to_call_error(unique_id))

    def forget_call(self, unique_id: str) -> None:
        """Give up our outstanding CALL `unique_id` (it timed out); a late answer is Ignored."""
        call = self.outgoing
        if call is not None and call.unique_id == unique_id:
            self.outgoing = None

    def reset(self) -> None:
        """Start over on a new connection: no outstanding CALL either way.

        The id counter goes on, so that ids stay unique for the life of the session.
        """
        self.outgoing = None
        self.incoming = None
