"""UpdateFirmware and FirmwareStatusNotification (OCPP 1.6 §5.19, §4.5).

The station talks to the embedded CSMS over memory streams under MockClock(autojump_threshold=0),
so the status sequence is checked at its exact virtual times. A real download runs in a worker
thread, which MockClock does not mix with (it would jump virtual time meanwhile): those tests run
on the real clock with zero durations, and wait on events, never sleep.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import attrs
import h11
import pytest
import trio
import trio.testing
from memlink import MemoryNetwork, make_station, record_calls, running, shipped_template, wait_state

from evsim_trio.config._template import FirmwareUpgrade
from evsim_trio.csms import EmbeddedCsms
from evsim_trio.station import Station, StationState, _h_firmware, utc_now
from evsim_trio.station._clock import format_timestamp, parse_timestamp
from evsim_trio.station._h_firmware import (
    FirmwareRequest,
    is_loopback_http,
    next_firmware_version,
    run_firmware_update,
)

HOUR = 3600.0
DEADLINE = 10.0  # real-clock tests
Calls = list[tuple[float, str, dict[str, Any]]]
LOCATION = "https://firmware.example.com/ac22/fw.bin"  # not loopback: simulated


def station_for(network: MemoryNetwork, reset_time: float = 45, **firmware: Any) -> Station:
    """A station of the shipped template (firmware 1.4.2) with a `[firmware_upgrade]` section."""
    settings = FirmwareUpgrade(**{"download_duration": 10, "install_duration": 30, **firmware})
    template = shipped_template(firmware_upgrade=settings, reset_time=reset_time)
    station = make_station(template, network.connect())
    station.configuration.set("WebSocketPingInterval", "0")
    station.configuration.set("MeterValueSampleInterval", "0")
    return station


def statuses(calls: Calls) -> list[tuple[float, str]]:
    """(virtual time, status) of every FirmwareStatusNotification the CSMS received."""
    return [(t, p["status"]) for t, a, p in calls if a == "FirmwareStatusNotification"]


def timeline(calls: Calls, origin: float) -> tuple[list[float], list[str]]:
    """The FirmwareStatusNotification times (from `origin`) and statuses."""
    sent = statuses(calls)
    return [t - origin for t, _ in sent], [status for _, status in sent]


async def wait_statuses(csms: EmbeddedCsms, calls: Calls, count: int) -> list[str]:
    await csms.wait_until(lambda: len(statuses(calls)) >= count)
    return [status for _, status in statuses(calls)]


async def wait_station(station: Station, predicate: Callable[[], bool]) -> None:
    """Wait until `predicate()` holds, re-checked on every change the station reports."""
    changed = trio.Event()

    def notify(_station: Station) -> None:
        nonlocal changed
        changed.set()
        changed = trio.Event()

    station.on_change = notify
    while not predicate():
        await changed.wait()


def retrieve_in(seconds: float) -> tuple[str, float]:
    """A retrieveDate `seconds` from now, and the virtual time the update starts at.

    The timestamp has millisecond precision: the update starts at the instant it names, or at
    once when that is (by a fraction of a millisecond) already past.
    """
    now, t0 = utc_now(), trio.current_time()
    text = format_timestamp(now + timedelta(seconds=seconds))
    return text, t0 + max(0.0, (parse_timestamp(text) - now).total_seconds())


def boots(calls: Calls) -> list[tuple[float, dict[str, Any]]]:
    return [(t, p) for t, a, p in calls if a == "BootNotification"]


# -- the whole sequence ----------------------------------------------------------------------------
@pytest.mark.parametrize(("configured", "installed"), [("", "1.4.3"), ("2.0.0-rc1", "2.0.0-rc1")])
async def test_update_runs_every_status_at_its_time_and_reboots_with_the_new_version(
    autojump_clock: trio.testing.MockClock,
    csms_network: tuple[EmbeddedCsms, MemoryNetwork],
    configured: str,
    installed: str,
) -> None:
    csms, network = csms_network
    calls = record_calls(csms)
    station = station_for(network, version=configured)
    sid = station.station_id
    assert station.firmware_version == "1.4.2"
    with trio.fail_after(HOUR):
        async with running(station, csms):
            retrieve, at = retrieve_in(100)
            payload = {"location": LOCATION, "retrieveDate": retrieve}
            assert await csms.call(sid, "UpdateFirmware", payload) == {}
            await csms.wait_until(lambda: csms.stations[sid].boot_count == 2)
            await wait_state(station, StationState.BOOTED)
    times, sent = timeline(calls, at)
    assert sent == ["Downloading", "Downloaded", "Installing", "Installed"]
    assert times == pytest.approx([0, 10, 10, 40], abs=1e-6)
    (_, first), (second_time, second) = boots(calls)
    assert first["firmwareVersion"] == "1.4.2"
    assert second["firmwareVersion"] == installed
    # Reboot: the link closes at once, the station stays down reset_time, then boots.
    assert second_time == pytest.approx(at + 40 + 45, abs=1e-6)
    assert station.firmware_version == installed
    assert station.to_state()["firmware_version"] == installed
    assert station.firmware_status == "Idle"


async def test_retrieve_date_in_the_past_starts_at_once(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    calls = record_calls(csms)
    station = station_for(network, reset=False)
    with trio.fail_after(HOUR):
        async with running(station, csms):
            t0 = trio.current_time()
            retrieve = format_timestamp(utc_now() - timedelta(hours=1))
            await csms.call(
                station.station_id,
                "UpdateFirmware",
                {"location": LOCATION, "retrieveDate": retrieve},
            )
            await wait_statuses(csms, calls, 4)
            await trio.sleep(600)
    assert [t - t0 for t, _ in statuses(calls)] == [0, 10, 10, 40]
    # reset = false: the new version is taken without a reboot.
    assert len(boots(calls)) == 1
    assert station.firmware_version == "1.4.3"


# -- failures --------------------------------------------------------------------------------------
async def test_download_failure_is_retried_retry_interval_apart_then_download_failed(
    autojump_clock: trio.testing.MockClock,
    csms_network: tuple[EmbeddedCsms, MemoryNetwork],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    csms, network = csms_network
    calls = record_calls(csms)
    attempts: list[float] = []
    download_once = _h_firmware._download_once

    async def recorded(*args: Any) -> None:
        attempts.append(trio.current_time())
        await download_once(*args)

    monkeypatch.setattr(_h_firmware, "_download_once", recorded)
    station = station_for(network, failure="download")
    sid = station.station_id
    with trio.fail_after(HOUR):
        async with running(station, csms):
            retrieve, at = retrieve_in(5)
            payload = {
                "location": LOCATION,
                "retrieveDate": retrieve,
                "retries": 2,
                "retryInterval": 20,
            }
            assert await csms.call(sid, "UpdateFirmware", payload) == {}
            assert await wait_statuses(csms, calls, 2) == ["Downloading", "DownloadFailed"]
            await wait_station(station, lambda: station.firmware_status == "Idle")
            await trio.sleep(600)  # nothing follows: no install, no reboot
    # Three attempts of 10 s each, 20 s apart.
    assert attempts == pytest.approx([at, at + 30, at + 60], abs=1e-6)
    times, sent = timeline(calls, at)
    assert sent == ["Downloading", "DownloadFailed"]
    assert times == pytest.approx([0, 70], abs=1e-6)
    assert len(boots(calls)) == 1
    assert station.firmware_version == "1.4.2"


async def test_install_failure_reports_installation_failed_and_does_not_reboot(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    calls = record_calls(csms)
    station = station_for(network, failure="install")
    sid = station.station_id
    with trio.fail_after(HOUR):
        async with running(station, csms):
            retrieve, at = retrieve_in(0)
            await csms.call(sid, "UpdateFirmware", {"location": LOCATION, "retrieveDate": retrieve})
            await wait_statuses(csms, calls, 4)
            await wait_station(station, lambda: station.firmware_status == "Idle")
            await trio.sleep(600)
    times, sent = timeline(calls, at)
    assert sent == ["Downloading", "Downloaded", "Installing", "InstallationFailed"]
    assert times == pytest.approx([0, 10, 10, 40], abs=1e-6)
    assert len(boots(calls)) == 1
    assert csms.stations[sid].connections == 1
    assert station.firmware_version == "1.4.2"


# -- a transaction defers the installation ---------------------------------------------------------
async def test_running_transaction_defers_installation_until_stop_transaction(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    calls = record_calls(csms)
    station = station_for(network)
    sid = station.station_id
    with trio.fail_after(10 * HOUR):
        async with running(station, csms):
            assert await station.start_transaction(1, "TAG-1")
            retrieve, at = retrieve_in(0)
            await csms.call(sid, "UpdateFirmware", {"location": LOCATION, "retrieveDate": retrieve})
            assert await wait_statuses(csms, calls, 2) == ["Downloading", "Downloaded"]
            await trio.sleep(600)
            assert station.firmware_status == "Downloaded"
            assert len(statuses(calls)) == 2
            stopped_at = trio.current_time()
            assert await station.stop_transaction(1)
            await csms.wait_until(lambda: csms.stations[sid].boot_count == 2)
            await wait_state(station, StationState.BOOTED)
    sequence = [
        (a, p.get("status"))
        for _, a, p in calls
        if a in ("StopTransaction", "FirmwareStatusNotification")
    ]
    assert sequence == [
        ("FirmwareStatusNotification", "Downloading"),
        ("FirmwareStatusNotification", "Downloaded"),
        ("StopTransaction", None),
        ("FirmwareStatusNotification", "Installing"),
        ("FirmwareStatusNotification", "Installed"),
    ]
    times = {status: t for t, status in statuses(calls)}
    assert times["Downloaded"] == pytest.approx(at + 10, abs=1e-6)
    assert times["Installing"] == pytest.approx(stopped_at, abs=1e-6)
    assert times["Installed"] == pytest.approx(stopped_at + 30, abs=1e-6)
    # No transaction ran at the reboot: no StopTransaction with reason SoftReset.
    assert [p["reason"] for _, a, p in calls if a == "StopTransaction"] == ["Local"]
    assert boots(calls)[1][1]["firmwareVersion"] == "1.4.3"


# -- TriggerMessage, a second UpdateFirmware, offline ----------------------------------------------
async def test_trigger_message_reports_idle_then_downloading_during_a_download(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    calls = record_calls(csms)
    station = station_for(network, download_duration=100, reset=False)
    sid = station.station_id
    trigger = {"requestedMessage": "FirmwareStatusNotification"}
    with trio.fail_after(HOUR):
        async with running(station, csms):
            assert await csms.call(sid, "TriggerMessage", trigger) == {"status": "Accepted"}
            assert await wait_statuses(csms, calls, 1) == ["Idle"]
            retrieve, _ = retrieve_in(0)
            await csms.call(sid, "UpdateFirmware", {"location": LOCATION, "retrieveDate": retrieve})
            await trio.sleep(50)
            assert station.firmware_status == "Downloading"
            assert await csms.call(sid, "TriggerMessage", trigger) == {"status": "Accepted"}
            assert await wait_statuses(csms, calls, 3) == ["Idle", "Downloading", "Downloading"]
            await wait_statuses(csms, calls, 6)
            await wait_station(station, lambda: station.firmware_status == "Idle")
            await csms.call(sid, "TriggerMessage", trigger)
            assert (await wait_statuses(csms, calls, 7))[-1] == "Idle"
    assert [s for _, s in statuses(calls)][3:6] == ["Downloaded", "Installing", "Installed"]


async def test_a_second_update_firmware_cancels_the_running_one(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    calls = record_calls(csms)
    station = station_for(network, download_duration=100, reset=False)
    sid = station.station_id
    with trio.fail_after(HOUR):
        async with running(station, csms):
            retrieve, at = retrieve_in(0)
            await csms.call(sid, "UpdateFirmware", {"location": LOCATION, "retrieveDate": retrieve})
            await trio.sleep(50)
            later, second_at = retrieve_in(200)
            await csms.call(sid, "UpdateFirmware", {"location": LOCATION, "retrieveDate": later})
            # The first download is gone; the second has not begun.
            assert station.firmware_status == "Idle"
            await wait_statuses(csms, calls, 5)
            await trio.sleep(600)
    times, sent = timeline(calls, at)
    assert sent == ["Downloading", "Downloading", "Downloaded", "Installing", "Installed"]
    # The first download ran 50 s and was dropped; the second started at its retrieveDate.
    assert times == pytest.approx([0, *(second_at - at + d for d in (0, 100, 100, 130))], abs=1e-6)
    # One installation: one version step.
    assert station.firmware_version == "1.4.3"


async def test_offline_update_records_every_status_without_notifications(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    network = MemoryNetwork(nursery, EmbeddedCsms().handle_request)
    station = station_for(network, reset=False)  # never started
    seen: list[tuple[float, str]] = []
    station.on_change = lambda s: seen.append((trio.current_time(), s.firmware_status))
    t0 = trio.current_time()
    request = FirmwareRequest(LOCATION, utc_now())
    with trio.fail_after(HOUR):
        await run_firmware_update(station, request)
    assert [(t - t0, status) for t, status in seen] == [
        (0, "Downloading"),
        (10, "Downloaded"),
        (10, "Installing"),
        (40, "Installed"),
        (40, "Idle"),
    ]
    assert station.firmware_version == "1.4.3"
    assert network.attempts == []


# -- the profile -----------------------------------------------------------------------------------
async def test_supported_feature_profiles_include_firmware_management(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    station = station_for(network)
    with trio.fail_after(HOUR):
        async with running(station, csms):
            answer = await csms.call(
                station.station_id, "GetConfiguration", {"key": ["SupportedFeatureProfiles"]}
            )
    [entry] = answer["configurationKey"]
    assert "FirmwareManagement" in entry["value"].split(",")


# -- pure helpers ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("running", "configured", "expected"),
    [
        ("1.4.2", "", "1.4.3"),
        ("1.09", "", "1.10"),
        ("1.99", "", "1.100"),
        ("v7-beta", "", "v8-beta"),
        ("2024.01.31-build12", "", "2024.01.31-build13"),
        ("stable", "", "stable.1"),
        ("", "", "1"),
        ("1.4.2", "9.9.9", "9.9.9"),
        ("9" * 50, "", ("1" + "0" * 50)[-50:]),
    ],
)
def test_next_firmware_version_increments_the_last_integer(
    running: str, configured: str, expected: str
) -> None:
    assert next_firmware_version(running, configured) == expected


@pytest.mark.parametrize(
    ("location", "real"),
    [
        ("http://127.0.0.1:8080/fw.bin", True),
        ("https://localhost/fw.bin", True),
        ("http://[::1]:9000/fw.bin", True),
        ("http://127.1.2.3/fw.bin", True),
        ("http://192.168.1.10/fw.bin", False),
        ("https://firmware.example.com/fw.bin", False),
        ("ftp://127.0.0.1/fw.bin", False),
        ("http://[::1/fw.bin", False),
        ("fw.bin", False),
    ],
)
def test_only_http_locations_on_loopback_are_really_downloaded(location: str, real: bool) -> None:
    assert is_loopback_http(location) is real


def test_update_firmware_request_reads_defaults() -> None:
    request = FirmwareRequest.from_payload(
        {"location": LOCATION, "retrieveDate": "2030-01-02T03:04:05.678Z"}
    )
    assert request.retrieve_date == datetime.fromisoformat("2030-01-02T03:04:05.678+00:00")
    assert (request.retries, request.retry_interval) == (0, 60)


# -- real downloads from loopback (real clock) -----------------------------------------------------
@attrs.define
class FirmwareServer:
    """Serves GET requests: `body` with 200, or `status` with an empty body."""

    status: int = 200
    body: bytes = b"\x7fFIRMWARE" * 1000
    requests: list[tuple[str, str]] = attrs.field(factory=list)

    async def handle(self, stream: trio.SocketStream) -> None:
        connection = h11.Connection(h11.SERVER)
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Request):
                self.requests.append((event.method.decode(), event.target.decode()))
            elif isinstance(event, h11.EndOfMessage):
                break
        body = self.body if self.status == 200 else b""
        response = h11.Response(
            status_code=self.status, headers=[("content-length", str(len(body)))]
        )
        await stream.send_all(
            connection.send(response)
            + connection.send(h11.Data(data=body))
            + connection.send(h11.EndOfMessage())
        )
        await stream.aclose()

    async def serve(self, nursery: trio.Nursery) -> str:
        listeners = await nursery.start(partial(trio.serve_tcp, self.handle, 0, host="127.0.0.1"))
        return f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"


async def test_loopback_location_is_really_downloaded_then_installed_and_rebooted(
    nursery: trio.Nursery,
    csms_network: tuple[EmbeddedCsms, MemoryNetwork],
    caplog: pytest.LogCaptureFixture,
) -> None:
    csms, network = csms_network
    calls = record_calls(csms)
    server = FirmwareServer()
    base = await server.serve(nursery)
    # A long simulated download would blow the deadline: a real one does not use it.
    station = station_for(network, reset_time=0, download_duration=3600, install_duration=0)
    sid = station.station_id
    payload = {"location": base + "/fw/ac22-1.4.3.bin", "retrieveDate": format_timestamp(utc_now())}
    with trio.fail_after(DEADLINE), caplog.at_level(logging.INFO):
        async with running(station, csms):
            assert await csms.call(sid, "UpdateFirmware", payload) == {}
            await csms.wait_until(lambda: csms.stations[sid].boot_count == 2)
            await wait_state(station, StationState.BOOTED)
    assert server.requests == [("GET", "/fw/ac22-1.4.3.bin")]
    assert timeline(calls, 0)[1] == ["Downloading", "Downloaded", "Installing", "Installed"]
    assert boots(calls)[1][1]["firmwareVersion"] == "1.4.3"
    assert any(f"({len(server.body)} bytes)" in r.getMessage() for r in caplog.records)


async def test_loopback_404_gives_download_failed(
    nursery: trio.Nursery, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    calls = record_calls(csms)
    server = FirmwareServer(status=404)
    base = await server.serve(nursery)
    station = station_for(network, reset_time=0, install_duration=0)
    sid = station.station_id
    payload = {"location": base + "/missing.bin", "retrieveDate": format_timestamp(utc_now())}
    with trio.fail_after(DEADLINE):
        async with running(station, csms):
            await csms.call(sid, "UpdateFirmware", payload)
            assert await wait_statuses(csms, calls, 2) == ["Downloading", "DownloadFailed"]
            await wait_station(station, lambda: station.firmware_status == "Idle")
    assert server.requests == [("GET", "/missing.bin")]
    assert len(boots(calls)) == 1
    assert station.firmware_version == "1.4.2"
