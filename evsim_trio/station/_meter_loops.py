"""Metering loops: sampled values during transactions, clock-aligned values (OCPP 1.6 §3.16, §4.7).

A mixin of `Station`. Energy is integrated by the connector's MeterModel each time a connector is
sampled (and when its transaction stops or a limit changes), under the power limits: the amperage
limit key and the composite of the charging profiles (1.6 §3.13), the same composite that
GetCompositeSchedule reports.

The time since the previous step is cut at the instants where the composite may change (period
starts, recurrences, validFrom/validTo), and each piece runs at the cap in force at its start, so
the energy is the integral of the stepped limit whatever the sampling interval. Without a profile
there is one piece. A step obeys the limits known when it began: whoever changes a limit calls
`Station.limits_changed()` right after, which closes the step at the instant of the change.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs
import trio

from evsim_trio.ocpp import OcppError
from evsim_trio.station._clock import ocpp_timestamp, parse_timestamp, utc_now
from evsim_trio.station._connector import Connector, Transaction
from evsim_trio.station._link import CallTimeout, LinkError, Payload
from evsim_trio.station._metering import amps_to_watts

if TYPE_CHECKING:
    from evsim_trio.config import StationTemplate
    from evsim_trio.station._charging_profiles import ProfileStore
    from evsim_trio.station._metering import MeterModel
    from evsim_trio.station._ocpp_config import OcppConfiguration
    from evsim_trio.station._queue import QueuedMessage

log = logging.getLogger(__name__)

# Amperage limit key units (seed: amperageLimitationUnit).
AMPERAGE_FACTORS = {"A": 1.0, "dA": 0.1, "cA": 0.01, "mA": 0.001}
# Energy is integrated at least this often while MeterValueSampleInterval is 0 (no samples sent).
IDLE_INTEGRATION = 60.0


@attrs.frozen
class StepLimits:
    """The limits a connector's meter obeys from one step to the next: the amperage limit
    key in W (None: no key) and the charging profiles installed (a snapshot)."""

    key_w: float | None
    profiles: ProfileStore


class MeterLoopsMixin:
    """Per-connector sampling loops, energy integration, clock-aligned readings."""

    label: str
    template: StationTemplate
    configuration: OcppConfiguration
    connectors: dict[int, Connector]
    meters: dict[int, MeterModel]
    profiles: ProfileStore
    _meter_scopes: dict[int, trio.CancelScope]
    _meter_last: dict[int, float]
    _meter_limits: dict[int, StepLimits]

    call: Callable[[str, Payload], Awaitable[Payload]]
    spawn: Callable[..., None]
    persist: Callable[[], None]
    changed: Callable[[], None]
    is_online: Callable[[], bool]
    enqueue: Callable[[str, Payload, int], QueuedMessage]

    # -- limits --------------------------------------------------------------------------
    def electrical(self) -> tuple[float, int, bool]:
        template = self.template
        return template.nominal_voltage(), template.phases(), template.current_out_type == "DC"

    def amperage_limit_w(self) -> float | None:
        """The amperage limit key (template `amperage_limitation_ocpp_key`) in W; None: none."""
        key = self.template.amperage_limitation_ocpp_key
        if not key:
            return None
        raw = self.configuration.get(key)
        try:
            amps = float(raw or "") * AMPERAGE_FACTORS[self.template.amperage_limitation_unit]
        except (ValueError, KeyError):
            return None
        if amps < 0:
            return None
        voltage, phases, dc = self.electrical()
        return amps_to_watts(amps, voltage=voltage, phases=phases, dc=dc)

    def transaction_start(self, connector_id: int) -> datetime | None:
        """When the connector's transaction started (None without one)."""
        connector = self.connectors.get(connector_id)
        tx = connector.transaction if connector is not None else None
        return parse_timestamp(tx.start_timestamp) if tx is not None else None

    def _cap(
        self,
        connector_id: int,
        key_w: float | None,
        profiles: ProfileStore,
        when: datetime | None,
        tx_start: datetime | None,
    ) -> float | None:
        limits = [] if key_w is None else [key_w]
        if len(profiles):
            voltage, phases, dc = self.electrical()
            limit = profiles.limit_at(
                connector_id,
                when or utc_now(),
                tx_start=tx_start,
                voltage=voltage,
                phases=phases,
                dc=dc,
            )
            if limit is not None:
                limits.append(limit[0])
        return min(limits) if limits else None

    def _begin_step(self, connector_id: int) -> StepLimits:
        """Remember the limits installed now for the step that begins now; return those of
        the step that ends now (the current ones when none was remembered)."""
        table = self._meter_limits
        current = StepLimits(self.amperage_limit_w(), self.profiles.snapshot())
        ended = table.get(connector_id, current)
        table[connector_id] = current
        return ended

    def _pieces(
        self, connector_id: int, limits: StepLimits, dt: float
    ) -> list[tuple[float, float | None]]:
        """The last `dt` seconds cut where the composite may change: (seconds, cap in W)."""
        profiles = limits.profiles
        if not len(profiles):
            return [(dt, limits.key_w)]
        end = utc_now()
        start = end - timedelta(seconds=dt)
        tx_start = self.transaction_start(connector_id)
        bounds = [start, *profiles.change_points(connector_id, start, end, tx_start=tx_start)]
        pieces: list[tuple[float, float | None]] = []
        done = 0.0
        for index, begin in enumerate(bounds):
            if index + 1 < len(bounds):
                length = (bounds[index + 1] - begin).total_seconds()
            else:
                length = dt - done  # the exact rest: datetimes round to the microsecond
            if length <= 0.0:
                continue
            cap = self._cap(connector_id, limits.key_w, profiles, begin, tx_start)
            pieces.append((length, cap))
            done += length
        return pieces

    # -- integration -------------------------------------------------------------------------
    def advance_meter(self, connector_id: int) -> None:
        """Integrate the connector's energy up to now, piece by piece under the stepped limit
        in force since the previous step; the limits installed now apply from now on."""
        now = trio.current_time()
        last = self._meter_last.get(connector_id, now)
        self._meter_last[connector_id] = now
        limits = self._begin_step(connector_id)
        if now <= last:
            return
        share = self.power_share()
        meter = self.meters[connector_id]
        for dt, limit_w in self._pieces(connector_id, limits, now - last):
            meter.advance(dt, limit_w=limit_w, share=share)

    def power_share(self) -> int:
        """How many connectors share the station's power now (1 unless it is shared)."""
        if not self.template.power_shared_by_connectors:
            return 1
        return max(1, sum(1 for c in self.connectors.values() if c.transaction is not None))

    def start_meter_loop(self, connector_id: int) -> None:
        """Start sampling a connector whose transaction just started."""
        self._meter_last[connector_id] = trio.current_time()
        self._begin_step(connector_id)
        scope = trio.CancelScope()
        old = self._meter_scopes.get(connector_id)
        if old is not None:
            old.cancel()
        self._meter_scopes[connector_id] = scope
        self.spawn(self._run_meter_loop, connector_id, scope)

    def restart_meter_loops(self) -> None:
        """MeterValueSampleInterval changed: restart every running sampling loop."""
        for connector_id, connector in self.connectors.items():
            if connector.transaction is not None and connector_id in self._meter_scopes:
                self.advance_meter(connector_id)
                self.start_meter_loop(connector_id)

    def transaction_ended(self, connector_id: int) -> None:
        """Stop sampling; TxProfiles end with their transaction (1.6 §3.13.2)."""
        scope = self._meter_scopes.pop(connector_id, None)
        if scope is not None:
            scope.cancel()
        self.profiles.transaction_ended(connector_id)

    async def _run_meter_loop(self, connector_id: int, scope: trio.CancelScope) -> None:
        connector = self.connectors[connector_id]
        tx = connector.transaction
        with scope:
            while tx is not None and connector.transaction is tx:
                interval = self.configuration.get_int("MeterValueSampleInterval", 60)
                await trio.sleep(interval if interval > 0 else IDLE_INTEGRATION)
                if connector.transaction is not tx:
                    return
                self.advance_meter(connector_id)
                if interval > 0:
                    self.enqueue_meter_values(connector_id, tx, "Sample.Periodic")
                else:
                    self.persist()
                self.changed()  # energy and power moved (the UI's refresh push)

    def _reading(self, connector_id: int, key: str, context: str) -> dict[str, Any] | None:
        measurands = self.configuration.get_csl(key)
        if not measurands:
            return None
        values = self.meters[connector_id].sampled_values(measurands, context=context)
        return {"timestamp": ocpp_timestamp(), "sampledValue": values} if values else None

    def enqueue_meter_values(self, connector_id: int, tx: Transaction, context: str) -> None:
        """Queue a transaction MeterValues with MeterValuesSampledData (or the aligned set)."""
        aligned = context == "Sample.Clock"
        reading = self._reading(
            connector_id, "MeterValuesAlignedData" if aligned else "MeterValuesSampledData", context
        )
        if reading is not None:
            payload: Payload = {"connectorId": connector_id, "meterValue": [reading]}
            self.enqueue("MeterValues", payload, tx.local_id)
        if self.template.transaction_data_meter_values:
            stop_key = "StopTxnAlignedData" if aligned else "StopTxnSampledData"
            kept = self._reading(connector_id, stop_key, context)
            if kept is not None:
                tx.meter_values.append(kept)

    async def send_meter_values_now(self, connector_id: int) -> Payload | None:
        """MeterValues for a connector, at once (TriggerMessage, UI): queued if in a transaction."""
        connector = self.connectors[connector_id]
        tx = connector.transaction
        if tx is not None:
            self.advance_meter(connector_id)
            self.enqueue_meter_values(connector_id, tx, "Trigger")
            return None
        reading = self._reading(connector_id, "MeterValuesSampledData", "Trigger")
        if reading is None:
            return None
        return await self.call(
            "MeterValues", {"connectorId": connector_id, "meterValue": [reading]}
        )

    # -- clock-aligned data (1.6 §3.16.2) ----------------------------------------------------------
    async def run_clock_aligned(
        self, *, task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Every ClockAlignedDataInterval s, aligned to midnight UTC: MeterValuesAlignedData."""
        with trio.CancelScope() as scope:
            task_status.started(scope)
            while True:
                interval = self.configuration.get_int("ClockAlignedDataInterval", 0)
                if interval <= 0:
                    return
                now = utc_now()
                midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
                elapsed = (now - midnight).total_seconds()
                await trio.sleep(interval - elapsed % interval)
                for connector_id, connector in self.connectors.items():
                    if connector_id == 0:
                        continue
                    tx = connector.transaction
                    if tx is not None:
                        self.advance_meter(connector_id)
                        self.enqueue_meter_values(connector_id, tx, "Sample.Clock")
                    elif self.is_online():
                        reading = self._reading(
                            connector_id, "MeterValuesAlignedData", "Sample.Clock"
                        )
                        if reading is not None:
                            self.spawn(self._send_untracked, connector_id, reading)

    async def _send_untracked(self, connector_id: int, reading: dict[str, Any]) -> None:
        try:
            await self.call("MeterValues", {"connectorId": connector_id, "meterValue": [reading]})
        except (CallTimeout, LinkError, OcppError) as exc:
            log.debug("%s: aligned MeterValues not delivered: %s", self.label, exc)
