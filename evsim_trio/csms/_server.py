"""The embedded CSMS: a small OCPP 1.6-J central system on trio-websocket.

One task per station connection reads frames, feeds them to that connection's `OcppSession`
and acts on the events: answers CALLs through `handlers`, completes the CSMS's own outstanding
CALL, answers bad frames with the CALLERROR the session prepared. The reader completes the
waiting `call()` itself, so a round trip costs one wakeup of the caller and nothing else.
"""

from __future__ import annotations

import collections
import inspect
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio
import trio_websocket
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest

from evsim_trio.ocpp import (
    BadFrame,
    Call,
    ErrorReceived,
    IncomingCall,
    InternalError,
    InvalidResult,
    NotImplementedOcppError,
    NotSupportedError,
    OcppError,
    OcppSession,
    ResultReceived,
    SchemaValidator,
    error_from_code,
    get_validator,
)
from evsim_trio.station._clock import parse_timestamp
from evsim_trio.station._stats import LatencyHistogram

from ._connection import (
    SUBPROTOCOL,
    Connection,
    PendingCall,
    StationNotConnected,
    header,
    station_id_from_path,
)
from ._handlers import Handler, default_handlers
from ._records import StationRecord, observe_answer, observe_call

__all__ = ["EmbeddedCsms"]

log = logging.getLogger(__name__)

# Transactions whose last MeterValues time is kept (for the gap between two).
MAX_TRACKED_TRANSACTIONS = 100_000

_CLOSE_TIMEOUT = 5.0
"""How long a closing connection waits for the peer's close frame before dropping the stream."""


