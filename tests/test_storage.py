"""Performance storage: jsonfile (atomic) and sqlite (a row per station per interval)."""

from __future__ import annotations

import functools
import json
import logging
import math
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from memlink import MemoryNetwork, make_station, shipped_template, wait_state

from evsim_trio._resources import data_dir
from evsim_trio.cli import main
from evsim_trio.config import PerformanceStorageSection
from evsim_trio.csms import EmbeddedCsms, StationRecord
from evsim_trio.simulator import (
    FleetStatistics,
    JsonFileStorage,
    SqliteStorage,
    StorageError,
    collect_statistics,
    open_storage,
    run_statistics,
    storage_path,
)
from evsim_trio.station import Station, StationState

TEMPLATE = (data_dir("station_templates") / "ac-3phase-2conn.toml").as_posix()
HOUR = 3600.0


@attrs.define
class Fleet:
    """What the statistics read of a simulator."""

    stations: list[Station]

    async def statistics(self, *, stations: bool = True) -> FleetStatistics:
        return collect_statistics(self.stations, stations_too=stations)


@asynccontextmanager
async def booted_fleet(count: int = 2) -> AsyncIterator[Fleet]:
    """`count` stations booted against the embedded CSMS in memory; Heartbeat answers in 20 ms."""
    csms = EmbeddedCsms(heartbeat_interval=5)

    async def heartbeat(record: StationRecord, payload: dict[str, Any]) -> dict[str, Any]:
        await trio.sleep(0.02)
        return {"currentTime": "2026-01-01T00:00:00Z"}

    csms.handlers["Heartbeat"] = heartbeat
    async with trio.open_nursery() as nursery:
        network = MemoryNetwork(nursery, csms.handle_request)
        fleet = Fleet(
            [make_station(shipped_template(), network.connect(), index=i) for i in range(count)]
        )
        for station in fleet.stations:
            nursery.start_soon(station.run)
        for station in fleet.stations:
            await wait_state(station, StationState.BOOTED)
        yield fleet
        for station in fleet.stations:
            station.stop()
        nursery.cancel_scope.cancel()


def section(kind: str, uri: str = "") -> PerformanceStorageSection:
    return PerformanceStorageSection(enabled=True, type=kind, uri=uri)  # type: ignore[arg-type]


def read_sqlite(path: Path, query: str) -> list[sqlite3.Row]:
    connection = sqlite3.connect(path)
    connection.row_factory = sqlite3.Row
    try:
        return connection.execute(query).fetchall()
    finally:
        connection.close()


# -- the files and their schema ---------------------------------------------------------------


async def snapshots(count: int, stations: int = 2) -> list[FleetStatistics]:
    """The fleet's statistics after 6 s, 12 s, ... of a run (virtual time)."""
    taken = []
    with trio.fail_after(HOUR):
        async with booted_fleet(stations) as fleet:
            for _ in range(count):
                await trio.sleep(6)
                taken.append(collect_statistics(fleet.stations))
    return taken


def real_time(clock: trio.testing.MockClock) -> None:
    """From now on the clock follows the wall clock: the writer thread takes real time, and an
    auto-jumping clock would race ahead while the test waits for it."""
    clock.autojump_threshold = math.inf
    clock.rate = 1.0


