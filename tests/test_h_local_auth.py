"""SendLocalList and GetLocalListVersion from the CSMS, and the list in real authorizations:
the embedded CSMS in memory, under MockClock(autojump_threshold=0)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from memlink import MemoryNetwork, make_station, record_calls, running, shipped_template

from evsim_trio.csms import EmbeddedCsms
from evsim_trio.ocpp import OccurenceConstraintViolation
from evsim_trio.station import Station, load_state

HOUR = 3600.0


def station_for(network: MemoryNetwork, **kwargs: Any) -> Station:
    station = make_station(shipped_template(), network.connect(), **kwargs)
    station.configuration.set("WebSocketPingInterval", "0")
    return station


async def wait_online(station: Station, online: bool) -> None:
    """Wait until the station is (or is no longer) connected and registered."""
    changed = trio.Event()

    def notify(_station: Station) -> None:
        nonlocal changed
        changed.set()
        changed = trio.Event()

    station.on_change = notify
    while station.is_online() is not online:
        await changed.wait()


def entry(tag: str, status: str | None = "Accepted", **extra: Any) -> dict[str, Any]:
    if status is None:
        return {"idTag": tag}
    return {"idTag": tag, "idTagInfo": {"status": status, **extra}}


async def send_list(
    csms: EmbeddedCsms,
    station: Station,
    version: int,
    entries: list[dict[str, Any]] | None = None,
    update_type: str = "Full",
) -> str:
    payload: dict[str, Any] = {"listVersion": version, "updateType": update_type}
    if entries is not None:
        payload["localAuthorizationList"] = entries
    answer = await csms.call(station.station_id, "SendLocalList", payload)
    return str(answer["status"])


async def list_version(csms: EmbeddedCsms, station: Station) -> int:
    answer = await csms.call(station.station_id, "GetLocalListVersion", {})
    return int(answer["listVersion"])


async def change(csms: EmbeddedCsms, station: Station, key: str, value: str) -> None:
    payload = {"key": key, "value": value}
    answer = await csms.call(station.station_id, "ChangeConfiguration", payload)
    assert answer == {"status": "Accepted"}


# -- SendLocalList (1.6 §5.15) and GetLocalListVersion (§5.10) --------------------------------
async def test_send_local_list_answers_each_status_and_get_version_follows(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    station = station_for(network)
    station.configuration.set("SendLocalListMaxLength", "3")
    station.configuration.set("LocalAuthListMaxLength", "4")
    with trio.fail_after(HOUR):
        async with running(station, csms):
            assert await list_version(csms, station) == 0
            three = [
                entry("A"),
                entry("B", "Blocked"),
                entry("C", expiryDate="2099-01-01T00:00:00Z"),
            ]
            assert await send_list(csms, station, 5, three) == "Accepted"
            assert await list_version(csms, station) == 5
            # Differential: not above the current version.
            assert await send_list(csms, station, 5, [entry("D")], "Differential") == (
                "VersionMismatch"
            )
            assert await send_list(csms, station, 4, [entry("D")], "Differential") == (
                "VersionMismatch"
            )
            assert await send_list(csms, station, 6, [entry("D")], "Differential") == "Accepted"
            assert await list_version(csms, station) == 6
            # Failed: more than SendLocalListMaxLength in one request ...
            four = [entry(f"X{i}") for i in range(4)]
            assert await send_list(csms, station, 7, four) == "Failed"
            # ... or a list longer than LocalAuthListMaxLength (4 entries now, one more).
            assert await send_list(csms, station, 7, [entry("E")], "Differential") == "Failed"
            assert await list_version(csms, station) == 6
            assert set(station.local_list.entries()) == {"A", "B", "C", "D"}
            # A Full update replaces whatever its version.
            assert await send_list(csms, station, 2, [entry("Z")]) == "Accepted"
            assert await list_version(csms, station) == 2
            assert set(station.local_list.entries()) == {"Z"}
            # Empty Full list: cleared, version 0.
            assert await send_list(csms, station, 3) == "Accepted"
            assert await list_version(csms, station) == 0
            # NotSupported, and -1, while LocalAuthListEnabled is false.
            await change(csms, station, "LocalAuthListEnabled", "false")
            assert await send_list(csms, station, 8, [entry("A")]) == "NotSupported"
            assert await list_version(csms, station) == -1
            await change(csms, station, "LocalAuthListEnabled", "true")
            assert await list_version(csms, station) == 0


async def test_full_update_entry_without_id_tag_info_gets_a_callerror(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    station = station_for(network)
    with trio.fail_after(HOUR):
        async with running(station, csms):
            assert await send_list(csms, station, 1, [entry("A")]) == "Accepted"
            with pytest.raises(OccurenceConstraintViolation):
                await send_list(csms, station, 2, [entry("B"), entry("C", None)])
            assert await list_version(csms, station) == 1
            assert csms.stations[station.station_id].connected


async def test_local_auth_list_management_is_a_supported_profile(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    _, network = csms_network
    station = station_for(network)
    assert "LocalAuthListManagement" in station.configuration.get_csl("SupportedFeatureProfiles")
    for key in ("LocalAuthListEnabled", "LocalAuthListMaxLength", "SendLocalListMaxLength"):
        assert key in station.configuration


# -- the list in authorizations ---------------------------------------------------------------
async def test_offline_start_uses_the_local_list(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    calls = record_calls(csms)
    station = station_for(network)
    sid = station.station_id
    with trio.fail_after(HOUR):
        async with running(station, csms):
            entries = [entry("LIST-OK"), entry("LIST-BLOCKED", "Blocked")]
            assert await send_list(csms, station, 1, entries) == "Accepted"
            # The CSMS goes away: new connections refused, the current one dropped.
            csms.accepting = False
            await csms.disconnect(sid)
            await wait_online(station, False)
            assert not await station.start_transaction(2, "LIST-BLOCKED")
            assert not await station.start_transaction(2, "NOBODY")  # unknown, not allowed
            assert await station.start_transaction(1, "LIST-OK")
            assert station.connectors[1].transaction is not None
            assert station.connectors[2].transaction is None
            # Unknown Offline Authorization admits an unknown tag, never a listed Blocked one.
            station.configuration.set("AllowOfflineTxForUnknownId", "true")
            assert not await station.start_transaction(2, "LIST-BLOCKED")
            assert await station.start_transaction(2, "NOBODY")
            await trio.sleep(120)
            csms.accepting = True
            await wait_online(station, True)
            await csms.wait_until(lambda: csms.stations[sid].received["StartTransaction"] == 2)
            await station.stop_transaction(1)
            await station.stop_transaction(2)
    starts = [p["idTag"] for _, a, p in calls if a == "StartTransaction"]
    assert starts == ["LIST-OK", "NOBODY"]
    assert [a for _, a, _ in calls if a == "Authorize"] == []


async def test_online_local_pre_authorize_skips_authorize_for_listed_tags(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    calls = record_calls(csms)
    station = station_for(network)
    sid = station.station_id
    with trio.fail_after(HOUR):
        async with running(station, csms):
            await change(csms, station, "LocalPreAuthorize", "true")
            entries = [entry("LIST-OK"), entry("LIST-BLOCKED", "Blocked")]
            assert await send_list(csms, station, 1, entries) == "Accepted"
            assert await station.start_transaction(1, "LIST-OK")
            assert station.connectors[1].status == "Charging"
            # Not Accepted locally: the CSMS decides (it accepts), and the list is not changed
            # by its answer, nor is the listed tag added to the cache.
            assert await station.authorize("LIST-BLOCKED") == "Accepted"
            assert station.local_list.get("LIST-BLOCKED") == {"status": "Blocked"}
            assert "LIST-BLOCKED" not in station.auth_cache
            # Unknown tag: Authorize, whose answer is cached.
            assert await station.authorize("OTHER") == "Accepted"
            assert station.auth_cache["OTHER"]["status"] == "Accepted"
            await station.stop_transaction(1)
            await csms.wait_until(lambda: csms.stations[sid].received["StopTransaction"] == 1)
    authorized = [p["idTag"] for _, a, p in calls if a == "Authorize"]
    assert authorized == ["LIST-BLOCKED", "OTHER"]
    starts = [p["idTag"] for _, a, p in calls if a == "StartTransaction"]
    assert starts == ["LIST-OK"]


async def test_without_local_pre_authorize_a_listed_tag_is_authorized_online(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    calls = record_calls(csms)
    station = station_for(network)
    with trio.fail_after(HOUR):
        async with running(station, csms):
            assert await send_list(csms, station, 1, [entry("LIST-OK")]) == "Accepted"
            assert await station.authorize("LIST-OK") == "Accepted"
    assert [p["idTag"] for _, a, p in calls if a == "Authorize"] == ["LIST-OK"]


async def test_local_list_survives_a_restart(
    autojump_clock: trio.testing.MockClock,
    csms_network: tuple[EmbeddedCsms, MemoryNetwork],
    tmp_path: Path,
) -> None:
    csms, network = csms_network
    path = tmp_path / "station.toml"
    station = station_for(network, state_path=path)
    entries = [
        entry("A", expiryDate="2099-01-01T00:00:00Z", parentIdTag="P"),
        entry("B", "Blocked"),
    ]
    with trio.fail_after(HOUR):
        async with running(station, csms):
            assert await send_list(csms, station, 9, entries) == "Accepted"
    state = load_state(path)
    assert state is not None
    again = station_for(network, state_path=path, state=state)
    assert again.local_list.version == 9
    assert again.local_list.entries() == station.local_list.entries()
    with trio.fail_after(HOUR):
        async with running(again, csms):
            assert await list_version(csms, again) == 9
            assert await send_list(csms, again, 9, [entry("C")], "Differential") == (
                "VersionMismatch"
            )
