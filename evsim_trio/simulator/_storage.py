"""Performance storage (`[performance_storage]`): fleet statistics recorded every interval.

- `jsonfile`: the whole fleet's statistics (`FleetStatistics.to_json()`), the file replaced
  atomically (temporary file in the same directory, then rename) at every write;
- `sqlite`: stdlib sqlite3, one `station_statistics` row per station per write and one
  `fleet_statistics` row per action and direction per write (schema below).

Figures are computed on the event loop (they read live station counters); encoding and file
I/O run in a worker thread so that the stations' timers are not held up.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlsplit

import trio

from evsim_trio.config import PerformanceStorageSection

if TYPE_CHECKING:
    from evsim_trio.simulator._statistics import FleetStatistics

__all__ = [
    "SQLITE_SCHEMA",
    "JsonFileStorage",
    "PerformanceStorage",
    "SqliteStorage",
    "StorageError",
    "open_storage",
    "storage_path",
]

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS station_statistics (
    timestamp     TEXT    NOT NULL,  -- UTC, ISO 8601 with Z
    station_id    TEXT    NOT NULL,
    hash_id       TEXT    NOT NULL,
    calls_sent    INTEGER NOT NULL,  -- every action the station sent, since it was built
    call_errors   INTEGER NOT NULL,  -- CALLERRORs and invalid answers it got
    call_timeouts INTEGER NOT NULL,
    p50_ms        REAL,              -- CSMS response time over every action (NULL: none timed)
    p95_ms        REAL,
    p99_ms        REAL,
    actions       TEXT    NOT NULL   -- JSON, per action: see docs/configuration.md
);
CREATE INDEX IF NOT EXISTS station_statistics_by_station
    ON station_statistics (station_id, timestamp);
CREATE TABLE IF NOT EXISTS fleet_statistics (
    timestamp  TEXT    NOT NULL,
    direction  TEXT    NOT NULL,     -- 'sent' (by stations) or 'received' (from the CSMS)
    action     TEXT    NOT NULL,     -- '*' = every sent action merged
    count      INTEGER NOT NULL,
    errors     INTEGER NOT NULL,
    timeouts   INTEGER NOT NULL,
    min_ms     REAL,
    mean_ms    REAL,
    p50_ms     REAL,
    p95_ms     REAL,
    p99_ms     REAL,
    max_ms     REAL
);
CREATE INDEX IF NOT EXISTS fleet_statistics_by_time ON fleet_statistics (timestamp);
"""

_DEFAULT_NAMES = {"jsonfile": "performance.json", "sqlite": "performance.sqlite"}
_ACTION_KEYS = ("count", "errors", "timeouts", "errors_by_code", "p50_ms", "p95_ms", "p99_ms")
_FLEET_KEYS = (
    "count",
    "errors",
    "timeouts",
    "min_ms",
    "mean_ms",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
)


class StorageError(Exception):
    """The performance storage cannot be opened or written."""


class PerformanceStorage(Protocol):
    """Where statistics go every interval."""

    path: Path

    async def write(self, statistics: FleetStatistics) -> None:
        """Record `statistics`; raises StorageError."""


def storage_path(
    section: PerformanceStorageSection, state_dir: Path, shard: tuple[int, int] | None = None
) -> Path:
    """The file of a storage: `uri` as a path or a `file:` URI, by default in `state_dir`
    (named after the shard, if any, so that shards sharing a directory do not collide).

    Raises StorageError for another kind of URI.
    """
    uri = section.uri
    if not uri:
        name = Path(_DEFAULT_NAMES[section.type])
        if shard is not None:
            name = name.with_stem(f"{name.stem}-shard-{shard[0]}-of-{shard[1]}")
        return state_dir / name
    parts = urlsplit(uri)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise StorageError(f"performance_storage.uri: expected a local file, got {uri!r}")
        return Path(unquote(parts.path))
    if parts.scheme and len(parts.scheme) > 1:  # not a Windows drive letter
        raise StorageError(
            f"performance_storage.uri: expected a file path or a file: URI, got {uri!r}"
        )
    return Path(uri)


