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
from evsim_trio.simulator._commands import PROCEDURES, UnknownProcedure, execute
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

__all__ = [
    "PROCEDURES",
    "SQLITE_SCHEMA",
    "ActionStatistics",
    "BuildError",
    "FleetCounts",
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
    "build_specs",
    "check_thresholds",
    "collect_statistics",
    "execute",
    "format_table",
    "log_statistics",
    "open_storage",
    "parse_shard",
    "plan_fleet",
    "run_statistics",
    "storage_path",
    "thresholds_json",
]
