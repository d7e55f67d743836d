"""Fleet statistics: mergeable latency histograms, CALLERRORs by code, the report, thresholds."""

from __future__ import annotations

import functools
import json
import math
import random
import signal
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
from evsim_trio.config import CommandsSupport, FailIf
from evsim_trio.csms import EmbeddedCsms, StationRecord
from evsim_trio.ocpp import GenericError, NotSupportedError, OcppError
from evsim_trio.simulator import (
    ActionStatistics,
    TrafficStatistics,
    check_thresholds,
    collect_statistics,
    execute,
    format_table,
)
from evsim_trio.station import (
    CallTimeout,
    LatencyHistogram,
    Station,
    StationState,
    StationStatistics,
)
from evsim_trio.station._stats import RESOLUTION

TEMPLATE = (data_dir("station_templates") / "ac-3phase-2conn.toml").as_posix()
HOUR = 3600.0


# -- the histogram -----------------------------------------------------------------------------


def nearest_rank(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(q * len(ordered) - 1e-9)) - 1]


def histogram_of(samples: list[float]) -> LatencyHistogram:
    histogram = LatencyHistogram()
    for value in samples:
        histogram.observe(value)
    return histogram


def random_latencies(rng: random.Random) -> list[float]:
    """A part of a fleet: lognormal round trips around a random median, some slow outliers."""
    median = rng.choice((0.0005, 0.002, 0.03, 0.4))
    values = [rng.lognormvariate(math.log(median), rng.uniform(0.1, 1.5)) for _ in range(200)]
    values = values[: rng.randrange(0, 200)]
    values += [rng.uniform(1, 20) for _ in range(rng.randrange(3))]
    return values


@pytest.mark.parametrize("seed", range(40))
def test_merged_percentiles_equal_those_of_the_pooled_samples_within_resolution(
    seed: int,
) -> None:
    rng = random.Random(seed)
    parts = [random_latencies(rng) for _ in range(rng.randrange(1, 9))]
    pooled = [value for part in parts for value in part]
    merged = LatencyHistogram()
    for part in parts:
        merged.merge(histogram_of(part))
    # Merging adds buckets: exactly the histogram of the pooled samples.
    reference = histogram_of(pooled)
    assert merged.fine == reference.fine
    assert merged.counts == reference.counts
    assert merged.count == len(pooled)
    if not pooled:
        assert merged.quantile(0.5) is None
        assert merged.mean is None
        return
    assert (merged.minimum, merged.maximum) == (min(pooled), max(pooled))
    assert merged.total == pytest.approx(sum(pooled))
    assert merged.mean == pytest.approx(sum(pooled) / len(pooled))
    for q in (0.01, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0):
        estimate = merged.quantile(q)
        assert estimate is not None
        true = nearest_rank(pooled, q)
        assert abs(estimate - true) <= RESOLUTION * true, (q, estimate, true)


def test_resolution_is_about_five_percent() -> None:
    assert 0.04 < RESOLUTION < 0.05


def test_quantiles_stay_within_the_exact_extremes() -> None:
    histogram = histogram_of([0.0, 0.0, 0.0])  # a virtual clock's round trips
    assert histogram.quantile(0.5) == 0.0
    histogram = histogram_of([0.25] * 10)
    assert histogram.quantile(0.01) == histogram.quantile(0.99) == 0.25


def test_histogram_json_round_trip_keeps_every_bucket() -> None:
    histogram = histogram_of([0.001, 0.002, 0.5, 3.0])
    again = LatencyHistogram.from_json(json.loads(json.dumps(histogram.to_json())))
    assert again == histogram
    assert LatencyHistogram.from_json(LatencyHistogram().to_json()) == LatencyHistogram()


def test_histograms_of_different_bounds_do_not_merge() -> None:
    with pytest.raises(ValueError, match="bounds"):
        LatencyHistogram().merge(LatencyHistogram(bounds=(1.0,), counts=[0, 0]))


