"""Building the fleet from the site config and running it."""

from __future__ import annotations

from evsim_trio.simulator._build import (
    BuildError,
    PlannedStation,
    Shard,
    build_specs,
    parse_shard,
    plan_fleet,
)
from evsim_trio.simulator._commands import PROCEDURES, UnknownProcedure
from evsim_trio.simulator._fleet_metrics import FleetMetrics, fleet_metrics, merge_metrics
from evsim_trio.simulator._routing import Fleet, execute, make_fleet
from evsim_trio.simulator._simulator import FleetCounts, Simulator
from evsim_trio.simulator._statistics import (
    ActionStatistics,
    FleetStatistics,
    StationFigures,
    TrafficStatistics,
    check_thresholds,
    collect_statistics,
    format_table,
    log_statistics,
    run_statistics,
    thresholds_json,
)
from evsim_trio.simulator._storage import (
    SQLITE_SCHEMA,
    JsonFileStorage,
    PerformanceStorage,
    SqliteStorage,
    StorageError,
    open_storage,
    storage_path,
)
from evsim_trio.simulator._workers import AUTO_MIN_STATIONS, WorkerFleet, WorkerGone, worker_count

__all__ = [
    "AUTO_MIN_STATIONS",
    "PROCEDURES",
    "SQLITE_SCHEMA",
    "ActionStatistics",
    "BuildError",
    "Fleet",
    "FleetCounts",
    "FleetMetrics",
    "FleetStatistics",
    "JsonFileStorage",
    "PerformanceStorage",
    "PlannedStation",
    "Shard",
    "Simulator",
    "SqliteStorage",
    "StationFigures",
    "StorageError",
    "TrafficStatistics",
    "UnknownProcedure",
    "WorkerFleet",
    "WorkerGone",
    "build_specs",
    "check_thresholds",
    "collect_statistics",
    "execute",
    "fleet_metrics",
    "format_table",
    "log_statistics",
    "make_fleet",
    "merge_metrics",
    "open_storage",
    "parse_shard",
    "plan_fleet",
    "run_statistics",
    "storage_path",
    "thresholds_json",
    "worker_count",
]