async def test_jsonfile_is_replaced_atomically_with_the_whole_fleet(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    storage = open_storage(section("jsonfile"), tmp_path / "state")
    assert isinstance(storage, JsonFileStorage)
    assert storage.path == tmp_path / "state" / "performance.json"
    first, second = await snapshots(2)
    real_time(autojump_clock)
    with trio.fail_after(10):
        await storage.write(first)
        await storage.write(second)
    document = json.loads(storage.path.read_text())
    assert document == json.loads(json.dumps(second.to_json()))
    assert document != json.loads(json.dumps(first.to_json()))
    assert list(storage.path.parent.iterdir()) == [storage.path]  # no temporary file left
    heartbeat = document["fleet"]["sent"]["Heartbeat"]
    assert heartbeat["count"] == 2 * 2  # at 5 s and 10 s after boot
    assert heartbeat["p50_ms"] == heartbeat["max_ms"] == 20.0
    assert document["station_count"] == 2
    assert [s["id"] for s in document["stations"]] == [s.station_id for s in second.stations]


async def test_sqlite_has_a_row_per_station_per_write_and_fleet_rows(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    storage = open_storage(section("sqlite", str(tmp_path / "perf.db")), tmp_path / "state")
    assert isinstance(storage, SqliteStorage)
    written = await snapshots(2, stations=3)
    real_time(autojump_clock)
    with trio.fail_after(10):
        for statistics in written:
            await storage.write(statistics)
    rows = read_sqlite(storage.path, "SELECT * FROM station_statistics ORDER BY rowid")
    assert len(rows) == 2 * 3
    assert [row["timestamp"] for row in rows] == [s.timestamp for s in written for _ in range(3)]
    last = written[-1]
    for row, figures in zip(rows[3:], last.stations, strict=True):
        summary = figures.traffic.summary()
        assert (row["station_id"], row["hash_id"]) == (figures.station_id, figures.hash_id)
        assert row["calls_sent"] == summary["total"]["count"]
        assert (row["call_errors"], row["call_timeouts"]) == (0, 0)
        assert row["p95_ms"] == summary["total"]["p95_ms"] == 20.0
        actions = json.loads(row["actions"])
        assert actions["sent"]["Heartbeat"]["count"] == 2
        assert actions["sent"]["Heartbeat"]["p99_ms"] == 20.0
        assert actions["sent"]["BootNotification"]["count"] == 1
    fleet_rows = read_sqlite(
        storage.path,
        f"SELECT * FROM fleet_statistics WHERE timestamp = '{last.timestamp}' ORDER BY action",
    )
    by_action = {row["action"]: row for row in fleet_rows}
    assert by_action["*"]["count"] == last.fleet.total_sent().count
    assert by_action["Heartbeat"]["count"] == 3 * 2
    assert by_action["Heartbeat"]["p95_ms"] == 20.0
    assert by_action["BootNotification"]["max_ms"] == 0.0
    assert {row["direction"] for row in fleet_rows} == {"sent"}


@attrs.define
class RecordingStorage:
    """Keeps what it is given, in the event loop (no thread: virtual time stays exact)."""

    path: Path = Path("memory")
    writes: list[tuple[float, FleetStatistics]] = attrs.field(factory=list)

    async def write(self, statistics: FleetStatistics) -> None:
        self.writes.append((trio.current_time(), statistics))


async def test_run_statistics_logs_and_writes_every_interval(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="evsim_trio.simulator._statistics")
    storage = RecordingStorage()
    with trio.fail_after(HOUR):
        async with booted_fleet(2) as fleet, trio.open_nursery() as nursery:
            start = trio.current_time()
            nursery.start_soon(run_statistics, fleet, 10.0, storage)
            await trio.sleep(35)
            nursery.cancel_scope.cancel()
    assert [at - start for at, _ in storage.writes] == [10.0, 20.0, 30.0]
    assert [len(s.stations) for _, s in storage.writes] == [2, 2, 2]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("statistics:")]
    assert sum("sent Heartbeat:" in line for line in lines) == 3
    assert sum("sent (all): count" in line for line in lines) == 3
    last = storage.writes[-1][1].fleet.sent["Heartbeat"]
    assert f"sent Heartbeat: count {last.count}, errors 0, timeouts 0, ms min 20.000" in lines[-3]


async def test_a_write_to_a_missing_directory_raises_storage_error(tmp_path: Path) -> None:
    storage = JsonFileStorage(tmp_path / "gone" / "performance.json")
    with trio.fail_after(10), pytest.raises(StorageError, match="gone"):
        await storage.write(collect_statistics([]))
    storage = SqliteStorage(tmp_path / "gone" / "performance.sqlite")
    with trio.fail_after(10), pytest.raises(StorageError, match="gone"):
        await storage.write(collect_statistics([]))


@attrs.define
class FailingStorage:
    """A storage whose disk is full."""

    path: Path = Path("full")

    async def write(self, statistics: FleetStatistics) -> None:
        raise StorageError("performance storage full: No space left on device")


async def test_a_failed_write_is_logged_and_the_run_goes_on(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    with trio.fail_after(HOUR):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_statistics, Fleet([]), 10.0, FailingStorage())
            await trio.sleep(25)
            nursery.cancel_scope.cancel()
    failures = [r for r in caplog.records if "write failed" in r.getMessage()]
    assert len(failures) == 2
    assert failures[0].levelno == logging.ERROR


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("", "state/performance.sqlite"),
        ("perf/x.db", "perf/x.db"),
        ("file:///var/lib/perf.db", "/var/lib/perf.db"),
        ("file:rel/perf%20x.db", "rel/perf x.db"),
    ],
)
def test_storage_path_from_the_uri(uri: str, expected: str) -> None:
    assert storage_path(section("sqlite", uri), Path("state")) == Path(expected)


