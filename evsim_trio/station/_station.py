"""One simulated charging station: a supervised nursery of tasks (DESIGN.md, Station)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import trio

from evsim_trio.ocpp import (
    Call,
    InternalError,
    NotImplementedOcppError,
    NotSupportedError,
    OcppError,
    SecurityError,
    get_validator,
    v16,
)
from evsim_trio.station._atg import AtgConnectorStatus, AtgController
from evsim_trio.station._charging_profiles import ProfileStore
from evsim_trio.station._clock import ocpp_timestamp, utc_now
from evsim_trio.station._connector import Connector
from evsim_trio.station._electrical import pick_station_power_w
from evsim_trio.station._handlers import REGISTRY
from evsim_trio.station._identity import StationIdentity, station_rng
from evsim_trio.station._keys import implemented_profiles
from evsim_trio.station._link import (
    CLOSE_TIMEOUT,
    CallTimeout,
    Connect,
    Connection,
    IncomingHandler,
    LinkError,
    NotConnected,
    Payload,
    default_connect,
)
from evsim_trio.station._local_auth import LocalAuthList
from evsim_trio.station._meter_loops import MeterLoopsMixin, StepLimits
from evsim_trio.station._metering import MeterModel
from evsim_trio.station._ocpp_config import OcppConfiguration
from evsim_trio.station._online import OnlineMixin, StationState, WsState
from evsim_trio.station._queue import MessageQueue
from evsim_trio.station._reservations import ReservationStore
from evsim_trio.station._reserving import ReservationsMixin
from evsim_trio.station._state_io import StateMixin
from evsim_trio.station._state_text import StateText
from evsim_trio.station._stats import StationStatistics
from evsim_trio.station._transactions import TransactionsMixin

if TYPE_CHECKING:
    from evsim_trio.config import StationTemplate

log = logging.getLogger(__name__)


@attrs.frozen
class StationSpec:
    """Everything needed to build a station, computed by the simulator from the site config."""

    identity: StationIdentity
    template: StationTemplate
    supervision_url: str
    seed: int
    connector_ids: tuple[int, ...]
    auto_start: bool = True
    id_tags: tuple[str, ...] = ()
    state_path: Path | None = None
    state: Mapping[str, Any] | None = None


class OutgoingDisabled(LinkError):
    """The template's commands_support.outgoing_commands disables this action: not sent."""


