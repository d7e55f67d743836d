"""The link: one station's WebSocket to its CSMS, feeding the sans-I/O OCPP-J session.

The reader task completes an outstanding CALL itself (it stores the answer and sets the
waiter's event), so a round trip costs one wakeup of the caller and nothing else.
Incoming CALLs are answered inline by the reader: handlers compute their answer without
waiting for the CSMS, and start any follow-up work in the station's nursery.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol
from urllib.parse import urlsplit

import trio
import trio_websocket

from evsim_trio.ocpp import (
    BadFrame,
    Call,
    ErrorReceived,
    IncomingCall,
    InternalError,
    InvalidResult,
    OcppError,
    OcppSession,
    ResultReceived,
    SchemaValidator,
    error_from_code,
)

log = logging.getLogger(__name__)

OCPP16_SUBPROTOCOL = "ocpp1.6"
# Bound on the WebSocket close handshake when a connection ends.
CLOSE_TIMEOUT = 1.0

Payload = dict[str, Any]
Headers = list[tuple[bytes, bytes]]


class WebSocket(Protocol):
    """What the link needs of a WebSocket connection (trio-websocket's connection has it)."""

    @property
    def subprotocol(self) -> str | None: ...

    async def get_message(self) -> str | bytes: ...

    async def send_message(self, message: str | bytes) -> None: ...

    async def ping(self, payload: bytes | None = None) -> None: ...

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None: ...


Connect = Callable[[str, Sequence[str], Headers], AbstractAsyncContextManager[WebSocket]]
"""Opens a WebSocket: (url, subprotocols, extra headers) -> async context manager."""

IncomingHandler = Callable[[Call], Awaitable[Payload]]


class LinkError(Exception):
    """A CALL could not be completed for a reason of the link, not of the CSMS."""


class NotConnected(LinkError):
    """There is no open connection to send on, or it closed while waiting for the answer."""


class CallTimeout(LinkError):
    """The CSMS did not answer a CALL within the timeout."""


# Transport failures that end one connection; the link reconnects after any of them.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    trio_websocket.HandshakeError,
    trio_websocket.ConnectionClosed,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    trio.TooSlowError,
    OSError,
    NotConnected,
)


def default_connect(connect_timeout: float = 30.0) -> Connect:
    """A `Connect` over real sockets: a TCP (or TLS for wss://) stream wrapped by trio-websocket.

    The stream is opened and closed here rather than by `open_websocket_url`, whose client does
    not close its socket when the server ends the connection (trio-websocket 0.12).
    """

    @asynccontextmanager
    async def connect(
        url: str, subprotocols: Sequence[str], headers: Headers
    ) -> AsyncIterator[WebSocket]:
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise NotConnected(f"not a ws:// or wss:// URL: {url!r}")
        secure = parts.scheme == "wss"
        port = parts.port or (443 if secure else 80)
        host_header = parts.hostname if parts.port is None else f"{parts.hostname}:{port}"
        resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        stream: trio.abc.Stream
        with trio.fail_after(connect_timeout):
            if secure:
                stream = await trio.open_ssl_over_tcp_stream(
                    parts.hostname, port, ssl_context=ssl.create_default_context()
                )
            else:
                stream = await trio.open_tcp_stream(parts.hostname, port)
        async with stream, trio.open_nursery() as nursery:
            with trio.fail_after(connect_timeout):
                ws = await trio_websocket.wrap_client_stream(
                    nursery,
                    stream,
                    host_header,
                    resource,
                    subprotocols=list(subprotocols),
                    extra_headers=headers,
                )
            try:
                yield ws
            finally:
                with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
                    await ws.aclose()
                nursery.cancel_scope.cancel()

    return connect


class _Pending:
    """The one outstanding CALL of a connection: filled in by the reader task."""

    __slots__ = ("done", "error", "payload")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.payload: Payload | None = None
        self.error: Exception | None = None


