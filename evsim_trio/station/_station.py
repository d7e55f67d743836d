"""One simulated charging station: a supervised nursery of tasks (DESIGN.md, Station)."""

from __future__ import annotations

import base64
import enum
import functools
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs
import trio

from evsim_trio.ocpp import (
    Call,
    NotImplementedOcppError,
    NotSupportedError,
    OcppError,
    SecurityError,
    get_validator,
)
from evsim_trio.station._backoff import reconnect_delay
from evsim_trio.station._handlers import REGISTRY
from evsim_trio.station._identity import StationIdentity, station_rng
from evsim_trio.station._link import (
    OCPP16_SUBPROTOCOL,
    TRANSPORT_ERRORS,
    CallTimeout,
    Connect,
    Connection,
    Headers,
    IncomingHandler,
    NotConnected,
    Payload,
    default_connect,
)
from evsim_trio.station._ocpp_config import ConfigurationKey, OcppConfiguration

if TYPE_CHECKING:
    from evsim_trio.config import StationTemplate

log = logging.getLogger(__name__)

# Boot retry wait when the CSMS gives no usable interval, or the BootNotification failed.
DEFAULT_BOOT_RETRY = 30.0
# Bound on the close handshake when a station is stopped.
CLOSE_GRACE = 1.0


class StationState(enum.Enum):
    """Coarse life state of a station, for the status line and statistics."""

    STOPPED = "stopped"
    CONNECTING = "connecting"
    BOOTED = "booted"
    FAILED = "failed"


class WsState(enum.IntEnum):
    """WebSocket readyState numbering, as existing UI clients read it."""

    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


def ocpp_timestamp() -> str:
    """Now as an OCPP timestamp: UTC, millisecond precision, `Z` suffix."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@attrs.frozen
class StationSpec:
    """Everything needed to build a station, computed by the simulator from the site config."""

    identity: StationIdentity
    template: StationTemplate
    supervision_url: str
    seed: int
    connector_ids: tuple[int, ...]
    auto_start: bool = True


@attrs.define
class ConnectorState:
    """Per-connector status as last notified to the CSMS."""

    connector_id: int
    boot_status: str
    status: str
    error_code: str = "NoError"
    notified_status: str | None = None


@attrs.define
class StationStatistics:
    """Counters of one station's link; cheap integer bumps on the hot path."""

    calls_sent: int = 0
    call_errors: int = 0
    call_timeouts: int = 0
    connects: int = 0
    connect_failures: int = 0
    boot_attempts: int = 0


class RegistrationFailed(Exception):
    """BootNotification was not Accepted within `registration_max_retries`."""


