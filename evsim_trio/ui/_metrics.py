"""`/metrics`: the fleet in the Prometheus text format, computed at scrape time.

A custom collector reads the stations' public attributes and statistics when Prometheus
scrapes, so the stations' hot paths only bump plain integers. Each app has its own
`CollectorRegistry` (never the process-global one), so several apps (tests) never collide.
"""

from __future__ import annotations

import collections
import typing
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from evsim_trio.config import ChargePointStatus
from evsim_trio.station import StationState, WsState

if TYPE_CHECKING:
    from evsim_trio.simulator import Fleet

__all__ = ["FleetCollector", "UiStatistics", "make_registry"]

# OCPP 1.6 ChargePointStatus values: every one is exposed, zeros included, so that dashboards
# see a stable set of series.
CONNECTOR_STATUSES: tuple[str, ...] = typing.get_args(ChargePointStatus)


@attrs.define
class UiStatistics:
    """The UI server's own counters."""

    clients: int = 0
    requests: collections.Counter[tuple[str, str]] = attrs.field(factory=collections.Counter)
    rate_limited: int = 0
    auth_failures: int = 0
    refreshes: int = 0


class FleetCollector:
    """A prometheus-client collector over a fleet's metrics snapshot and the UI's counters."""

    def __init__(self, simulator: Fleet, ui: UiStatistics) -> None:
        self.simulator = simulator
        self.ui = ui

    def collect(self) -> Iterable[Metric]:
        """Every metric, from the fleet's snapshot (see `Fleet.metrics_now`)."""
        snapshot = self.simulator.metrics_now()
        states = snapshot["stations"]
        ws_states = snapshot["ws_states"]
        statuses = snapshot["statuses"]
        sums = snapshot["sums"]
        totals = snapshot["totals"]
        sent = snapshot["sent"]
        received = snapshot["received"]
        active, energy, delivered, power = (
            sums[k] for k in ("active", "energy", "delivered", "power")
        )

        gauge = GaugeMetricFamily("evsim_stations", "Stations by life state", labels=["state"])
        for state in StationState:
            gauge.add_metric([state.value], states.get(state.value, 0))
        yield gauge
        gauge = GaugeMetricFamily(
            "evsim_station_websockets", "Station WebSockets by state", labels=["ws_state"]
        )
        for ws_state in WsState:
            gauge.add_metric([ws_state.name.lower()], ws_states.get(ws_state.name.lower(), 0))
        yield gauge
        gauge = GaugeMetricFamily(
            "evsim_connectors", "Connectors (ids > 0) by OCPP status", labels=["status"]
        )
        for status in sorted(set(CONNECTOR_STATUSES) | set(statuses)):
            gauge.add_metric([status], statuses.get(status, 0))
        yield gauge
        yield GaugeMetricFamily(
            "evsim_transactions_active", "Transactions running now", value=active
        )
        yield CounterMetricFamily(
            "evsim_transactions_started",
            "Transactions started",
            value=totals["transactions_started"],
        )
        yield CounterMetricFamily(
            "evsim_transactions_stopped",
            "Transactions stopped",
            value=totals["transactions_stopped"],
        )
        yield CounterMetricFamily(
            "evsim_energy_active_import_wh",
            "Energy registers summed over connectors (Wh)",
            value=energy,
        )
        yield CounterMetricFamily(
            "evsim_energy_delivered_wh",
            "Energy metered since the stations were built (this run, Wh)",
            value=delivered,
        )
        yield GaugeMetricFamily(
            "evsim_power_active_import_w", "Simulated active power now (W)", value=power
        )
        for name, text in (
            ("calls_sent", "OCPP CALLs sent by stations"),
            ("call_errors", "CALLERRORs (or invalid answers) received for station CALLs"),
            ("call_timeouts", "Station CALLs the CSMS did not answer in time"),
            ("connects", "WebSocket connections opened"),
            ("connect_failures", "Connections lost or failed"),
            ("reconnects", "Connections opened after a station's first"),
            ("boot_attempts", "BootNotifications sent"),
            ("queue_dropped", "Queued MeterValues dropped because the offline queue was full"),
        ):
            yield CounterMetricFamily(f"evsim_{name}", text, value=totals[name])
        yield GaugeMetricFamily(
            "evsim_queue_depth",
            "Transaction messages waiting in the offline queues",
            value=totals["queue_depth"],
        )
        counter = CounterMetricFamily(
            "evsim_messages_sent", "OCPP CALLs sent by stations, by action", labels=["action"]
        )
        for action, count in sorted(sent.items()):
            counter.add_metric([action], count)
        yield counter
        counter = CounterMetricFamily(
            "evsim_messages_received",
            "OCPP CALLs received by stations from the CSMS, by action",
            labels=["action"],
        )
        for action, count in sorted(received.items()):
            counter.add_metric([action], count)
        yield counter
        histogram = HistogramMetricFamily(
            "evsim_csms_response_seconds",
            "Time from a station's CALL to the CSMS answer, by action",
            labels=["action"],
        )
        for action, observed in sorted(snapshot["latency"].items()):
            histogram.add_metric([action], *_cumulative(observed))
        yield histogram
        yield from self._ui_metrics()

    def _ui_metrics(self) -> Iterable[Metric]:
        ui = self.ui
        yield GaugeMetricFamily("evsim_ui_clients", "Connected UI WebSocket clients", ui.clients)
        family = CounterMetricFamily(
            "evsim_ui_requests",
            "UI requests by procedure and outcome",
            labels=["procedure", "status"],
        )
        for (procedure, status), count in sorted(ui.requests.items()):
            family.add_metric([procedure, status], count)
        yield family
        yield CounterMetricFamily(
            "evsim_ui_rate_limited", "UI requests refused by the rate limit", ui.rate_limited
        )
        yield CounterMetricFamily(
            "evsim_ui_auth_failures", "UI requests refused for bad credentials", ui.auth_failures
        )
        yield CounterMetricFamily(
            "evsim_ui_refreshes", "refresh pushes sent to UI clients", ui.refreshes
        )


def _cumulative(observed: Mapping[str, Any]) -> tuple[list[tuple[str, float]], float]:
    """Prometheus buckets (cumulative, labelled by upper bound) and sum of snapshot latency."""
    buckets: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip([*observed["bounds"], float("inf")], observed["counts"], strict=True):
        running += count
        buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), float(running)))
    return buckets, float(observed["sum"])


def make_registry(simulator: Fleet, ui: UiStatistics) -> CollectorRegistry:
    """A fresh registry holding only the fleet collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(simulator, ui))
    return registry