# The mixins declare what they use of each other as annotations; mypy reads an annotation in one
# base and the method in a later base as a conflict, but attribute lookup finds the method.
class Station(  # type: ignore[misc]
    ReservationsMixin, TransactionsMixin, MeterLoopsMixin, StateMixin, OnlineMixin
):
    """A charging station: link, boot, heartbeat, connectors, transactions, metering, handlers."""

    def __init__(self, spec: StationSpec, *, connect: Connect | None = None) -> None:
        self.spec = spec
        self.identity = spec.identity
        self.template = template = spec.template
        self.station_id = spec.identity.station_id
        self.label = self.station_id  # every log line starts with it
        self.hash_id = spec.identity.hash_id
        self.index = spec.identity.index
        self.rng = station_rng(spec.seed, self.station_id)
        self.id_tags = spec.id_tags
        self.supervision_url = spec.supervision_url
        self._connect = connect or default_connect()
        self.validator = get_validator("1.6") if template.payload_schema_validation else None
        self.configuration = OcppConfiguration(
            template.configuration,
            number_of_connectors=len(spec.connector_ids),
            supported_profiles=implemented_profiles(
                a for a in REGISTRY if _supported(template.commands_support.incoming_commands, a)
            ),
            number_of_phases=template.phases(),
            label=self.station_id,
        )
        self.configuration.on_change = self._configuration_changed
        if template.supervision_url_ocpp_configuration:
            # The CSMS may move the station with ChangeConfiguration of this vendor key.
            self.configuration.set(template.supervision_url_ocpp_key, spec.supervision_url)
        self.connectors = self._build_connectors()
        # One station power for all connectors, drawn from the station's own stream.
        station_power_w = pick_station_power_w(template, self.rng)
        self.meters = {
            cid: MeterModel(
                template,
                template.connectors.get(cid),
                station_rng(spec.seed, f"{self.station_id}/meter{cid}"),
                station_power_w=station_power_w,
                number_of_connectors=len(spec.connector_ids),
            )
            for cid in self.connectors
            if cid > 0
        }
        self.profiles = ProfileStore()
        self.reservations = ReservationStore()
        # The expiry task of each reservation, by reservationId (this life of the station).
        self._reservation_scopes: dict[int, trio.CancelScope] = {}
        # Energy delivered by this station since it was built (restored registers excluded).
        self._energy_baseline = 0.0
        self.queue = MessageQueue()
        self.atg = AtgController(
            self, template.automatic_transaction_generator, [c for c in self.connectors if c > 0]
        )
        self.tx_ids: dict[int, int | None] = {}
        self.next_local_tx = 0
        self.auth_cache: dict[str, dict[str, Any]] = {}
        self.local_list = LocalAuthList()
        # The running firmware: the template's, until an UpdateFirmware installs another.
        self.firmware_version = template.firmware_version
        self.diagnostics_status = "Idle"
        self.firmware_status = "Idle"
        self.handlers: dict[str, IncomingHandler] = {
            action: functools.partial(handler, self) for action, handler in REGISTRY.items()
        }
        self.state = StationState.STOPPED
        self.ws_state = WsState.CLOSED
        self.started = False
        self.registration: str | None = None
        self.boot_response: Payload | None = None
        self.stats = StationStatistics()
        self.on_change: Callable[[Station], None] | None = None
        self._connection: Connection | None = None
        self._boot_count = 0
        self._accepted_at: float | None = None
        self._heartbeat_scope: trio.CancelScope | None = None
        self._online_nursery: trio.Nursery | None = None
        self._nursery: trio.Nursery | None = None
        self._meter_scopes: dict[int, trio.CancelScope] = {}
        self._meter_last: dict[int, float] = {}
        self._meter_limits: dict[int, StepLimits] = {}
        self._want_open = True
        self._want_changed = trio.Event()
        self._life_end = trio.Event()
        self._life_ending = False
        self._stop_requested = False
        self._reboot: str | None = None
        self._state_changed = trio.Event()
        self._dirty = trio.Event()
        self._soon = False  # a change in _dirty must be written within PERSIST_DEBOUNCE
        self._soon_event = trio.Event()
        self._dirty_since = 0.0  # when _dirty was set
        self._write_lock = trio.Lock()
        self._state_text = StateText()
        self._atg_autostart = True
        self._ping_scope: trio.CancelScope | None = None
        self._aligned_scope: trio.CancelScope | None = None
        if spec.state:
            self.restore(spec.state)
        self._energy_baseline = sum(m.energy_register_wh for m in self.meters.values())

    def _build_connectors(self) -> dict[int, Connector]:
        templates = self.template.connectors
        ids = list(self.spec.connector_ids)
        if self.template.use_connector_id0 and 0 in templates:
            ids.insert(0, 0)
        connectors: dict[int, Connector] = {}
        for cid in ids:
            tpl = templates.get(cid)
            boot_status = tpl.boot_status if tpl is not None else "Available"
            connectors[cid] = Connector(cid, boot_status, boot_status)
        return connectors

    # -- plumbing shared by the mixins -------------------------------------------------------
    def changed(self) -> None:
        """Station data changed: wake waiters and tell the simulator (UI refresh)."""
        self._state_changed.set()
        self._state_changed = trio.Event()
        if self.on_change is not None:
            self.on_change(self)

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Start follow-up work in the station's nursery (ends with the station's life)."""
        if self._nursery is None:
            raise NotConnected(f"{self.label}: station is not running")
        self._nursery.start_soon(fn, *args)

    def energy_delivered_wh(self) -> float:
        """Energy metered on all connectors since this station was built (this run)."""
        return sum(m.energy_register_wh for m in self.meters.values()) - self._energy_baseline

    def is_accepted(self) -> bool:
        """Registered (BootNotification Accepted) in this life of the station."""
        return self.registration == "Accepted"

    def is_online(self) -> bool:
        """Connected and registered: messages can be sent."""
        return self._connection is not None and self.registration == "Accepted"

    async def wait_accepted(self) -> None:
        """Wait until the station is connected and registered."""
        while not self.is_online():
            await self._state_changed.wait()

    async def wait_connector_available(self, connector_id: int) -> None:
        """Wait until a connector is Available."""
        await self.connectors[connector_id].wait_status("Available")

    def on_accepted(self) -> None:
        """Each time the link is up and registered: start the ATG (first time) or resume it."""
        if self._atg_autostart:
            self._atg_autostart = False
            if self.template.automatic_transaction_generator.enable and self.id_tags:
                self.atg.start()
        else:
            self.atg.connection_restored()

    def on_disconnected(self) -> None:
        """The link dropped (not on our request)."""
        self.atg.connection_lost()

    # -- ATG host (see _atg.AtgHost) ----------------------------------------------------------
    def is_connector_available(self, connector_id: int) -> bool:
        """Whether the connector is Available."""
        return self.connectors[connector_id].status == "Available"

    def connector_has_transaction(self, connector_id: int) -> bool:
        """Whether a transaction runs on the connector."""
        return self.connectors[connector_id].transaction is not None

    def atg_changed(self) -> None:
        """ATG counters changed."""
        self.persist_lazily()
        self.changed()

    def extra_state(self) -> dict[str, Any]:
        """The ATG counters, persisted with the station."""
        return {"atg": {str(cid): s.to_state() for cid, s in self.atg.statuses.items()}}

    def restore_extra(self, state: Mapping[str, Any]) -> None:
        """Restore the ATG counters."""
        for key, saved in dict(state.get("atg", {})).items():
            if int(key) in self.atg.statuses:
                self.atg.statuses[int(key)] = AtgConnectorStatus.from_state(saved)

    def _configuration_changed(self, key: str, value: str) -> None:
        """Apply a ChangeConfiguration the station Accepted, at once (OCPP 1.6 §5.3)."""
        template = self.template
        if template.supervision_url_ocpp_configuration and key == template.supervision_url_ocpp_key:
            self.set_supervision_url(value)
        elif key == template.amperage_limitation_ocpp_key:
            self.limits_changed()
        elif key == "HeartbeatInterval" and self._online_nursery is not None:
            self._online_nursery.start_soon(self.restart_heartbeat)
        elif key == "WebSocketPingInterval" and self._online_nursery is not None:
            if self._ping_scope is not None:
                self._ping_scope.cancel()
            self._online_nursery.start_soon(self._start_ping)
        elif key == "MeterValueSampleInterval" and self._nursery is not None:
            self.restart_meter_loops()
        elif key == "ClockAlignedDataInterval" and self._nursery is not None:
            if self._aligned_scope is not None:
                self._aligned_scope.cancel()
            self._nursery.start_soon(self._start_aligned)

    async def _start_ping(self) -> None:
        assert self._online_nursery is not None
        self._ping_scope = await self._online_nursery.start(self._run_ping)

    async def _start_aligned(self) -> None:
        assert self._nursery is not None
        self._aligned_scope = await self._nursery.start(self.run_clock_aligned)

    def limits_changed(self) -> None:
        """A power limit changed: integrate energy up to now under the old limit."""
        for connector_id, connector in self.connectors.items():
            if connector.transaction is not None:
                self.advance_meter(connector_id)

    # -- life -----------------------------------------------------------------------------
    async def run(self) -> None:
        """Run the station until `stop()` or until it gives up; never raises on station errors.

        A Reset ends one life of the station (its nursery) and starts a fresh one after
        `reset_time`. A crash of one of its tasks is logged with the station id and leaves the
        station `failed`; it never takes other stations down.
        """
        self.started = True
        self._stop_requested = False
        # A (re)start is a power cycle: the station registers again (1.6 §4.2).
        self.registration = None
        self.boot_response = None
        self.state = StationState.CONNECTING
        self.changed()
        try:
            while True:
                self._reboot = None
                self._life_ending = False
                self._life_end = trio.Event()
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    nursery.start_soon(self._watch_life_end, nursery.cancel_scope)
                    nursery.start_soon(self.run_persistence)
                    self.resume_transactions()
                    self.resume_reservations()
                    self._aligned_scope = await nursery.start(self.run_clock_aligned)
                    await nursery.start(self.atg.run)
                    self._atg_autostart = True
                    await self._run_link()
                    nursery.cancel_scope.cancel()
                self._nursery = None
                if self._reboot is None or self._stop_requested:
                    break
                log.info(
                    "%s: %s reset: back in %d s", self.label, self._reboot, self.template.reset_time
                )
                self.registration = None
                self.boot_response = None
                self.state = StationState.CONNECTING
                self.changed()
                await trio.sleep(self.template.reset_time)
        except Exception:
            log.exception("%s: station crashed", self.label)
            self.state = StationState.FAILED
        finally:
            self._nursery = None
            self.started = False
            self.ws_state = WsState.CLOSED
            if self.state is not StationState.FAILED:
                self.state = StationState.STOPPED
            self.save_now()
            self.changed()

    def stop(self) -> None:
        """Ask the station to close its socket (close frame 1001) and end `run()`."""
        self._stop_requested = True
        self._life_end.set()

    async def _watch_life_end(self, scope: trio.CancelScope) -> None:
        await self._life_end.wait()
        self._life_ending = True
        connection = self._connection
        if connection is not None:
            self.ws_state = WsState.CLOSING
            code, reason = (1001, "station stopped") if self._reboot is None else (1012, "reset")
            with trio.move_on_after(CLOSE_TIMEOUT):
                await connection.ws.aclose(code, reason)
        scope.cancel()

    async def reset(self, kind: str) -> None:
        """Reset Soft/Hard (1.6 §5.14): stop transactions, close, wait reset_time, boot again."""
        reason = "HardReset" if kind == "Hard" else "SoftReset"
        for connector_id, connector in self.connectors.items():
            if connector.transaction is not None:
                await self.stop_transaction(connector_id, reason)
        if kind != "Hard":
            # A soft reset lets the StopTransactions out first (bounded); a hard one doesn't wait.
            with trio.move_on_after(self.template.call_timeout):
                while len(self.queue) and self.is_online():
                    await self._state_changed.wait()
        self._reboot = kind
        self._life_end.set()

    # -- connection control (UI) --------------------------------------------------------------
    def open_connection(self) -> None:
        """Open the link again after `close_connection()` (no effect when already wanted)."""
        self._want_open = True
        self._want_changed.set()
        self._want_changed = trio.Event()

    def close_connection(self) -> None:
        """Close the link and keep it closed until `open_connection()`."""
        self._want_open = False
        self._want_changed.set()
        self._want_changed = trio.Event()
        connection = self._connection
        if connection is not None and self._nursery is not None:
            self.ws_state = WsState.CLOSING
            self._nursery.start_soon(connection.ws.aclose, 1000, "closed by the simulator UI")

    def set_supervision_url(self, url: str) -> None:
        """Connect to `url` from now on: an open connection is closed and reopened there."""
        self.supervision_url = url
        if self.template.supervision_url_ocpp_configuration:
            self.configuration.set(self.template.supervision_url_ocpp_key, url)
        self.persist()
        connection = self._connection
        if connection is not None and self._nursery is not None:
            # Not a close asked for by the UI: the link reconnects at once, to the new URL.
            self._nursery.start_soon(connection.ws.aclose, 1000, "supervision URL changed")
        self.changed()

    # -- messages ------------------------------------------------------------------------------
    async def call(self, action: str, payload: Payload | Callable[[], Payload]) -> Payload:
        """Send a station-initiated CALL on the current connection and return the answer."""
        connection = self._connection
        if connection is None:
            raise NotConnected(f"{self.label}: not connected")
        if not _supported(self.template.commands_support.outgoing_commands, action):
            raise OutgoingDisabled(f"{self.label}: {action} is disabled by commands_support")
        stats = self.stats
        stats.calls_sent += 1
        stats.sent_by_action[action] += 1
        started = trio.current_time()
        try:
            result = await connection.call(action, payload)
            stats.observe(action, trio.current_time() - started)
            return result
        except CallTimeout:
            stats.call_timeouts += 1
            stats.timeouts_by_action[action] += 1
            raise
        except OcppError as exc:
            stats.call_errors += 1
            stats.errors_by_code[(action, exc.code)] += 1
            raise

    async def send_notification(self, action: str, payload: Payload) -> bool:
        """Send a notification CALL when online; False (and logged) when offline or it failed."""
        if not self.is_online():
            log.info("%s: offline: %s not sent", self.label, action)
            return False
        try:
            await self.call(action, payload)
        except (CallTimeout, OcppError, LinkError) as exc:
            log.warning("%s: %s failed: %s", self.label, action, exc)
            return False
        return True

    async def send_status(
        self, connector_id: int, status: str, error_code: str = "NoError"
    ) -> None:
        """Set a connector's status and send StatusNotification (1.6 §4.9) when online.

        Offline (or before registration) the change is only recorded; it is notified after the
        next Accepted registration.
        """
        connector = self.connectors[connector_id]
        connector.set_status(status, error_code)
        self.changed()
        if not self.is_online():
            return
        payload = {
            "connectorId": connector_id,
            "errorCode": error_code,
            "status": status,
            "timestamp": ocpp_timestamp(),
        }
        try:
            await self.call("StatusNotification", payload)
            connector.notified_status = status
        except (CallTimeout, OcppError, LinkError) as exc:
            log.warning("%s: StatusNotification failed: %s", self.label, exc)

    async def send_triggered(self, requested: str, connector_id: int | None) -> None:
        """Send the message a TriggerMessage asked for (1.6 §5.17)."""
        try:
            if requested == "BootNotification":
                await self.send_boot_notification()
            elif requested == "Heartbeat":
                await self.call("Heartbeat", {})
            elif requested == "StatusNotification":
                ids = [connector_id] if connector_id is not None else list(self.connectors)
                for cid in ids:
                    connector = self.connectors[cid]
                    await self.send_status(cid, connector.status, connector.error_code)
            elif requested == "MeterValues":
                ids = [connector_id] if connector_id else [c for c in self.connectors if c > 0]
                for cid in ids:
                    await self.send_meter_values_now(cid)
            elif requested == "DiagnosticsStatusNotification":
                # The status of when the message leaves, not of when it was asked for.
                await self.call(
                    "DiagnosticsStatusNotification", lambda: {"status": self.diagnostics_status}
                )
            elif requested == "FirmwareStatusNotification":
                await self.call(
                    "FirmwareStatusNotification", lambda: {"status": self.firmware_status}
                )
        except (CallTimeout, OcppError, LinkError) as exc:
            log.warning("%s: triggered %s failed: %s", self.label, requested, exc)

    async def remote_start(
        self, connector_id: int, id_tag: str, profile: dict[str, Any] | None
    ) -> None:
        """The work after RemoteStartTransaction was Accepted (1.6 §5.11)."""
        started = await self.start_transaction(connector_id, id_tag, remote=True)
        tx = self.connectors[connector_id].transaction
        if started and profile is not None and tx is not None:
            self.install_profile(connector_id, profile, tx.transaction_id)

    def install_profile(
        self, connector_id: int, profile: dict[str, Any], transaction_id: int | None
    ) -> str:
        """Install a charging profile within the configured limits; its status (1.6 §5.16)."""
        config = self.configuration
        status = self.profiles.set(
            connector_id,
            profile,
            now=utc_now(),
            transaction_id=transaction_id,
            max_stack_level=config.get_int("ChargeProfileMaxStackLevel", 8),
            allowed_units=tuple(config.get_csl("ChargingScheduleAllowedChargingRateUnit")),
            max_periods=config.get_int("ChargingScheduleMaxPeriods", 24),
            max_installed=config.get_int("MaxChargingProfilesInstalled", 16),
        )
        if status == "Accepted":
            self.limits_changed()
        return status

    # -- CSMS-initiated requests -----------------------------------------------------------
    async def _handle_incoming(self, call: Call) -> Payload:
        self.stats.received_by_action[call.action] += 1
        try:
            return await self._dispatch_incoming(call)
        except OcppError as exc:
            self.stats.answered_errors_by_code[(call.action, exc.code)] += 1
            raise
        except Exception:
            # The link answers it with InternalError.
            self.stats.answered_errors_by_code[(call.action, InternalError.code)] += 1
            raise

    async def _dispatch_incoming(self, call: Call) -> Payload:
        if self.registration == "Rejected":
            # While Rejected the station does not take part in OCPP (1.6 §4.2.1).
            raise SecurityError("BootNotification was Rejected")
        handler = self.handlers.get(call.action)
        if handler is None:
            if call.action in v16.ALL_ACTIONS:
                # A 1.6 action recognized but not supported (OCPP-J 1.6 §4.2.3).
                raise NotSupportedError(f"{call.action} is not supported by this station")
            raise NotImplementedOcppError(f"{call.action} is not implemented by this station")
        if not _supported(self.template.commands_support.incoming_commands, call.action):
            raise NotSupportedError(f"{call.action} is disabled by commands_support")
        return await handler(call)


def _supported(support: Mapping[str, bool], action: str) -> bool:
    """commands_support semantics of the reference: an empty table allows everything."""
    if not support:
        return True
    return support.get(action, False)
