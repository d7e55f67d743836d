"""Worker processes: a fleet split over 2 processes answers every UI procedure as the in-process
fleet does; a killed worker's stations are failed and the rest go on; Ctrl-C stops all.

These run real processes and real sockets on 127.0.0.1 (a worker has its own trio loop, so a
MockClock cannot reach it): waits are on events (`wait_until`), never on sleeps.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from uiclient import http_request, open_ws

from evsim_trio._resources import data_dir
from evsim_trio.config import UiServerSection, load_site
from evsim_trio.simulator import (
    AUTO_MIN_STATIONS,
    PROCEDURES,
    Fleet,
    FleetCounts,
    Simulator,
    WorkerFleet,
    execute,
    make_fleet,
    worker_count,
)
from evsim_trio.simulator._channel import CHANNEL_VERSION, Channel, ChannelClosed
from evsim_trio.ui import serve_ui

TEMPLATES = data_dir("station_templates")
WAIT = 60  # bound on any wait of these tests (real time; they normally take a second or two)

Json = dict[str, Any]


def write_site(tmp_path: Path, name: str, *, workers: int | str = 0, ac: int = 4) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f'[simulator]\nseed = 5\nstate_dir = "{(tmp_path / name).as_posix()}"\n'
        '[log]\nlevel = "warning"\n[csms]\nenabled = true\nport = 0\n'
        f"[ui_server]\nenabled = false\n[workers]\nprocesses = {workers!r}\n".replace("'", '"')
        + f'[[stations]]\ntemplate = "{(TEMPLATES / "ac-3phase-2conn.toml").as_posix()}"\n'
        f"count = {ac}\n"
        f'[[stations]]\ntemplate = "{(TEMPLATES / "dc-fast.toml").as_posix()}"\ncount = 2\n'
    )
    return path


@asynccontextmanager
async def running(fleet: Fleet) -> AsyncIterator[Fleet]:
    async with trio.open_nursery() as nursery:
        await nursery.start(fleet.run)
        await booted(fleet)
        yield fleet
        await fleet.shutdown()
        nursery.cancel_scope.cancel()


async def booted(fleet: Fleet, total: int | None = None) -> None:
    def ready(counts: FleetCounts) -> bool:
        return counts.booted == counts.total and (total is None or counts.total == total)

    with trio.fail_after(WAIT):
        await fleet.wait_until(ready)


async def until(fleet: Fleet, predicate: Callable[[FleetCounts], bool]) -> None:
    with trio.fail_after(WAIT):
        await fleet.wait_until(predicate)


async def until_station(fleet: Fleet, hash_id: str, predicate: Callable[[Json], bool]) -> None:
    """Wait until `predicate(the station's listChargingStations entry)` is true."""
    with trio.fail_after(WAIT):
        while True:
            listing = await execute(fleet, "listChargingStations", {})
            (station,) = [
                s for s in listing["chargingStations"] if s["stationInfo"]["hashId"] == hash_id
            ]
            if predicate(station):
                return
            await fleet.wait_changed()


# Fields whose values depend on the moment, the port or the process, not on the procedure.
VOLATILE = {"timestamp", "csmsUrl", "uri", "supervisionUrl", "currentTime", "energyWh"}
# ... and those that say how the fleet runs (checked on their own).
HOW = {"workers", "workerProcesses"}


def normalize(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: normalize(v)
            for k, v in value.items()
            if k not in VOLATILE | HOW and not k.endswith("Ms") and k != "histogram"
        }
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


def stations_view(response: Json) -> list[Json]:
    """What listChargingStations says of each station, without the figures that move."""
    return [
        {
            "id": s["stationInfo"]["chargingStationId"],
            "hashId": s["stationInfo"]["hashId"],
            "template": s["stationInfo"]["templateName"],
            "index": s["stationInfo"]["templateIndex"],
            "started": s["started"],
            "state": s["state"],
            "wsState": s["wsState"],
            "connectors": [
                (c["connectorId"], c["connectorStatus"]["status"], c["connectorStatus"]["locked"])
                for c in s["connectors"]
            ],
            "configuration": [k["key"] for k in s["ocppConfiguration"]["configurationKey"]],
        }
        for s in response["chargingStations"]
    ]


def statistics_view(response: Json) -> Json:
    fleet = response["fleet"]
    return {
        "status": response["status"],
        "stationCount": fleet["stationCount"],
        "boots": fleet["sent"]["BootNotification"]["count"],
        "hashIds": [e["hashId"] for e in response["performanceStatistics"]],
        "ids": [e["id"] for e in response["performanceStatistics"]],
    }


async def ui_script(fleet: Fleet) -> list[tuple[str, Any]]:
    """Every UI procedure on `fleet`, with what each answered (normalized)."""
    seen: list[tuple[str, Any]] = []
    used: set[str] = set()

    async def run(procedure: str, payload: Json | None = None) -> Json:
        used.add(procedure)
        response = await execute(fleet, procedure, payload or {})
        seen.append((procedure, normalize(response)))
        return response

    async def listed() -> list[Json]:
        response = await execute(fleet, "listChargingStations", {})
        used.add("listChargingStations")
        view = stations_view(response)
        seen.append(("listChargingStations", view))
        return view

    await run("simulatorState")
    await run("listTemplates")
    stations = await listed()
    h0, h1 = stations[0]["hashId"], stations[1]["hashId"]
    statistics = await execute(fleet, "performanceStatistics", {})
    used.add("performanceStatistics")
    seen.append(("performanceStatistics", statistics_view(statistics)))
    assert (await run("heartbeat"))["hashIdsSucceeded"] == [s["hashId"] for s in stations]
    await run("authorize", {"hashIds": [h0], "idTag": "TAG-1"})
    await run("bootNotification", {"hashIds": [h1]})
    await run(
        "statusNotification",
        {"hashIds": [h0], "connectorId": 1, "status": "Available", "errorCode": "NoError"},
    )
    await run("meterValues", {"hashIds": [h0], "connectorId": 1})
    await run("dataTransfer", {"hashIds": [h0, h1], "vendorId": "evsim", "data": "x"})
    await run("diagnosticsStatusNotification", {"hashIds": [h0], "status": "Idle"})
    await run("firmwareStatusNotification", {"hashIds": [h0], "status": "Idle"})
    await run("changeConfiguration", {"key": "HeartbeatInterval", "value": "300"})
    await run("changeConfiguration", {"hashIds": [h0], "key": "NoSuchKey", "value": "1"})
    await run("lockConnector", {"hashIds": [h0, h1], "connectorId": 1})
    await run("lockConnector", {"hashIds": [h0], "connectorId": 9})
    await listed()
    await run("unlockConnector", {"hashIds": [h0, h1], "connectorId": 1})
    started = await run("startTransaction", {"hashIds": [h0], "connectorId": 1, "idTag": "TAG-1"})
    assert started["status"] == "success", started
    (station,) = [
        s
        for s in (await execute(fleet, "listChargingStations", {}))["chargingStations"]
        if s["stationInfo"]["hashId"] == h0
    ]
    transaction_id = station["connectors"][1]["connectorStatus"]["transactionId"]
    assert isinstance(transaction_id, int)
    stopped = await run("stopTransaction", {"transactionId": transaction_id})
    assert stopped["hashIdsSucceeded"] == [h0], stopped
    await run("stopTransaction", {"transactionId": 987654})
    await run("startAutomaticTransactionGenerator", {"hashIds": [h1]})
    await run("stopAutomaticTransactionGenerator", {"hashIds": [h1]})
    await run("closeConnection", {"hashIds": [h1]})
    await until_station(fleet, h1, lambda s: s["wsState"] == 3)
    await run("openConnection", {"hashIds": [h1]})
    await until_station(fleet, h1, lambda s: s["wsState"] == 1)
    await booted(fleet)
    await run("stopChargingStation", {"hashIds": [h1]})
    await listed()
    await run("startChargingStation", {"hashIds": [h1]})
    await booted(fleet)
    await run("setSupervisionUrl", {"hashIds": [h0], "url": str(fleet.csms_url)})
    added = await run(
        "addChargingStations",
        {"template": "ac-1phase", "numberOfStations": 2, "options": {"autoStart": True}},
    )
    await booted(fleet, total=len(stations) + 2)
    await listed()
    await run("simulatorState")
    await run("deleteChargingStations", {"hashIds": added["hashIdsSucceeded"]})
    await run("heartbeat", {"hashIds": ["no-such-station", h0]})
    await run("stopSimulator")
    await until(fleet, lambda c: c.stopped == c.total)
    await run("simulatorState")
    await run("startSimulator")
    await booted(fleet)
    await listed()
    assert used == set(PROCEDURES)  # every procedure of the UI protocol was asked
    return seen


async def test_a_fleet_over_2_worker_processes_answers_every_procedure_as_in_process(
    tmp_path: Path,
) -> None:
    in_process = make_fleet(load_site(write_site(tmp_path, "inproc")))
    assert isinstance(in_process, Simulator)
    async with running(in_process):
        expected = await ui_script(in_process)
    workers = make_fleet(load_site(write_site(tmp_path, "workers", workers=2)))
    assert isinstance(workers, WorkerFleet)
    async with running(workers):
        state = (await execute(workers, "simulatorState", {}))["state"]
        assert state["configuration"]["workers"] == 2
        assert state["workerProcesses"] == 2
        pids = workers.worker_pids()
        assert len(pids) == 2
        assert os.getpid() not in pids
        assert None not in pids
        got = await ui_script(workers)
    for (procedure, want), (name, have) in zip(expected, got, strict=True):
        assert name == procedure
        assert have == want, procedure
    # The workers ran stations: both processes had a share of them.
    assert sorted(len([e for e in workers.roster.values() if e.worker == j]) for j in (0, 1)) == [
        3,
        3,
    ]


async def test_killing_a_worker_marks_its_stations_failed_and_the_rest_go_on(
    tmp_path: Path,
) -> None:
    fleet = WorkerFleet(load_site(write_site(tmp_path, "kill")), processes=2)
    async with running(fleet):
        victim = fleet.workers[0]
        assert victim.pid is not None
        doomed = {h for h, e in fleet.roster.items() if e.worker == 0}
        living = set(fleet.roster) - doomed
        assert len(doomed) == 3
        assert len(living) == 3
        os.kill(victim.pid, signal.SIGKILL)
        await until(fleet, lambda c: c.failed == 3)
        counts = fleet.counts()
        assert (counts.total, counts.booted, counts.failed) == (6, 3, 3)
        assert victim.error is not None
        assert "worker process 1" in victim.error

        listing = await execute(fleet, "listChargingStations", {})
        states = {s["stationInfo"]["hashId"]: s["state"] for s in listing["chargingStations"]}
        assert states == {**dict.fromkeys(doomed, "failed"), **dict.fromkeys(living, "booted")}

        response = await execute(fleet, "heartbeat", {})
        assert response["status"] == "failure"
        assert set(response["hashIdsSucceeded"]) == living
        assert set(response["hashIdsFailed"]) == doomed
        assert all("worker process 1" in e["errorMessage"] for e in response["responsesFailed"])

        await fleet.refresh_metrics()
        metrics = fleet.metrics_now()
        assert metrics["stations"]["failed"] == 3
        assert metrics["stations"]["booted"] == 3

        statistics = await execute(fleet, "performanceStatistics", {})
        assert {e["hashId"] for e in statistics["performanceStatistics"]} == living
        # The survivors keep working: a transaction on one of them.
        (target, *_) = fleet.ordered(living)
        started = await execute(
            fleet,
            "startTransaction",
            {"hashIds": [target], "connectorId": 1, "idTag": "TAG-9"},
        )
        assert started["status"] == "success", started


async def test_worker_fleet_statistics_merge_every_station_exactly(tmp_path: Path) -> None:
    fleet = WorkerFleet(load_site(write_site(tmp_path, "stats")), processes=2)
    async with running(fleet):
        await execute(fleet, "heartbeat", {})
        statistics = await fleet.statistics()
    assert [f.hash_id for f in statistics.stations] == fleet.ordered(fleet.roster)
    for action in ("BootNotification", "StatusNotification", "Heartbeat"):
        per_station = sum(f.summary()["sent"][action]["count"] for f in statistics.stations)
        merged = statistics.fleet.sent[action]
        assert merged.count == per_station > 0
        assert merged.latency.count == per_station  # every answer's time is in the histogram
    # After shutdown, the final figures come from the workers' `bye`.
    final = await fleet.statistics()
    assert final.fleet.sent["Heartbeat"].count == 6


def test_processes_auto_means_workers_only_for_large_fleets() -> None:
    cores = os.cpu_count() or 1
    assert worker_count("auto", AUTO_MIN_STATIONS - 1) == 0
    assert worker_count("auto", AUTO_MIN_STATIONS) == cores
    assert worker_count(0, 5000) == 0
    assert worker_count(4, 5000) == 4
    assert worker_count(4, 2) == 2  # never more workers than stations


async def test_control_channel_frames_versioned_json_and_rejects_anything_else() -> None:
    left, right = trio.testing.memory_stream_pair()
    sender, receiver = Channel(left), Channel(right)
    await sender.send({"t": "call", "id": 1, "payload": {"ü": [1, 2]}})
    assert await receiver.receive() == {
        "v": CHANNEL_VERSION,
        "t": "call",
        "id": 1,
        "payload": {"ü": [1, 2]},
    }
    body = b'{"v": 999, "t": "call"}'
    await left.send_all(len(body).to_bytes(4, "big") + body)
    with pytest.raises(ChannelClosed, match="version"):
        await receiver.receive()
    await left.send_all((2**31).to_bytes(4, "big"))
    with pytest.raises(ChannelClosed, match="not a channel"):
        await Channel(right).receive()
    await left.aclose()
    with pytest.raises(ChannelClosed):
        await Channel(right).receive()


async def test_run_with_workers_stops_every_worker_on_sigint_within_5_s(tmp_path: Path) -> None:
    path = write_site(tmp_path, "cli", workers=2)
    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            command = [sys.executable, "-m", "evsim_trio", "run", str(path), "--log-level", "info"]
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
            seen = b""
            async for chunk in process.stdout:
                seen += chunk
                if b"6 booted" in seen:
                    break
            assert b"6 stations in 2 worker processes" in seen
            errors = bytearray()

            async def drain_stderr() -> None:
                assert process.stderr is not None
                async for chunk in process.stderr:
                    errors.extend(chunk)

            nursery.start_soon(drain_stderr)
            process.send_signal(signal.SIGINT)
            with trio.move_on_after(5) as scope:
                async for chunk in process.stdout:
                    seen += chunk
                await process.wait()
            assert not scope.cancelled_caught, seen
    assert process.returncode == 0, (seen, bytes(errors))
    assert re.search(rb"stopped after [\d.]+ s: 6 stations", seen), seen
    # Every station closed its socket cleanly (close code 1001, "station stopped").
    assert bytes(errors).count(b"GOING_AWAY, reason=station stopped") == 6, bytes(errors)
    # The final table has the workers' figures: 6 BootNotifications.
    assert re.search(rb"BootNotification\s+6\s", seen), seen


async def test_the_ui_server_drives_a_worker_fleet_over_websocket_and_http(
    tmp_path: Path,
) -> None:
    fleet = WorkerFleet(load_site(write_site(tmp_path, "ui")), processes=2)
    async with running(fleet), trio.open_nursery() as nursery:
        urls = await nursery.start(serve_ui, fleet, UiServerSection(port=0))
        async with open_ws(urls[0]) as client:
            listing = await client.request("listChargingStations")
            hash_ids = [s["stationInfo"]["hashId"] for s in listing["chargingStations"]]
            assert hash_ids == fleet.ordered(fleet.roster)
            stopped = await client.request("stopChargingStation", {"hashIds": hash_ids[:1]})
            assert stopped == {"status": "success", "hashIdsSucceeded": hash_ids[:1]}
            await client.wait_refresh()  # a station change in a worker reaches the page
        response = await http_request(urls[0], "POST", "/ui/0.0.1/heartbeat", body=b"{}")
        assert response.status == 400  # the stopped station cannot send one
        body = response.json()
        assert body["hashIdsSucceeded"] == hash_ids[1:]
        assert body["hashIdsFailed"] == hash_ids[:1]
        metrics = (await http_request(urls[0], "GET", "/metrics")).body.decode()
        assert 'evsim_stations{state="booted"} 5.0' in metrics
        assert 'evsim_stations{state="stopped"} 1.0' in metrics
        assert 'evsim_messages_sent_total{action="Heartbeat"} 5.0' in metrics
        assert 'evsim_csms_response_seconds_count{action="BootNotification"} 6.0' in metrics
        nursery.cancel_scope.cancel()


async def test_a_hung_worker_fails_its_stations_part_of_a_request_and_not_the_rest(
    tmp_path: Path,
) -> None:
    fleet = WorkerFleet(load_site(write_site(tmp_path, "hung")), processes=2)
    async with running(fleet):
        fleet.call_timeout = 0.5  # the wait this test is about: kept short
        frozen = fleet.workers[1]
        assert frozen.pid is not None
        stuck = {h for h, e in fleet.roster.items() if e.worker == 1}
        os.kill(frozen.pid, signal.SIGSTOP)
        try:
            response = await execute(fleet, "heartbeat", {})
        finally:
            os.kill(frozen.pid, signal.SIGCONT)
        assert set(response["hashIdsFailed"]) == stuck
        assert set(response["hashIdsSucceeded"]) == set(fleet.roster) - stuck
        messages = [e["errorMessage"] for e in response["responsesFailed"]]
        assert all("did not answer heartbeat" in m for m in messages), messages
        # Running again, it answers again (its late answer to the abandoned call is dropped).
        fleet.call_timeout = WAIT
        again = await execute(fleet, "heartbeat", {})
        assert again["status"] == "success"
        assert set(again["hashIdsSucceeded"]) == set(fleet.roster)