def test_default_storage_file_is_named_after_the_shard() -> None:
    path = storage_path(section("jsonfile"), Path("state"), (2, 3))
    assert path == Path("state/performance-shard-2-of-3.json")


def test_inactive_storage_opens_nothing(tmp_path: Path) -> None:
    assert open_storage(PerformanceStorageSection(), tmp_path) is None
    disabled = PerformanceStorageSection(enabled=False, type="sqlite")
    assert open_storage(disabled, tmp_path) is None
    assert list(tmp_path.iterdir()) == []


def test_a_uri_that_is_not_a_file_is_refused_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(StorageError, match="mongodb"):
        storage_path(section("jsonfile", "mongodb://db:27017/perf"), tmp_path)
    site = tmp_path / "site.toml"
    site.write_text(
        '[performance_storage]\nenabled = true\ntype = "jsonfile"\nuri = "mongodb://db/x"\n'
        f'[ui_server]\nenabled = false\n[[stations]]\ntemplate = "{TEMPLATE}"\n'
    )
    assert main(["run", str(site)]) == 2
    assert "performance_storage.uri" in capsys.readouterr().err


# -- a real run ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["jsonfile", "sqlite"])
async def test_a_run_records_the_figures_of_its_report(tmp_path: Path, kind: str) -> None:
    store = tmp_path / f"perf.{kind}"
    site = tmp_path / "site.toml"
    site.write_text(
        f'[simulator]\nseed = 3\nstate_dir = "{(tmp_path / "state").as_posix()}"\n'
        '[log]\nlevel = "warning"\n[csms]\nport = 0\n[ui_server]\nenabled = false\n'
        f'[performance_storage]\nenabled = true\ntype = "{kind}"\nuri = "{store.as_posix()}"\n'
        f'[[stations]]\ntemplate = "{TEMPLATE}"\ncount = 2\n'
    )
    report_path = tmp_path / "report.json"
    command = [sys.executable, "-m", "evsim_trio", "run", str(site), "--report", str(report_path)]
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(
                functools.partial(
                    trio.run_process,
                    command,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    check=False,
                )
            )
            assert process.stdout is not None
            seen = b""
            async for chunk in process.stdout:
                seen += chunk
                if b"2 booted" in seen:
                    break
            process.send_signal(signal.SIGINT)
            async for chunk in process.stdout:
                seen += chunk
            await process.wait()
    assert process.returncode == 0, seen
    report = json.loads(report_path.read_text())
    fleet = report["fleet"]
    assert fleet["sent"]["BootNotification"]["count"] == 2
    if kind == "jsonfile":
        document = json.loads(store.read_text())
        # The final write is of the same statistics as the report.
        assert document["timestamp"] == report["timestamp"]
        assert document["fleet"] == fleet
        assert document["stations"] == report["stations"]
        return
    rows = read_sqlite(
        store,
        f"SELECT * FROM station_statistics WHERE timestamp = '{report['timestamp']}' "
        "ORDER BY station_id",
    )
    assert [row["station_id"] for row in rows] == [s["id"] for s in report["stations"]]
    for row, station in zip(rows, report["stations"], strict=True):
        assert row["calls_sent"] == station["total"]["count"]
        assert row["p50_ms"] == station["total"]["p50_ms"]
        assert row["p99_ms"] == station["total"]["p99_ms"]
        sent = json.loads(row["actions"])["sent"]
        assert {a: f["count"] for a, f in sent.items()} == {
            a: f["count"] for a, f in station["sent"].items()
        }
    fleet_rows = read_sqlite(
        store, f"SELECT * FROM fleet_statistics WHERE timestamp = '{report['timestamp']}'"
    )
    by_action = {row["action"]: row for row in fleet_rows if row["direction"] == "sent"}
    for action, figures in fleet["sent"].items():
        assert by_action[action]["count"] == figures["count"]
        assert by_action[action]["p95_ms"] == figures["p95_ms"]
    assert by_action["*"]["max_ms"] == fleet["total"]["max_ms"]
