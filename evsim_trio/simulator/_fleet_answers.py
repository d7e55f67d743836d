"""Fleet-wide answers built from parts of a fleet: shared by the in-process command interface
and by the main process of a fleet spread over workers (each worker computes its share)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from evsim_trio import __version__
from evsim_trio._names import camel
from evsim_trio.simulator._control import FleetLike, control_state
from evsim_trio.simulator._fleet_metrics import STATION_COUNTERS
from evsim_trio.simulator._statistics import (
    FleetStatistics,
    TrafficStatistics,
    collect_statistics,
)
from evsim_trio.station import Station

if TYPE_CHECKING:
    from evsim_trio.simulator._simulator import Simulator

__all__ = [
    "performance_entries",
    "performance_statistics",
    "simulator_state",
    "template_rows",
    "template_statistics",
]

Payload = dict[str, Any]


def template_statistics(stations: Iterable[Station]) -> dict[str, Payload]:
    """Per template name: stations added, started, and their indexes (a worker's share)."""
    return template_rows((s.identity.template_name, s.identity.index, s.started) for s in stations)


def template_rows(rows: Iterable[tuple[str, int, bool]]) -> dict[str, Payload]:
    """`template_statistics` of (template name, index, started) rows."""
    statistics: dict[str, Payload] = {}
    for template_name, index, started in rows:
        stats = statistics.setdefault(template_name, {"added": 0, "started": 0, "indexes": []})
        stats["added"] += 1
        stats["started"] += int(started)
        stats["indexes"].append(index)
    return statistics


def simulator_state(
    simulator: FleetLike, shares: Iterable[dict[str, Payload]], *, processes: int = 0
) -> Payload:
    """The simulatorState response from the template statistics of every part of the fleet
    (`processes`: the worker processes running them, 0 in-process)."""
    site = simulator.site
    statistics: dict[str, Payload] = {}
    for entry in site.config.stations:
        name = site.template_for(entry).template_name
        stats = statistics.setdefault(
            name, {"configured": 0, "added": 0, "started": 0, "indexes": []}
        )
        stats["configured"] += entry.count
    for share in shares:
        for name, part in share.items():
            stats = statistics.setdefault(
                name, {"configured": 0, "added": 0, "started": 0, "indexes": []}
            )
            stats["added"] += part["added"]
            stats["started"] += part["started"]
            stats["indexes"] += part["indexes"]
    for stats in statistics.values():
        stats["indexes"].sort()
    config = site.config
    return {
        "status": "success",
        "state": {
            "version": __version__,
            "started": control_state(simulator).started,
            "seed": simulator.seed,
            "csmsUrl": simulator.csms_url,
            "configuration": {
                "supervisionUrls": list(config.supervision.urls),
                "supervisionUrlDistribution": config.supervision.distribution,
                "workers": config.workers.processes,
            },
            # evsim-trio: the worker processes the stations run in (0: the main process).
            "workerProcesses": processes,
            "templateStatistics": statistics,
        },
    }


# The station counters performanceStatistics gives per station (StationStatistics fields).
_RAW_COUNTERS = (*STATION_COUNTERS, "transactions_started", "transactions_stopped")


def _camel_keys(value: Any) -> Any:
    """Statistics keys in camelCase (action names and error codes have no underscores)."""
    if isinstance(value, dict):
        return {camel(str(k)): _camel_keys(v) for k, v in value.items()}
    return value


def performance_entries(simulator: Simulator) -> tuple[list[Payload], FleetStatistics]:
    """performanceStatistics' per-station entries, and the statistics they come from."""
    statistics = collect_statistics(simulator.stations)
    entries = []
    for station, figures in zip(simulator.stations, statistics.stations, strict=True):
        data = {name: getattr(station.stats, name) for name in _RAW_COUNTERS}
        data.update(figures.summary())
        entries.append(
            {
                "id": station.station_id,
                "hashId": station.hash_id,
                "name": station.station_id,
                "uri": station.url(),
                "statisticsData": _camel_keys(data),
            }
        )
    return entries, statistics


def performance_statistics(
    timestamp: str, fleet: TrafficStatistics, entries: list[Payload]
) -> Payload:
    """The performanceStatistics response."""
    return {
        "status": "success",
        "timestamp": timestamp,
        "fleet": _camel_keys({"station_count": len(entries), **fleet.summary()}),
        "performanceStatistics": entries,
    }
