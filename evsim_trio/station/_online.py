"""The link's life: connect with backoff, boot, heartbeat, pings, queue sender (1.6 §4.2, §4.6).

A mixin of `Station`: the attributes annotated below are the station's.
"""

from __future__ import annotations

import base64
import enum
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from evsim_trio.ocpp import OcppError, SchemaValidator
from evsim_trio.station._backoff import reconnect_delay
from evsim_trio.station._link import (
    OCPP16_SUBPROTOCOL,
    TRANSPORT_ERRORS,
    CallTimeout,
    Connect,
    Connection,
    Headers,
    NotConnected,
    Payload,
)

if TYPE_CHECKING:
    import random

    from evsim_trio.config import StationTemplate
    from evsim_trio.ocpp import Call
    from evsim_trio.station._connector import Connector
    from evsim_trio.station._identity import StationIdentity
    from evsim_trio.station._ocpp_config import OcppConfiguration

log = logging.getLogger(__name__)

# Boot retry wait when the CSMS gives no usable interval, or the BootNotification failed.
DEFAULT_BOOT_RETRY = 30.0


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


class RegistrationFailed(Exception):
    """BootNotification was not Accepted within `registration_max_retries`."""


def _describe(group: BaseExceptionGroup[Any]) -> str:
    return "; ".join(repr(exc) for exc in group.exceptions)


class OnlineMixin:
    """Connect, boot, heartbeat, ping, drain the queue; reconnect with backoff on a drop."""

    label: str
    station_id: str
    identity: StationIdentity
    template: StationTemplate
    configuration: OcppConfiguration
    connectors: dict[int, Connector]
    rng: random.Random
    supervision_url: str
    firmware_version: str
    validator: SchemaValidator | None
    state: StationState
    ws_state: WsState
    registration: str | None
    boot_response: Payload | None
    _connect: Connect
    _connection: Connection | None
    _boot_count: int
    _accepted_at: float | None
    _heartbeat_scope: trio.CancelScope | None
    _ping_scope: trio.CancelScope | None
    _online_nursery: trio.Nursery | None
    _want_open: bool
    _want_changed: trio.Event
    _life_ending: bool

    call: Callable[[str, Payload], Awaitable[Payload]]
    changed: Callable[[], None]
    send_status: Callable[..., Awaitable[None]]
    _handle_incoming: Callable[[Call], Awaitable[Payload]]
    on_accepted: Callable[[], None]
    on_disconnected: Callable[[], None]
    stats: Any

    async def run_sender(self) -> None:
        """Deliver queued transaction messages (implemented by TransactionsMixin)."""
        raise NotImplementedError

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

    async def _run_link(self) -> None:
        """Connect, run online, and on a close we did not ask for reconnect with backoff.

        Returns when the station gives up, or when its life ends (stop, reset).
        """
        template = self.template
        attempt = 0
        max_retries = template.auto_reconnect_max_retries
        while True:
            while not self._want_open:  # closeConnection: stay closed until openConnection
                self.ws_state = WsState.CLOSED
                self.changed()
                await self._want_changed.wait()
            self.ws_state = WsState.CONNECTING
            self.state = StationState.CONNECTING
            self.changed()
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
            if not self._life_ending and self._want_open:
                self.on_disconnected()
            if self._life_ending:
                return  # the close was ours: no reconnect
            if gave_up:
                self.state = StationState.FAILED
                log.error(
                    "%s: BootNotification not accepted after %d attempts; giving up",
                    self.label,
                    self._boot_count,
                )
                self.changed()
                return
            if not self._want_open:
                attempt = 0
                continue
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
                self.changed()
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
            self.changed()
            with trio.move_on_after(delay):
                # openConnection during the wait reconnects at once.
                await self._want_changed.wait()

    async def _connect_and_serve(self) -> None:
        """One connection's life, until the socket closes."""
        async with self._connect(self.url(), [OCPP16_SUBPROTOCOL], self._headers()) as ws:
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
            self.changed()
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
                self.changed()

    async def _boot(self) -> None:
        """BootNotification until Accepted (1.6 §4.2); Pending/Rejected retry after interval."""
        template = self.template
        max_retries = template.registration_max_retries
        failures = 0
        while True:
            response = await self.send_boot_notification()
            status = None if response is None else response["status"]
            interval = 0 if response is None else int(response["interval"])
            if status == "Accepted":
                return
            if status is not None and template.auto_register:
                log.info("%s: boot %s, registered anyway (auto_register)", self.label, status)
                self.registration = "Accepted"
                return
            failures += 1
            if 0 <= max_retries < failures:
                raise RegistrationFailed(self.label)
            wait = interval if interval > 0 else DEFAULT_BOOT_RETRY
            log.info("%s: boot %s; retrying in %s s", self.label, status or "failed", wait)
            await trio.sleep(wait)

    async def send_boot_notification(self) -> Payload | None:
        """One BootNotification; records the answer. None when it failed (CALLERROR, timeout)."""
        self._boot_count += 1
        self.stats.boot_attempts += 1
        try:
            response = await self.call("BootNotification", self._boot_payload())
        except (CallTimeout, OcppError) as exc:
            log.warning("%s: BootNotification failed: %s", self.label, exc)
            return None
        self.boot_response = response
        self.registration = response["status"]
        interval = int(response["interval"])
        if response["status"] == "Accepted" and interval > 0:
            self.configuration.set("HeartbeatInterval", str(interval))
        self.changed()
        return response

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
            "firmwareVersion": self.firmware_version,
        }
        payload.update((k, v) for k, v in optional.items() if v)
        return payload

    async def _after_accepted(self, nursery: trio.Nursery, *, first: bool) -> None:
        """On Accepted: StatusNotification per connector, heartbeat, pings, queued messages.

        After a reconnect only connectors whose status changed while offline are notified.
        """
        self.state = StationState.BOOTED
        self._accepted_at = trio.current_time()
        self.changed()
        log.info("%s: %s", self.label, "boot accepted" if first else "reconnected")
        for connector in self.connectors.values():
            if first or connector.status != connector.notified_status:
                await self.send_status(connector.connector_id, connector.status)
        # A random phase in the second half of the first interval: a fleet that booted
        # together does not heartbeat in one burst for ever after.
        interval = self.configuration.get_int("HeartbeatInterval", 0)
        phase = interval * self.rng.uniform(0.5, 1.0)
        self._heartbeat_scope = await nursery.start(self._run_heartbeat, phase)
        self._ping_scope = await nursery.start(self._run_ping)
        nursery.start_soon(self.run_sender)
        self.on_accepted()

    async def _run_heartbeat(
        self,
        first_delay: float | None = None,
        *,
        task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Heartbeat every HeartbeatInterval seconds (0 disables); restartable via its scope.

        `first_delay` (default: the interval) is the wait before the first one.
        """
        with trio.CancelScope() as scope:
            task_status.started(scope)
            interval = self.configuration.get_int("HeartbeatInterval", 0)
            if interval <= 0:
                return
            delay = interval if first_delay is None else first_delay
            while True:
                await trio.sleep(delay)
                delay = interval
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

    async def _run_ping(
        self, *, task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """WebSocket ping every WebSocketPingInterval seconds; no pong in time closes the link."""
        with trio.CancelScope() as outer:
            task_status.started(outer)
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