# -- figures per station, fleet, thresholds ------------------------------------------------------


def station_stats(sent: dict[str, list[float]], **extra: Any) -> StationStatistics:
    stats = StationStatistics(**extra)
    for action, latencies in sent.items():
        stats.sent_by_action[action] += len(latencies)
        stats.calls_sent += len(latencies)
        for value in latencies:
            stats.observe(action, value)
    return stats


def test_station_figures_merge_into_the_fleet_without_touching_the_stations() -> None:
    one = station_stats({"Heartbeat": [0.001, 0.002]})
    two = station_stats({"Heartbeat": [0.004], "MeterValues": [0.010]})
    two.sent_by_action["MeterValues"] += 1
    two.timeouts_by_action["MeterValues"] += 1
    two.errors_by_code[("StartTransaction", "InternalError")] += 1
    two.sent_by_action["StartTransaction"] += 1
    two.received_by_action["Reset"] += 2
    two.answered_errors_by_code[("Reset", "NotSupported")] += 1
    fleet = TrafficStatistics()
    for stats in (one, two):
        fleet.merge(TrafficStatistics.of_station(stats))
    assert one.latency["Heartbeat"].count == 2  # unchanged by the merge
    heartbeat = fleet.sent["Heartbeat"]
    assert (heartbeat.count, heartbeat.latency.count) == (3, 3)
    assert heartbeat.latency.maximum == 0.004
    assert fleet.sent["MeterValues"].timeouts == 1
    assert fleet.sent["StartTransaction"].errors_by_code == {"InternalError": 1}
    assert fleet.received["Reset"].count == 2
    assert fleet.received["Reset"].errors_by_code == {"NotSupported": 1}
    summary = fleet.summary()
    assert summary["total"]["count"] == 6
    assert summary["total"]["errors"] == 1
    assert summary["total"]["max_ms"] == 10.0
    assert summary["sent"]["StartTransaction"]["p95_ms"] is None  # nothing timed
    table = format_table(fleet)
    assert "CALLERRORs by code: sent StartTransaction InternalError: 1" in table
    assert "received Reset NotSupported: 1" in table


def test_report_figures_of_shards_merge_exactly() -> None:
    rng = random.Random(5)
    parts = [random_latencies(rng) for _ in range(3)]
    whole = TrafficStatistics()
    shards = []
    for part in parts:
        traffic = TrafficStatistics.of_station(station_stats({"MeterValues": part}))
        whole.merge(traffic)
        shards.append(json.loads(json.dumps(traffic.summary(histogram=True))))
    merged = TrafficStatistics()
    for shard in shards:
        merged.merge(TrafficStatistics.from_json(shard))
    assert merged.summary() == whole.summary()


def fleet_with(latency: float, count: int, *, errors: int = 0, timeouts: int = 0) -> Any:
    figures = ActionStatistics(count=count, errors=errors, timeouts=timeouts)
    for _ in range(count - errors - timeouts):
        figures.latency.observe(latency)
    return TrafficStatistics(sent={"MeterValues": figures})


@pytest.mark.parametrize(
    ("fail_if", "breach"),
    [
        (FailIf(p95_ms=100), "MeterValues p95 200 ms > 100 ms (90 answers)"),
        (FailIf(p99_ms=199), "MeterValues p99 200 ms > 199 ms (90 answers)"),
        (FailIf(error_rate=0.05), "error rate 0.08 > 0.05 (8 CALLERRORs of 100 CALLs)"),
        (FailIf(timeouts=1), "timeouts 2 > 1"),
    ],
)
def test_each_threshold_trips_with_a_one_line_breach(fail_if: FailIf, breach: str) -> None:
    fleet = fleet_with(0.2, 100, errors=8, timeouts=2)
    assert check_thresholds(fleet, fail_if) == [breach]


