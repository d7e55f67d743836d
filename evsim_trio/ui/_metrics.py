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

from evsim_trio.config._ocpp16 import ChargePointStatus
from evsim_trio.station import StationState, WsState

if TYPE_CHECKING:
    from evsim_trio.simulator import Simulator

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


def _counter_map(value: Any) -> Mapping[str, float]:
    return value if isinstance(value, Mapping) else {}


def _histogram_buckets(histogram: Any) -> tuple[list[tuple[str, float]], float] | None:
    """Cumulative buckets and sum of a station latency histogram, if it has the expected shape.

    Expected: `bounds` (upper bounds in seconds, ascending), `counts` (one per bound plus one
    for +Inf, not cumulative), `total` (sum of observed seconds).
    """
    bounds = getattr(histogram, "bounds", None)
    counts = getattr(histogram, "counts", None)
    if bounds is None or counts is None or len(counts) != len(bounds) + 1:
        return None
    buckets: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip([*map(float, bounds), float("inf")], counts, strict=True):
        running += count
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
    return buckets, float(getattr(histogram, "total", 0.0))


class FleetCollector:
    """A prometheus-client collector over a simulator's stations and the UI's counters."""

    def __init__(self, simulator: Simulator, ui: UiStatistics) -> None:
        self.simulator = simulator
        self.ui = ui

    def collect(self) -> Iterable[Metric]:
        """Every metric, from the stations' state now."""
        stations = list(self.simulator.stations)
        states = collections.Counter(station.state for station in stations)
        ws_states = collections.Counter(station.ws_state for station in stations)
        statuses: collections.Counter[str] = collections.Counter()
        sent: collections.Counter[str] = collections.Counter()
        received: collections.Counter[str] = collections.Counter()
        latency: dict[str, tuple[list[float], float]] = {}
        latency_bounds: dict[str, list[str]] = {}
        totals: collections.Counter[str] = collections.Counter()
        active = energy = delivered = power = 0.0
        for station in stations:
            for connector in station.connectors.values():
                if connector.connector_id > 0:
                    statuses[connector.status] += 1
                    active += connector.transaction is not None
            for meter in station.meters.values():
                energy += meter.energy_register_wh
                power += meter.power_w
            delivered += station.energy_delivered_wh()
            stats = station.stats
            totals["calls_sent"] += stats.calls_sent
            totals["call_errors"] += stats.call_errors
            totals["call_timeouts"] += stats.call_timeouts
            totals["connects"] += stats.connects
            totals["connect_failures"] += stats.connect_failures
            totals["boot_attempts"] += stats.boot_attempts
            totals["reconnects"] += max(0, stats.connects - 1)
            totals["transactions_started"] += stats.transactions_started
            totals["transactions_stopped"] += stats.transactions_stopped
            totals["queue_depth"] += len(station.queue)
            totals["queue_dropped"] += station.queue.dropped
            sent.update(_counter_map(getattr(stats, "sent_by_action", None)))
            received.update(_counter_map(getattr(stats, "received_by_action", None)))
            for action, observed in _counter_map(getattr(stats, "latency", None)).items():
                shaped = _histogram_buckets(observed)
                if shaped is None:
                    continue
                buckets, total = shaped
                known = latency.get(action)
                if known is None:
                    latency_bounds[action] = [bound for bound, _ in buckets]
                    latency[action] = ([value for _, value in buckets], total)
                elif latency_bounds[action] == [bound for bound, _ in buckets]:
                    values = [a + b for a, (_, b) in zip(known[0], buckets, strict=True)]
                    latency[action] = (values, known[1] + total)

        gauge = GaugeMetricFamily("evsim_stations", "Stations by life state", labels=["state"])
        for state in StationState:
            gauge.add_metric([state.value], states[state])
        yield gauge
        gauge = GaugeMetricFamily(
            "evsim_station_websockets", "Station WebSockets by state", labels=["ws_state"]
        )
        for ws_state in WsState:
            gauge.add_metric([ws_state.name.lower()], ws_states[ws_state])
        yield gauge
        gauge = GaugeMetricFamily(
            "evsim_connectors", "Connectors (ids > 0) by OCPP status", labels=["status"]
        )
        for status in sorted(set(CONNECTOR_STATUSES) | set(statuses)):
            gauge.add_metric([status], statuses[status])
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
        for action, (values, total) in sorted(latency.items()):
            histogram.add_metric(
                [action], list(zip(latency_bounds[action], values, strict=True)), total
            )
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


def make_registry(simulator: Simulator, ui: UiStatistics) -> CollectorRegistry:
    """A fresh registry holding only the fleet collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(simulator, ui))
    return registry
