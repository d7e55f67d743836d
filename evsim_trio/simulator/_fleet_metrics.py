"""The fleet's gauges and counters for `/metrics`, as plain JSON data that adds up.

`fleet_metrics(stations)` reads the stations' public attributes and counters (nothing runs per
message); `merge_metrics` adds several snapshots (worker processes) exactly: every figure is a
count or a sum, and latency buckets add bucket by bucket. The UI renders a snapshot in the
Prometheus text format.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from evsim_trio.station import StationState, WsState

__all__ = [
    "STATION_COUNTERS",
    "TOTALS",
    "FleetMetrics",
    "empty_metrics",
    "fleet_metrics",
    "merge_metrics",
]

FleetMetrics = dict[str, Any]
"""`{stations, ws_states, statuses, sums, totals, sent, received, latency}`: see `fleet_metrics`."""

# Link counters of a station (StationStatistics fields), summed as they are.
STATION_COUNTERS = (
    "calls_sent",
    "call_errors",
    "call_timeouts",
    "connects",
    "connect_failures",
    "boot_attempts",
)
# Counters summed over stations, by name.
TOTALS = (
    *STATION_COUNTERS,
    "reconnects",
    "transactions_started",
    "transactions_stopped",
    "queue_depth",
    "queue_dropped",
)
# Float sums over stations: transactions running, energy registers, energy this run, power.
SUMS = ("active", "energy", "delivered", "power")


def empty_metrics() -> FleetMetrics:
    """The snapshot of no stations."""
    return {
        "stations": {state.value: 0 for state in StationState},
        "ws_states": {ws.name.lower(): 0 for ws in WsState},
        "statuses": {},
        "sums": dict.fromkeys(SUMS, 0.0),
        "totals": dict.fromkeys(TOTALS, 0),
        "sent": {},
        "received": {},
        "latency": {},
    }


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _latency(histogram: Any) -> dict[str, Any] | None:
    """Bounds, per-bucket counts (last one +Inf) and sum of a station histogram, if shaped so."""
    bounds = getattr(histogram, "bounds", None)
    counts = getattr(histogram, "counts", None)
    if bounds is None or counts is None or len(counts) != len(bounds) + 1:
        return None
    return {
        "bounds": [float(b) for b in bounds],
        "counts": [int(c) for c in counts],
        "sum": float(getattr(histogram, "total", 0.0)),
    }


def _add_latency(into: dict[str, Any], action: str, observed: Mapping[str, Any]) -> None:
    known = into.get(action)
    if known is None:
        into[action] = {
            "bounds": list(observed["bounds"]),
            "counts": list(observed["counts"]),
            "sum": float(observed["sum"]),
        }
    elif known["bounds"] == list(observed["bounds"]):
        known["counts"] = [a + b for a, b in zip(known["counts"], observed["counts"], strict=True)]
        known["sum"] += float(observed["sum"])


def fleet_metrics(stations: Iterable[Any]) -> FleetMetrics:
    """The snapshot of `stations` (Station objects, or alike) now."""
    result = empty_metrics()
    states: Counter[str] = Counter()
    ws_states: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    sent: Counter[str] = Counter()
    received: Counter[str] = Counter()
    sums = result["sums"]
    latency: dict[str, Any] = result["latency"]
    for station in stations:
        states[station.state.value] += 1
        ws_states[station.ws_state.name.lower()] += 1
        for connector in station.connectors.values():
            if connector.connector_id > 0:
                statuses[connector.status] += 1
                sums["active"] += connector.transaction is not None
        for meter in station.meters.values():
            sums["energy"] += meter.energy_register_wh
            sums["power"] += meter.power_w
        sums["delivered"] += station.energy_delivered_wh()
        stats = station.stats
        for name in STATION_COUNTERS:
            totals[name] += getattr(stats, name)
        totals["reconnects"] += max(0, stats.connects - 1)
        totals["transactions_started"] += stats.transactions_started
        totals["transactions_stopped"] += stats.transactions_stopped
        totals["queue_depth"] += len(station.queue)
        totals["queue_dropped"] += station.queue.dropped
        sent.update(_mapping(getattr(stats, "sent_by_action", None)))
        received.update(_mapping(getattr(stats, "received_by_action", None)))
        for action, histogram in _mapping(getattr(stats, "latency", None)).items():
            observed = _latency(histogram)
            if observed is not None:
                _add_latency(latency, action, observed)
    result["stations"].update(states)
    result["ws_states"].update(ws_states)
    result["statuses"] = dict(statuses)
    result["totals"].update(totals)
    result["sent"] = dict(sent)
    result["received"] = dict(received)
    return result


def merge_metrics(snapshots: Iterable[Mapping[str, Any]]) -> FleetMetrics:
    """The sum of several snapshots (of disjoint sets of stations)."""
    result = empty_metrics()
    for snapshot in snapshots:
        for key in ("stations", "ws_states", "statuses", "sums", "totals", "sent", "received"):
            into = result[key]
            for name, value in snapshot.get(key, {}).items():
                into[name] = into.get(name, 0) + value
        for action, observed in snapshot.get("latency", {}).items():
            _add_latency(result["latency"], action, observed)
    return result