class Connection:
    """One open WebSocket and its OCPP-J session; lives as long as the socket does."""

    def __init__(
        self,
        ws: WebSocket,
        *,
        label: str,
        validator: SchemaValidator | None,
        id_prefix: str,
        call_timeout: float,
        handle_incoming: IncomingHandler,
    ) -> None:
        self.ws = ws
        self.label = label
        self.session = OcppSession(validator=validator, id_prefix=id_prefix)
        self.call_timeout = call_timeout
        self._handle_incoming = handle_incoming
        # One outstanding CALL per direction (OCPP-J 1.6 §4.1.1): callers queue in FIFO order.
        self._call_lock = trio.Lock()
        self._pending: _Pending | None = None
        self.closed = False

    async def call(self, action: str, payload: Payload | Callable[[], Payload]) -> Payload:
        """Send a CALL and return the CALLRESULT payload.

        `payload` may be a function: it is called once the CALL may leave (after the one
        outstanding CALL before it), so that a status reported is the current one.

        Raises the OcppError of a CALLERROR or of an invalid answer, `CallTimeout`, or
        `NotConnected` when the socket closes first.
        """
        async with self._call_lock:
            if self.closed:
                raise NotConnected(f"{self.label}: connection closed")
            if callable(payload):
                payload = payload()
            call, text = self.session.prepare_call(action, payload)
            pending = self._pending = _Pending()
            try:
                try:
                    await self.ws.send_message(text)
                except TRANSPORT_ERRORS as exc:
                    raise NotConnected(f"{self.label}: send failed: {exc!r}") from exc
                with trio.move_on_after(self.call_timeout):
                    await pending.done.wait()
            finally:
                self._pending = None
                if not pending.done.is_set():
                    # Not answered (send failed, timed out, or cancelled): the session must not
                    # keep waiting for it, or the next CALL would be refused.
                    self.session.forget_call(call.unique_id)
            if not pending.done.is_set():
                raise CallTimeout(f"{self.label}: no answer to {action} in {self.call_timeout:g} s")
            if pending.error is not None:
                raise pending.error
            assert pending.payload is not None
            return pending.payload

    async def run_reader(self) -> None:
        """Read frames until the socket closes; answer CALLs, complete our pending CALL."""
        session = self.session
        ws = self.ws
        try:
            while True:
                text = await ws.get_message()
                event = session.receive(text)
                if isinstance(event, ResultReceived):
                    self._complete(event.payload, None)
                elif isinstance(event, IncomingCall):
                    await self._answer(event.call)
                elif isinstance(event, ErrorReceived):
                    err = event.error
                    self._complete(
                        None,
                        error_from_code(err.error_code, err.error_description, err.error_details),
                    )
                elif isinstance(event, InvalidResult):
                    log.warning(
                        "%s: invalid answer to %s: %s", self.label, event.call.action, event.error
                    )
                    self._complete(None, event.error)
                elif isinstance(event, BadFrame):
                    log.warning("%s: bad frame from the CSMS: %s", self.label, event.error)
                    if event.reply is not None:
                        await ws.send_message(event.reply)
                else:
                    log.debug("%s: ignored: %s", self.label, event)
        finally:
            self.closed = True
            pending = self._pending
            if pending is not None and not pending.done.is_set():
                pending.error = NotConnected(f"{self.label}: connection closed while waiting")
                pending.done.set()

    def _complete(self, payload: Payload | None, error: Exception | None) -> None:
        pending = self._pending
        if pending is None or pending.done.is_set():
            return
        pending.payload = payload
        pending.error = error
        pending.done.set()

    async def _answer(self, call: Call) -> None:
        try:
            result = await self._handle_incoming(call)
            reply = self.session.prepare_result(call.unique_id, result)
        except OcppError as exc:
            log.info("%s: %s answered with %s: %s", self.label, call.action, exc.code, exc)
            reply = self.session.prepare_error(call.unique_id, exc)
        except Exception:
            log.exception("%s: handler for %s failed", self.label, call.action)
            reply = self.session.prepare_error(
                call.unique_id, InternalError(f"station failed to handle {call.action}")
            )
        await self.ws.send_message(reply)
