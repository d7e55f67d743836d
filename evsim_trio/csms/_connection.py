"""One station connection of the embedded CSMS: the path and header rules, and its state."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import attrs
import trio
from trio_websocket import WebSocketConnection

from evsim_trio.ocpp import Call, OcppSession

from ._records import StationRecord

__all__ = [
    "SUBPROTOCOL",
    "Connection",
    "PendingCall",
    "StationNotConnected",
    "header",
    "station_id_from_path",
]

SUBPROTOCOL = "ocpp1.6"
"""The only WebSocket subprotocol accepted (OCPP-J 1.6, section 3.1.2)."""


class StationNotConnected(KeyError):
    """The station has no open connection, or lost it while a `call` waited for the answer."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "station not connected"


def station_id_from_path(path: str) -> str:
    """The station id of a request path: its last non-empty segment, URL-decoded ("" if none)."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    segments = [segment for segment in path.split("/") if segment]
    return unquote(segments[-1]) if segments else ""


def header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    """The raw value of header `name` (lower case), or None if the request has none."""
    for key, value in headers:
        if key.lower() == name:
            # latin-1 maps every byte to one character: the value stays raw.
            return value.decode("latin-1")
    return None


@attrs.define(eq=False)
class PendingCall:
    """The CSMS's outstanding CALL on one connection, completed by the reader task."""

    call: Call
    done: trio.Event = attrs.field(factory=trio.Event)
    result: dict[str, Any] | None = None
    error: BaseException | None = None


@attrs.define(eq=False)
class Connection:
    """One accepted WebSocket of a station."""

    record: StationRecord
    ws: WebSocketConnection
    session: OcppSession
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    call_lock: trio.Lock = attrs.field(factory=trio.Lock)
    closed: trio.Event = attrs.field(factory=trio.Event)
    pending: PendingCall | None = None
    nursery: trio.Nursery | None = None
    # Used when the CSMS ends the connection; a shutdown of the whole CSMS is "going away".
    close_code: int = 1001
    close_reason: str = "CSMS shutting down"

    def close(self, code: int, reason: str) -> None:
        """Ask the connection's task to close the socket (it does so in its `finally`)."""
        self.close_code = code
        self.close_reason = reason
        self.scope.cancel()