def test_thresholds_that_hold_or_are_unset_give_no_breach() -> None:
    fleet = fleet_with(0.2, 100, errors=8, timeouts=2)
    assert check_thresholds(fleet, FailIf()) == []
    assert check_thresholds(fleet, FailIf(p95_ms=250, error_rate=0.08, timeouts=2)) == []
    assert check_thresholds(TrafficStatistics(), FailIf(p95_ms=0, error_rate=0, timeouts=0)) == []


# -- counted by a station against the embedded CSMS (virtual time) -------------------------------


@asynccontextmanager
async def booted_station(**template: Any) -> AsyncIterator[tuple[Station, EmbeddedCsms]]:
    csms = EmbeddedCsms(heartbeat_interval=3600)
    async with trio.open_nursery() as nursery:
        network = MemoryNetwork(nursery, csms.handle_request)
        station = make_station(shipped_template(**template), network.connect())
        nursery.start_soon(station.run)
        await wait_state(station, StationState.BOOTED)
        await csms.wait_until(
            lambda: (
                csms.stations[station.station_id].received["StatusNotification"]
                >= len(station.connectors)
            )
        )
        yield station, csms
        station.stop()
        nursery.cancel_scope.cancel()


async def test_callerrors_are_counted_by_action_and_code_both_ways(
    autojump_clock: trio.testing.MockClock,
) -> None:
    support = CommandsSupport(incoming_commands={"ClearCache": True})  # Reset: NotSupported
    with trio.fail_after(HOUR):
        async with booted_station(commands_support=support) as (station, csms):

            def refuse(record: StationRecord, payload: dict[str, Any]) -> dict[str, Any]:
                raise GenericError("no data transfer today")

            csms.handlers["DataTransfer"] = refuse
            for _ in range(2):
                with pytest.raises(OcppError):
                    await station.call("DataTransfer", {"vendorId": "V"})
            with pytest.raises(NotSupportedError):
                await csms.call(station.station_id, "Reset", {"type": "Soft"})
    stats = station.stats
    assert stats.errors_by_code[("DataTransfer", "GenericError")] == 2
    assert stats.answered_errors_by_code[("Reset", "NotSupported")] == 1
    traffic = TrafficStatistics.of_station(stats)
    assert traffic.sent["DataTransfer"].summary()["errors_by_code"] == {"GenericError": 2}
    assert traffic.sent["DataTransfer"].errors == 2
    assert traffic.received["Reset"].summary()["errors_by_code"] == {"NotSupported": 1}