class Station:
    """A charging station: the link to the CSMS, boot, heartbeat, connectors, handlers."""

    def __init__(self, spec: StationSpec, *, connect: Connect | None = None) -> None:
        self.spec = spec
        self.identity = spec.identity
        self.template = template = spec.template
        self.station_id = spec.identity.station_id
        self.hash_id = spec.identity.hash_id
        self.rng = station_rng(spec.seed, self.station_id)
        self.supervision_url = spec.supervision_url
        self._connect = connect or default_connect()
        self.validator = get_validator("1.6") if template.payload_schema_validation else None
        self.configuration = OcppConfiguration(
            ConfigurationKey(c.key, c.value, c.readonly, c.visible, c.reboot)
            for c in template.configuration
        )
        self.connectors = self._build_connectors()
        self.handlers: dict[str, IncomingHandler] = {
            action: functools.partial(handler, self) for action, handler in REGISTRY.items()
        }
        self.state = StationState.STOPPED
        self.ws_state = WsState.CLOSED
        self.started = False
        self.registration: str | None = None
        self.boot_response: Payload | None = None
        self.stats = StationStatistics()
        self._connection: Connection | None = None
        self._boot_count = 0
        self._accepted_at: float | None = None
        self._stop_requested = trio.Event()
        self._heartbeat_scope: trio.CancelScope | None = None
        self._online_nursery: trio.Nursery | None = None
        self.on_change: Callable[[Station], None] | None = None

    # -- construction helpers -------------------------------------------------------------
    def _build_connectors(self) -> dict[int, ConnectorState]:
        templates = self.template.connectors
        ids = list(self.spec.connector_ids)
        if self.template.use_connector_id0 and 0 in templates:
            ids.insert(0, 0)
        connectors: dict[int, ConnectorState] = {}
        for cid in ids:
            tpl = templates.get(cid)
            boot_status = tpl.boot_status if tpl is not None else "Available"
            connectors[cid] = ConnectorState(cid, boot_status, boot_status)
        return connectors

    @property
    def label(self) -> str:
        """The station id, as every log line starts."""
        return self.station_id

    def url(self) -> str:
        """The WebSocket URL: supervision URL + '/' + station id (OCPP-J 1.6 §3.1.1)."""
        return f"{self.supervision_url.rstrip('/')}/{self.station_id}"

    def _headers(self) -> Headers:
        user = self.template.supervision_user
        password = self.template.supervision_password
        if not user and not password:
            return []
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        return [(b"Authorization", f"Basic {token}".encode("ascii"))]

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self)

    # -- public control ---------------------------------------------------------------
    async def run(self) -> None:
        """Run the station until `stop()` or until it gives up; never raises on station errors.

        A crash of one of its tasks is logged with the station id and leaves the station
        `failed`; it never takes other stations down.
        """
        self.started = True
        self.state = StationState.CONNECTING
        self._changed()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_stop, nursery.cancel_scope)
                await self._run_link()
                nursery.cancel_scope.cancel()
        except Exception:
            log.exception("%s: station crashed", self.label)
            self.state = StationState.FAILED
        finally:
            self.started = False
            self.ws_state = WsState.CLOSED
            if self.state is not StationState.FAILED:
                self.state = StationState.STOPPED
            self._changed()

    def stop(self) -> None:
        """Ask the station to close its socket (close frame 1001) and end `run()`."""
        self._stop_requested.set()

    async def call(self, action: str, payload: Payload) -> Payload:
        """Send a station-initiated CALL on the current connection and return the answer."""
        connection = self._connection
        if connection is None:
            raise NotConnected(f"{self.label}: not connected")
        self.stats.calls_sent += 1
        try:
            return await connection.call(action, payload)
        except CallTimeout:
            self.stats.call_timeouts += 1
            raise
        except OcppError:
            self.stats.call_errors += 1
            raise

    # -- the supervisor's tasks ----------------------------------------------------------
    async def _watch_stop(self, scope: trio.CancelScope) -> None:
        await self._stop_requested.wait()
        connection = self._connection
        if connection is not None:
            self.ws_state = WsState.CLOSING
            with trio.move_on_after(CLOSE_GRACE):
                await connection.ws.aclose(1001, "station stopped")
        scope.cancel()

    async def _run_link(self) -> None:
        """Connect, run online, and on a close we did not ask for reconnect with backoff."""
        template = self.template
        attempt = 0
        max_retries = template.auto_reconnect_max_retries
        while True:
            self.ws_state = WsState.CONNECTING
            self.state = StationState.CONNECTING
            self._changed()
            self._accepted_at = None
            gave_up = False
            try:
                await self._connect_and_serve()
            except* TRANSPORT_ERRORS as group:
                self.stats.connect_failures += 1
                log.info("%s: connection lost: %s", self.label, _describe(group))
            except* RegistrationFailed:
                gave_up = True
            self.ws_state = WsState.CLOSED
            if self._stop_requested.is_set():
                return  # the close was ours: no reconnect
            if gave_up:
                self.state = StationState.FAILED
                log.error(
                    "%s: BootNotification not accepted after %d attempts; giving up",
                    self.label,
                    self._boot_count,
                )
                self._changed()
                return
            # A connection that stayed up, accepted, at least as long as the longest backoff
            # delay was healthy: the next reconnect starts from the base delay again.
            accepted_at = self._accepted_at
            if accepted_at is not None and (
                trio.current_time() - accepted_at >= template.reconnect_max_delay
            ):
                attempt = 0
            if 0 <= max_retries <= attempt:
                self.state = StationState.FAILED
                log.error("%s: giving up after %d reconnect attempts", self.label, attempt)
                self._changed()
                return
            delay = reconnect_delay(
                attempt,
                base=template.reconnect_base_delay,
                cap=template.reconnect_max_delay,
                exponential=template.reconnect_exponential_delay,
                rng=self.rng,
            )
            attempt += 1
            log.info("%s: reconnecting in %.1f s (attempt %d)", self.label, delay, attempt)
            self.state = StationState.CONNECTING
            self._changed()
            await trio.sleep(delay)

    async def _connect_and_serve(self) -> None:
        """One connection's life, until the socket closes."""
        url = self.url()
        async with self._connect(url, [OCPP16_SUBPROTOCOL], self._headers()) as ws:
            if ws.subprotocol != OCPP16_SUBPROTOCOL:
                log.warning(
                    "%s: CSMS did not agree on subprotocol %s (got %r)",
                    self.label,
                    OCPP16_SUBPROTOCOL,
                    ws.subprotocol,
                )
                if self.template.ocpp_strict_compliance:
                    await ws.aclose(1002, "subprotocol ocpp1.6 required")
                    raise NotConnected(f"{self.label}: no {OCPP16_SUBPROTOCOL} subprotocol")
            self.stats.connects += 1
            connection = Connection(
                ws,
                label=self.label,
                validator=self.validator,
                id_prefix=f"{self.rng.getrandbits(32):08x}-",
                call_timeout=self.template.call_timeout,
                handle_incoming=self._handle_incoming,
            )
            self._connection = connection
            self.ws_state = WsState.OPEN
            self._changed()
            try:
                async with trio.open_nursery() as nursery:
                    self._online_nursery = nursery
                    nursery.start_soon(connection.run_reader)
                    # BootNotification after each (re)boot (1.6 §4.2), not after each reconnect:
                    # a station that was Accepted resumes without booting again.
                    first = self.registration != "Accepted"
                    if first:
                        await self._boot()
                    await self._after_accepted(nursery, first=first)
            finally:
                self._online_nursery = None
                self._heartbeat_scope = None
                self._connection = None

    async def _boot(self) -> None:
        """BootNotification until Accepted (1.6 §4.2); Pending/Rejected retry after interval."""
        template = self.template
        max_retries = template.registration_max_retries
        failures = 0
        while True:
            self._boot_count += 1
            self.stats.boot_attempts += 1
            interval = 0
            status: str | None = None
            try:
                response = await self.call("BootNotification", self._boot_payload())
            except (CallTimeout, OcppError) as exc:
                log.warning("%s: BootNotification failed: %s", self.label, exc)
            else:
                status = response["status"]
                interval = response["interval"]
                self.boot_response = response
                self.registration = status
                self._changed()
            if status == "Accepted" or (status is not None and template.auto_register):
                if status != "Accepted":
                    log.info("%s: boot %s, registered anyway (auto_register)", self.label, status)
                    self.registration = "Accepted"
                if interval > 0:
                    self.configuration.set("HeartbeatInterval", str(interval))
                return
            failures += 1
            if 0 <= max_retries < failures:
                raise RegistrationFailed(self.label)
            wait = interval if interval > 0 else DEFAULT_BOOT_RETRY
            log.info("%s: boot %s; retrying in %s s", self.label, status or "failed", wait)
            await trio.sleep(wait)

    def _boot_payload(self) -> Payload:
        template = self.template
        identity = self.identity
        payload: Payload = {
            "chargePointVendor": template.charge_point_vendor,
            "chargePointModel": template.charge_point_model,
        }
        optional = {
            "chargePointSerialNumber": identity.charge_point_serial_number,
            "chargeBoxSerialNumber": identity.charge_box_serial_number,
            "firmwareVersion": template.firmware_version,
        }
        payload.update((k, v) for k, v in optional.items() if v)
        return payload

    async def _after_accepted(self, nursery: trio.Nursery, *, first: bool) -> None:
        """On Accepted: StatusNotification per connector, then heartbeat and pings.

        After a reconnect only connectors whose status changed while offline are notified.
        """
        self.state = StationState.BOOTED
        self._accepted_at = trio.current_time()
        self._changed()
        log.info("%s: %s", self.label, "boot accepted" if first else "reconnected")
        for connector in self.connectors.values():
            if first:
                await self.send_status(connector.connector_id, connector.boot_status)
            elif connector.status != connector.notified_status:
                await self.send_status(connector.connector_id, connector.status)
        self._heartbeat_scope = await nursery.start(self._run_heartbeat)
        nursery.start_soon(self._run_ping)

    async def send_status(
        self, connector_id: int, status: str, error_code: str = "NoError"
    ) -> None:
        """Set a connector's status and send StatusNotification (OCPP 1.6 §4.9)."""
        connector = self.connectors[connector_id]
        connector.status = status
        connector.error_code = error_code
        self._changed()
        payload = {
            "connectorId": connector_id,
            "errorCode": error_code,
            "status": status,
            "timestamp": ocpp_timestamp(),
        }
        try:
            await self.call("StatusNotification", payload)
            connector.notified_status = status
        except (CallTimeout, OcppError) as exc:
            log.warning("%s: StatusNotification failed: %s", self.label, exc)

    async def _run_heartbeat(
        self, *, task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Heartbeat every HeartbeatInterval seconds (0 disables); restartable via its scope."""
        with trio.CancelScope() as scope:
            task_status.started(scope)
            interval = self.configuration.get_int("HeartbeatInterval", 0)
            if interval <= 0:
                return
            while True:
                await trio.sleep(interval)
                try:
                    await self.call("Heartbeat", {})
                except (CallTimeout, OcppError) as exc:
                    log.warning("%s: Heartbeat failed: %s", self.label, exc)

    async def restart_heartbeat(self) -> None:
        """Restart the heartbeat loop, e.g. after HeartbeatInterval changed."""
        nursery = self._online_nursery
        if nursery is None or self.state is not StationState.BOOTED:
            return
        if self._heartbeat_scope is not None:
            self._heartbeat_scope.cancel()
        self._heartbeat_scope = await nursery.start(self._run_heartbeat)

    async def _run_ping(self) -> None:
        """WebSocket ping every WebSocketPingInterval seconds; no pong in time closes the link."""
        interval = self.configuration.get_int("WebSocketPingInterval", 0)
        connection = self._connection
        if interval <= 0 or connection is None:
            return
        while True:
            await trio.sleep(interval)
            with trio.move_on_after(interval) as scope:
                await connection.ws.ping()
            if scope.cancelled_caught:
                log.warning("%s: no pong within %d s; closing", self.label, interval)
                await connection.ws.aclose(1011, "no pong")
                return

    # -- CSMS-initiated requests -----------------------------------------------------------
    async def _handle_incoming(self, call: Call) -> Payload:
        if self.registration == "Rejected":
            # While Rejected the station does not take part in OCPP (1.6 §4.2.1).
            raise SecurityError("BootNotification was Rejected")
        handler = self.handlers.get(call.action)
        if handler is None:
            raise NotImplementedOcppError(f"{call.action} is not implemented by this station")
        if not _supported(self.template.commands_support.incoming_commands, call.action):
            raise NotSupportedError(f"{call.action} is disabled by commands_support")
        return await handler(call)


def _supported(support: Mapping[str, bool], action: str) -> bool:
    """commands_support semantics of the reference: an empty table allows everything."""
    if not support:
        return True
    return support.get(action, False)


def _describe(group: BaseExceptionGroup[Any]) -> str:
    return "; ".join(repr(exc) for exc in group.exceptions)