class EmbeddedCsms:
    """A small, correct OCPP 1.6 central system for demos, benchmarks and tests.

    Stations connect to ``<url>/<station id>`` with subprotocol ``ocpp1.6``. Every CALL is
    validated (when `validate`), answered by `handlers[action]` and recorded in `stations`;
    invalid frames and payloads get a CALLERROR, are recorded in `violations`, and the
    connection stays open. `call` sends a CALL to a station; `wait_until` waits for a condition
    on the recorded state without polling.
    """

    def __init__(
        self, *, heartbeat_interval: int = 60, call_timeout: float = 30.0, validate: bool = True
    ) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.call_timeout = call_timeout
        self.port: int | None = None
        self.stations: dict[str, StationRecord] = {}
        self.received: collections.Counter[str] = collections.Counter()
        # MeterValues of transactions: how old a sample is when it arrives (s), and the time
        # between two of one transaction (s): how well stations keep their sampling schedule.
        self.meter_value_lag = LatencyHistogram()
        self.meter_value_gap = LatencyHistogram()
        self._last_meter_value: dict[tuple[str, int, int], float] = {}
        self.violations: list[tuple[str, str]] = []
        self.accepting = True
        self._validator: SchemaValidator | None = get_validator("1.6") if validate else None
        self._transaction_ids = itertools.count(1)
        self.handlers: dict[str, Handler] = default_handlers(
            lambda: self.heartbeat_interval, lambda: next(self._transaction_ids)
        )
        self._host = "127.0.0.1"
        self._connections: dict[str, Connection] = {}
        self._changed = trio.Event()
        self._waiting = 0

    # -- serving ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``ws://host:port`` once serving; stations append ``/<station id>``."""
        if self.port is None:
            raise RuntimeError("the embedded CSMS is not serving")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"ws://{host}:{self.port}"

    def connected(self) -> list[str]:
        """The ids of the stations connected now."""
        return list(self._connections)

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on `host`:`port` (0: any free port) until cancelled.

        `task_status.started(port)` reports the bound port. Raises OSError, naming the
        address, if it cannot be bound.
        """
        # Bind before opening a nursery, so that the error is a plain OSError, not a group.
        try:
            listeners = await trio.open_tcp_listeners(port, host=host)
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from exc
        if port == 0 and len(listeners) > 1:
            # Each address of the name got its own ephemeral port: keep one, so `url` is right.
            for extra in listeners[1:]:
                await extra.aclose()
            listeners = listeners[:1]
        self._host = host
        self.port = listeners[0].socket.getsockname()[1]
        try:
            async with trio.open_nursery() as nursery:
                server = trio_websocket.WebSocketServer(
                    self.handle_request, listeners, handler_nursery=nursery
                )
                await nursery.start(server.run)
                log.info("embedded CSMS listening on %s", self.url)
                task_status.started(self.port)
        finally:
            self.port = None

    async def handle_request(self, request: WebSocketRequest) -> None:
        """Serve one connection from handshake to close (also usable on an in-memory stream).

        The last segment of the path is the station id (404 if there is none); the client must
        offer subprotocol ``ocpp1.6`` (else 400); `accepting` False answers 503.
        """
        station_id = station_id_from_path(request.path)
        name = station_id or "-"
        try:
            if not self.accepting:
                log.info("%s: connection refused: not accepting connections (503)", name)
                await request.reject(503)
                return
            if not station_id:
                log.info("%s: connection refused: no station id in %r (404)", name, request.path)
                await request.reject(404, body=b"no station id in the path")
                return
            if SUBPROTOCOL not in request.proposed_subprotocols:
                log.info(
                    "%s: connection refused: subprotocols %s do not include %s (400)",
                    name,
                    list(request.proposed_subprotocols),
                    SUBPROTOCOL,
                )
                await request.reject(400, body=b"subprotocol ocpp1.6 required")
                return
            ws = await request.accept(subprotocol=SUBPROTOCOL)
        except ConnectionClosed:
            log.debug("%s: peer left during the handshake", name)
            return
        await self._run_connection(station_id, ws, header(request.headers, b"authorization"))

    async def _run_connection(
        self, station_id: str, ws: WebSocketConnection, authorization: str | None
    ) -> None:
        record = self.stations.get(station_id)
        if record is None:
            record = self.stations[station_id] = StationRecord(station_id)
        record.connections += 1
        record.connected = True
        record.authorization = authorization
        session = OcppSession(validator=self._validator, id_prefix=f"cs{record.connections:x}-")
        conn = Connection(record, ws, session)
        previous = self._connections.get(station_id)
        self._connections[station_id] = conn
        if previous is not None:
            log.info("%s: new connection replaces the previous one", station_id)
            previous.close(1000, "replaced by a new connection")
        log.info("%s: connected from %s", station_id, ws.remote)
        self._notify()
        try:
            with conn.scope:
                async with trio.open_nursery() as nursery:
                    conn.nursery = nursery
                    await self._read_loop(conn)
                    # The socket is gone: answers still being computed have nowhere to go.
                    nursery.cancel_scope.cancel()
        finally:
            if self._connections.get(station_id) is conn:
                del self._connections[station_id]
                record.connected = False
            pending = conn.pending
            if pending is not None and not pending.done.is_set():
                pending.error = StationNotConnected(
                    f"{station_id}: connection closed before {pending.call.action} was answered"
                )
                pending.done.set()
            with trio.move_on_after(_CLOSE_TIMEOUT, shield=True):
                await ws.aclose(conn.close_code, conn.close_reason)
            conn.closed.set()
            log.info("%s: disconnected (%s)", station_id, ws.closed)
            self._notify()

    # -- the per-message path ----------------------------------------------------------------

    async def _read_loop(self, conn: Connection) -> None:
        ws = conn.ws
        receive = conn.session.receive
        station_id = conn.record.station_id
        while True:
            try:
                text = await ws.get_message()
            except ConnectionClosed:
                return
            event = receive(text)
            if isinstance(event, IncomingCall):
                await self._answer(conn, event.call)
            elif isinstance(event, ResultReceived):
                self._complete(conn, event.call, result=event.payload)
            elif isinstance(event, ErrorReceived):
                error = event.error
                self._complete(
                    conn,
                    event.call,
                    error=error_from_code(
                        error.error_code, error.error_description, error.error_details
                    ),
                )
            elif isinstance(event, InvalidResult):
                self._violation(station_id, f"invalid {event.call.action} answer: {event.error}")
                self._complete(conn, event.call, error=event.error)
            elif isinstance(event, BadFrame):
                self._violation(station_id, str(event.error))
                if event.reply is not None:
                    await self._send(conn, event.reply)
            else:
                log.debug("%s: ignored %r: %s", station_id, event.message, event.reason)
            self._notify()

    def _violation(self, station_id: str, description: str) -> None:
        self.violations.append((station_id, description))
        log.warning("%s: protocol violation: %s", station_id, description)

    async def _send(self, conn: Connection, frame: str) -> None:
        try:
            await conn.ws.send_message(frame)
        except ConnectionClosed:
            # The reader sees the close next and ends the connection.
            log.debug("%s: connection closed before a frame could be sent", conn.record.station_id)

    def observe_meter_values(self, station_id: str, payload: dict[str, Any]) -> None:
        """Time a transaction MeterValues: the age of its last sample, the gap since the last."""
        transaction_id = payload.get("transactionId")
        readings = payload.get("meterValue")
        if not isinstance(transaction_id, int) or not isinstance(readings, list) or not readings:
            return
        now = time.time()
        try:
            sampled = parse_timestamp(str(readings[-1]["timestamp"])).timestamp()
        except (KeyError, TypeError, ValueError):
            return  # the schema check reports it
        self.meter_value_lag.observe(max(0.0, now - sampled))
        key = (station_id, int(payload.get("connectorId", 0)), transaction_id)
        last = self._last_meter_value.pop(key, None)  # re-inserted: most recent last
        if last is not None:
            self.meter_value_gap.observe(now - last)
        self._last_meter_value[key] = now
        if len(self._last_meter_value) > MAX_TRACKED_TRANSACTIONS:
            del self._last_meter_value[next(iter(self._last_meter_value))]

    async def _answer(self, conn: Connection, call: Call) -> None:
        record = conn.record
        action = call.action
        observe_call(record, action, call.payload)
        self.received[action] += 1
        if action == "MeterValues":
            self.observe_meter_values(record.station_id, call.payload)
        handler = self.handlers.get(action)
        frame: str
        if handler is None:
            error: OcppError
            if self._validator is not None and self._validator.knows(action):
                error = NotSupportedError(f"the CSMS does not handle {action}")
            else:
                error = NotImplementedOcppError(f"unknown action {action!r}")
            frame = conn.session.prepare_error(call.unique_id, error)
        else:
            try:
                answer = handler(record, call.payload)
            except OcppError as exc:
                frame = conn.session.prepare_error(call.unique_id, exc)
            except Exception:
                log.exception("%s: the %s handler failed", record.station_id, action)
                frame = conn.session.prepare_error(
                    call.unique_id, InternalError(f"the {action} handler failed")
                )
            else:
                if not isinstance(answer, dict) and inspect.isawaitable(answer):
                    # Awaited in its own task: the reader must stay free to complete a `call()`
                    # that the handler may be waiting for.
                    assert conn.nursery is not None
                    conn.nursery.start_soon(self._answer_later, conn, call, answer)
                    return
                frame = self._result_frame(conn, call, answer)
        await self._send(conn, frame)

    async def _answer_later(
        self, conn: Connection, call: Call, answer: Awaitable[dict[str, Any]]
    ) -> None:
        try:
            payload = await answer
        except OcppError as exc:
            frame = conn.session.prepare_error(call.unique_id, exc)
        except Exception:
            log.exception("%s: the %s handler failed", conn.record.station_id, call.action)
            frame = conn.session.prepare_error(
                call.unique_id, InternalError(f"the {call.action} handler failed")
            )
        else:
            frame = self._result_frame(conn, call, payload)
        await self._send(conn, frame)
        self._notify()

    def _result_frame(self, conn: Connection, call: Call, answer: Any) -> str:
        problem: Exception
        if isinstance(answer, dict):
            try:
                frame = conn.session.prepare_result(call.unique_id, answer)
            except (OcppError, TypeError, ValueError) as exc:
                problem = exc
            else:
                observe_answer(conn.record, call.action, call.payload, answer)
                return frame
        else:
            problem = TypeError(f"expected a dict, got {type(answer).__name__}")
        log.error(
            "%s: the %s handler gave an invalid answer: %s",
            conn.record.station_id,
            call.action,
            problem,
        )
        return conn.session.prepare_error(
            call.unique_id, InternalError(f"invalid {call.action} answer: {problem}")
        )

    def _complete(
        self,
        conn: Connection,
        call: Call,
        *,
        result: dict[str, Any] | None = None,
        error: BaseException | None = None,
    ) -> None:
        pending = conn.pending
        if pending is None or pending.call.unique_id != call.unique_id:
            return
        pending.result = result
        pending.error = error
        pending.done.set()

    # -- the API for tests and the CLI ------------------------------------------------------

    async def call(self, station_id: str, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send a CALL to a connected station and return the CALLRESULT payload.

        One outstanding CALL per connection: concurrent calls to a station queue up. Raises the
        `OcppError` of a CALLERROR or of an invalid answer (also of an invalid `payload`),
        `trio.TooSlowError` after `call_timeout` seconds, and `StationNotConnected` (a
        KeyError) if the station is not connected or drops the connection meanwhile.
        """
        conn = self._connections.get(station_id)
        if conn is None:
            raise StationNotConnected(f"{station_id}: not connected")
        async with conn.call_lock:
            if conn.closed.is_set() or conn.scope.cancel_called:
                raise StationNotConnected(f"{station_id}: not connected")
            call, frame = conn.session.prepare_call(action, payload)
            pending = PendingCall(call)
            conn.pending = pending
            try:
                with trio.fail_after(self.call_timeout):
                    try:
                        await conn.ws.send_message(frame)
                    except ConnectionClosed:
                        raise StationNotConnected(f"{station_id}: not connected") from None
                    await pending.done.wait()
            except trio.TooSlowError:
                log.warning(
                    "%s: no answer to %s within %s s", station_id, action, self.call_timeout
                )
                raise
            finally:
                conn.pending = None
                # A no-op once answered; after a timeout a late answer is then Ignored.
                conn.session.forget_call(call.unique_id)
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None
        return pending.result

    async def disconnect(self, station_id: str) -> None:
        """Close the station's socket (it may reconnect) and return once it is closed.

        Raises `StationNotConnected` (a KeyError) if the station is not connected.
        """
        conn = self._connections.get(station_id)
        if conn is None:
            raise StationNotConnected(f"{station_id}: not connected")
        conn.close(1000, "disconnected by the CSMS")
        await conn.closed.wait()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once `predicate()` is true; re-checked after every message and connection
        change. Put a deadline around it (`trio.fail_after`)."""
        while not predicate():
            changed = self._changed
            self._waiting += 1
            try:
                await changed.wait()
            finally:
                self._waiting -= 1

    def _notify(self) -> None:
        # Only wake (and replace the event) when someone waits: the common case costs nothing.
        if self._waiting:
            self._changed.set()
            self._changed = trio.Event()