async def test_timeouts_and_response_times_are_counted_per_action(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(HOUR):
        async with booted_station(call_timeout=30.0) as (station, csms):
            delay = 0.25

            async def heartbeat(record: StationRecord, payload: dict[str, Any]) -> dict[str, Any]:
                await trio.sleep(delay)
                return {"currentTime": "2026-01-01T00:00:00Z"}

            csms.handlers["Heartbeat"] = heartbeat
            for _ in range(3):
                await station.call("Heartbeat", {})
            delay = 60.0
            with pytest.raises(CallTimeout):
                await station.call("Heartbeat", {})
            await trio.sleep(60)  # the late answer is ignored
    figures = TrafficStatistics.of_station(station.stats).sent["Heartbeat"].summary()
    assert (figures["count"], figures["timeouts"], figures["errors"]) == (4, 1, 0)
    assert figures["min_ms"] == figures["p50_ms"] == figures["p99_ms"] == 250.0


@attrs.define
class Fleet:
    """A fleet of hand-built stations, as the statistics read it."""

    stations: list[Station]


async def test_performance_statistics_procedure_serves_fleet_and_station_figures(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(HOUR):
        async with booted_station() as (station, _csms):
            await station.call("Heartbeat", {})
            response = await execute(Fleet([station]), "performanceStatistics", {})  # type: ignore[arg-type]
    assert response["status"] == "success"
    fleet = response["fleet"]
    assert fleet["stationCount"] == 1
    assert fleet["sent"]["BootNotification"]["count"] == 1
    assert fleet["sent"]["Heartbeat"]["p95Ms"] == 0.0  # virtual time: instant answers
    assert fleet["total"]["errorsByCode"] == {}
    (entry,) = response["performanceStatistics"]
    assert entry["hashId"] == station.hash_id
    data = entry["statisticsData"]
    assert data["callsSent"] == station.stats.calls_sent
    assert data["sent"]["Heartbeat"]["count"] == 1
    assert collect_statistics([station]).stations[0].station_id == station.station_id


# -- `evsim-trio run`: the table, the report, exit 3 -----------------------------------------------


def small_site(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "site.toml"
    path.write_text(
        f'[simulator]\nseed = 3\nstate_dir = "{(tmp_path / "state").as_posix()}"\n'
        '[log]\nconsole = true\nlevel = "warning"\n'
        "[csms]\nenabled = true\nport = 0\n[ui_server]\nenabled = false\n"
        f'{extra}\n[[stations]]\ntemplate = "{TEMPLATE}"\ncount = 2\n'
    )
    return path


async def run_until_booted(
    args: list[str], booted: bytes = b"2 booted"
) -> tuple[int, bytes, bytes]:
    """`evsim-trio run ARGS` until `booted` shows, then SIGINT: (exit code, stdout, stderr)."""
    async with trio.open_nursery() as nursery:
        command = [sys.executable, "-m", "evsim_trio", "run", *args]
        process: trio.Process = await nursery.start(
            functools.partial(
                trio.run_process,
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                check=False,
            )
        )
        assert process.stdout is not None
        assert process.stderr is not None
        out = err = b""
        async for chunk in process.stdout:
            out += chunk
            if booted in out:
                break
        process.send_signal(signal.SIGINT)

        async def read_err() -> None:
            nonlocal err
            assert process.stderr is not None
            async for chunk in process.stderr:
                err += chunk

        nursery.start_soon(read_err)
        async for chunk in process.stdout:
            out += chunk
        await process.wait()
    assert process.returncode is not None
    return process.returncode, out, err


async def test_run_exits_3_listing_breaches_and_writes_the_report(tmp_path: Path) -> None:
    site = small_site(tmp_path, "[report.fail_if]\np95_ms = 0.0001\ntimeouts = 0\n")
    report_path = tmp_path / "out" / "report.json"
    report_path.parent.mkdir()
    with trio.fail_after(60):
        code, out, err = await run_until_booted([str(site), "--report", str(report_path)])
    assert code == 3, (out, err)
    breaches = [line for line in err.decode().splitlines() if "threshold breached" in line]
    assert any("BootNotification p95" in line and "> 0.0001 ms" in line for line in breaches)
    assert not any("timeouts" in line for line in breaches)
    assert b"direction  action" in out  # the table
    report = json.loads(report_path.read_text())
    assert report["passed"] is False
    assert report["thresholds"] == {"p95_ms": 0.0001, "timeouts": 0}
    assert [f"evsim-trio: threshold breached: {b}" for b in report["breaches"]] == breaches
    assert report["shard"] is None
    assert report["seed"] == 3
    assert report["station_count"] == 2
    assert {s["id"] for s in report["stations"]} == {"AC22-00001", "AC22-00002"}
    boot = report["fleet"]["sent"]["BootNotification"]
    assert boot["count"] == 2
    assert boot["p95_ms"] > 0.0001
    assert report["fleet"]["total"]["count"] >= 2 + 2 * 3  # boots and status notifications
    merged = TrafficStatistics.from_json(report["fleet"])
    assert merged.sent["BootNotification"].latency.count == 2


async def test_run_without_breached_thresholds_exits_0(tmp_path: Path) -> None:
    site = small_site(tmp_path, "[report.fail_if]\np95_ms = 60000\nerror_rate = 0.5\n")
    with trio.fail_after(60):
        code, out, err = await run_until_booted([str(site)])
    assert code == 0, (out, err)
    assert b"threshold" not in err