def open_storage(
    section: PerformanceStorageSection, state_dir: Path, shard: tuple[int, int] | None = None
) -> PerformanceStorage | None:
    """The storage `section` asks for (None when inactive), its directory (and database) created.

    Blocking (call it before the event loop or in a thread). Raises StorageError.
    """
    if not section.active:
        return None
    path = storage_path(section, state_dir, shard)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if section.type == "sqlite":
            storage: PerformanceStorage = SqliteStorage(path)
            _create_schema(path)
        else:
            storage = JsonFileStorage(path)
    except (OSError, sqlite3.Error) as exc:
        raise StorageError(f"performance storage {path}: {exc}") from exc
    return storage


class JsonFileStorage:
    """The whole fleet's latest statistics in one JSON file, replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def write(self, statistics: FleetStatistics) -> None:
        """Replace the file's content with `statistics` (temporary file, then rename)."""
        document = statistics.to_json()
        await trio.to_thread.run_sync(self._write, document)

    def _write(self, document: dict[str, Any]) -> None:
        text = json.dumps(document, indent=1)
        try:
            handle, temporary = tempfile.mkstemp(
                dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
            )
            try:
                with os.fdopen(handle, "w", encoding="utf-8") as file:
                    file.write(text)
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(temporary, self.path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StorageError(f"performance storage {self.path}: {exc}") from exc


def _create_schema(path: Path) -> None:
    connection = sqlite3.connect(path)
    try:
        connection.executescript(SQLITE_SCHEMA)
        connection.commit()
    finally:
        connection.close()


def _pick(summary: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: summary[key] for key in keys}


class SqliteStorage:
    """One row per station per write, plus the fleet's per-action rows, in an SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def write(self, statistics: FleetStatistics) -> None:
        """Append the rows of `statistics` (one transaction)."""
        timestamp = statistics.timestamp
        stations = []
        for station in statistics.stations:
            summary = station.summary()
            total = summary["total"]
            actions = {
                "sent": {a: _pick(f, _ACTION_KEYS) for a, f in summary["sent"].items()},
                "received": {
                    a: _pick(f, ("count", "errors", "errors_by_code"))
                    for a, f in summary["received"].items()
                },
            }
            stations.append((station.station_id, station.hash_id, total, actions))
        fleet = statistics.fleet.summary()
        entries = [("sent", "*", fleet["total"])]
        for direction in ("sent", "received"):
            entries += [(direction, a, f) for a, f in fleet[direction].items()]
        fleet_rows = [
            (timestamp, direction, action, *(figures[key] for key in _FLEET_KEYS))
            for direction, action, figures in entries
        ]
        await trio.to_thread.run_sync(self._write, timestamp, stations, fleet_rows)

    def _write(
        self,
        timestamp: str,
        stations: list[tuple[str, str, dict[str, Any], dict[str, Any]]],
        fleet_rows: list[tuple[Any, ...]],
    ) -> None:
        rows = [
            (
                timestamp,
                station_id,
                hash_id,
                total["count"],
                total["errors"],
                total["timeouts"],
                total["p50_ms"],
                total["p95_ms"],
                total["p99_ms"],
                json.dumps(actions, separators=(",", ":")),
            )
            for station_id, hash_id, total, actions in stations
        ]
        try:
            # A connection per write: sqlite3 connections belong to the thread that opened
            # them, and trio's worker threads are not always the same one.
            connection = sqlite3.connect(self.path, timeout=30)
            try:
                with connection:
                    connection.executemany(
                        "INSERT INTO station_statistics VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        rows,
                    )
                    connection.executemany(
                        "INSERT INTO fleet_statistics VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        fleet_rows,
                    )
            finally:
                connection.close()
        except sqlite3.Error as exc:
            raise StorageError(f"performance storage {self.path}: {exc}") from exc
