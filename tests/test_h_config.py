"""GetConfiguration, ChangeConfiguration, ClearCache and DataTransfer from the CSMS, in memory
against the embedded CSMS under MockClock(autojump_threshold=0)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing
from memlink import MemoryNetwork, make_station, shipped_template, wait_state

from evsim_trio.config import ConfigurationKey as TemplateKey
from evsim_trio.csms import EmbeddedCsms, StationRecord
from evsim_trio.ocpp import OccurenceConstraintViolation
from evsim_trio.station import Station, StationState
from evsim_trio.station._handlers import REGISTRY
from evsim_trio.station._keys import implemented_profiles

HOUR = 3600.0


@pytest.fixture
def csms_network(nursery: trio.Nursery) -> tuple[EmbeddedCsms, MemoryNetwork]:
    csms = EmbeddedCsms(heartbeat_interval=60)
    return csms, MemoryNetwork(nursery, csms.handle_request)


@asynccontextmanager
async def booted(
    csms_network: tuple[EmbeddedCsms, MemoryNetwork], *entries: TemplateKey
) -> AsyncIterator[tuple[EmbeddedCsms, Station]]:
    """A station of the shipped template, `entries` added to its configuration, booted."""
    csms, network = csms_network
    template = shipped_template()
    names = {entry.key for entry in entries}
    kept = tuple(entry for entry in template.configuration if entry.key not in names)
    template = shipped_template(configuration=(*kept, *entries))
    station = make_station(template, network.connect())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(station.run)
        await wait_state(station, StationState.BOOTED)
        yield csms, station
        station.stop()
        nursery.cancel_scope.cancel()
    assert not csms.violations


def reported(station: Station, key: str) -> dict[str, Any]:
    entry = station.configuration.entry(key)
    assert entry is not None
    return {"key": entry.key, "readonly": entry.readonly, "value": entry.value}


# -- GetConfiguration (1.6 §5.8) -----------------------------------------------------------------
@pytest.mark.parametrize("payload", [{}, {"key": []}])
async def test_get_configuration_without_keys_reports_every_visible_key(
    autojump_clock: trio.testing.MockClock,
    csms_network: tuple[EmbeddedCsms, MemoryNetwork],
    payload: dict[str, Any],
) -> None:
    hidden = TemplateKey("FactorySecret", "42", visible=False)
    limit = TemplateKey("GetConfigurationMaxKeys", "5", readonly=True)
    with trio.fail_after(HOUR):
        async with booted(csms_network, hidden, limit) as (csms, station):
            answer = await csms.call(station.station_id, "GetConfiguration", payload)
    keys = answer["configurationKey"]
    assert "unknownKey" not in answer
    assert keys == [reported(station, e.key) for e in station.configuration.visible_keys()]
    names = {k["key"] for k in keys}
    assert "FactorySecret" not in names
    # Every key, more than GetConfigurationMaxKeys: that bounds the keys a request names.
    assert len(keys) == len(station.configuration) - 1 > 5
    assert {"HeartbeatInterval", "NumberOfConnectors", "MaxCurrent"} <= names


async def test_get_configuration_with_keys_reports_them_and_the_unknown_ones(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    hidden = TemplateKey("FactorySecret", "42", visible=False)
    with trio.fail_after(HOUR):
        async with booted(csms_network, hidden) as (csms, station):
            requested = ["HeartbeatInterval", "heartbeatinterval", "Nope", "FactorySecret"]
            answer = await csms.call(
                station.station_id,
                "GetConfiguration",
                {"key": [*requested, "NumberOfConnectors", "Nope"]},
            )
    assert answer == {
        "configurationKey": [
            {"key": "HeartbeatInterval", "readonly": False, "value": "60"},
            {"key": "NumberOfConnectors", "readonly": True, "value": "2"},
        ],
        "unknownKey": ["Nope", "FactorySecret"],
    }


async def test_get_configuration_with_only_unknown_keys_reports_them_unknown(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    with trio.fail_after(HOUR):
        async with booted(csms_network) as (csms, station):
            answer = await csms.call(station.station_id, "GetConfiguration", {"key": ["X"]})
    assert answer == {"configurationKey": [], "unknownKey": ["X"]}


async def test_get_configuration_naming_more_than_max_keys_gets_a_callerror(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    limit = TemplateKey("GetConfigurationMaxKeys", "2", readonly=True)
    with trio.fail_after(HOUR):
        async with booted(csms_network, limit) as (csms, station):
            sid = station.station_id
            with pytest.raises(OccurenceConstraintViolation, match="GetConfigurationMaxKeys"):
                await csms.call(sid, "GetConfiguration", {"key": ["A", "B", "C"]})
            # Two keys are fine, and the station is still there to answer.
            answer = await csms.call(sid, "GetConfiguration", {"key": ["ResetRetries", "B"]})
            assert answer["unknownKey"] == ["B"]
            assert csms.stations[sid].connected


async def test_supported_feature_profiles_follow_the_station_handlers(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    with trio.fail_after(HOUR):
        async with booted(csms_network) as (csms, station):
            answer = await csms.call(
                station.station_id, "GetConfiguration", {"key": ["SupportedFeatureProfiles"]}
            )
    [entry] = answer["configurationKey"]
    assert entry["readonly"] is True
    assert entry["value"] == ",".join(implemented_profiles(REGISTRY))
    assert entry["value"].startswith("Core")


# -- ChangeConfiguration (1.6 §5.3) --------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "value", "status", "stored"),
    [
        ("ResetRetries", "5", "Accepted", "5"),
        ("meterValuesSampledData", "Voltage, SoC", "Accepted", "Voltage,SoC"),
        ("MaxCurrent", "16", "Accepted", "16"),
        ("NumberOfConnectors", "3", "Rejected", "2"),
        ("ResetRetries", "many", "Rejected", "3"),
        ("MeterValuesSampledData", "Banana", "Rejected", "Energy.Active.Import.Register"),
        ("ConnectionTimeOut", "45", "RebootRequired", "45"),
        ("NoSuchKey", "1", "NotSupported", None),
        ("FactorySecret", "1", "NotSupported", "42"),
    ],
)
async def test_change_configuration_statuses(
    autojump_clock: trio.testing.MockClock,
    csms_network: tuple[EmbeddedCsms, MemoryNetwork],
    monkeypatch: pytest.MonkeyPatch,
    key: str,
    value: str,
    status: str,
    stored: str | None,
) -> None:
    entries = (
        TemplateKey("FactorySecret", "42", visible=False),
        TemplateKey("ConnectionTimeOut", "60", reboot=True),
        TemplateKey("ResetRetries", "3"),
        TemplateKey("MeterValuesSampledData", "Energy.Active.Import.Register"),
    )
    with trio.fail_after(HOUR):
        async with booted(csms_network, *entries) as (csms, station):
            persisted: list[None] = []
            persist = station.persist
            monkeypatch.setattr(station, "persist", lambda: (persisted.append(None), persist())[1])
            answer = await csms.call(
                station.station_id, "ChangeConfiguration", {"key": key, "value": value}
            )
            assert answer == {"status": status}
            assert station.configuration.get(key) == stored
            # A stored change is written to the station state.
            assert bool(persisted) is (status in ("Accepted", "RebootRequired"))


async def test_heartbeat_interval_change_restarts_heartbeat_at_new_period(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, _ = csms_network
    beats: list[float] = []

    def heartbeat(record: StationRecord, payload: dict[str, Any]) -> dict[str, Any]:
        beats.append(trio.current_time())
        return {"currentTime": "2026-01-01T00:00:00Z"}

    csms.handlers["Heartbeat"] = heartbeat
    with trio.fail_after(HOUR):
        async with booted(csms_network) as (csms, station):
            await csms.wait_until(lambda: len(beats) == 2)
            await trio.sleep(25)
            changed_at = trio.current_time()
            answer = await csms.call(
                station.station_id,
                "ChangeConfiguration",
                {"key": "HeartbeatInterval", "value": "20"},
            )
            assert answer == {"status": "Accepted"}
            await csms.wait_until(lambda: len(beats) == 6)
            # Back to a slower beat: the 20 s loop is replaced, not doubled.
            slowed_at = trio.current_time()
            await csms.call(
                station.station_id,
                "ChangeConfiguration",
                {"key": "HeartbeatInterval", "value": "300"},
            )
            await trio.sleep(601)
    assert beats[1] - beats[0] == pytest.approx(60)
    assert beats[2:6] == pytest.approx([changed_at + 20 * n for n in range(1, 5)])
    assert beats[6:] == pytest.approx([slowed_at + 300, slowed_at + 600])
    assert all(b > a for a, b in itertools.pairwise(beats))


async def test_heartbeat_interval_zero_stops_the_heartbeat(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    with trio.fail_after(HOUR):
        async with booted(csms_network) as (csms, station):
            record = csms.stations[station.station_id]
            answer = await csms.call(
                station.station_id,
                "ChangeConfiguration",
                {"key": "HeartbeatInterval", "value": "0"},
            )
            assert answer == {"status": "Accepted"}
            beats = record.received["Heartbeat"]
            await trio.sleep(600)
            assert record.received["Heartbeat"] == beats


# -- ClearCache (1.6 §5.4) -----------------------------------------------------------------------
async def test_clear_cache_accepted_empties_the_authorization_cache(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    with trio.fail_after(HOUR):
        async with booted(csms_network) as (csms, station):
            station.auth_cache["TAG-1"] = {"status": "Accepted"}
            answer = await csms.call(station.station_id, "ClearCache", {})
            assert answer == {"status": "Accepted"}
            assert station.auth_cache == {}


def _refuse() -> bool:
    return False


async def _refuse_later() -> bool:
    await trio.lowlevel.checkpoint()
    return False


@pytest.mark.parametrize("refuse", [_refuse, _refuse_later])
async def test_clear_cache_rejected_when_the_cache_cannot_be_cleared(
    autojump_clock: trio.testing.MockClock,
    csms_network: tuple[EmbeddedCsms, MemoryNetwork],
    monkeypatch: pytest.MonkeyPatch,
    refuse: Callable[[], Any],
) -> None:
    with trio.fail_after(HOUR):
        async with booted(csms_network) as (csms, station):
            monkeypatch.setattr(station, "clear_authorization_cache", refuse)
            answer = await csms.call(station.station_id, "ClearCache", {})
            assert answer == {"status": "Rejected"}


# -- DataTransfer from the CSMS (1.6 §5.6) -------------------------------------------------------
@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"vendorId": "acme"}, "UnknownVendorId"),
        ({"vendorId": "acme", "messageId": "Hello", "data": "x"}, "UnknownVendorId"),
        ({"vendorId": "evsim-trio"}, "Accepted"),
        ({"vendorId": "EVSIM-Trio", "data": "{}"}, "Accepted"),
        ({"vendorId": "evsim-trio", "messageId": "Hello"}, "UnknownMessageId"),
    ],
)
async def test_data_transfer_statuses(
    autojump_clock: trio.testing.MockClock,
    csms_network: tuple[EmbeddedCsms, MemoryNetwork],
    payload: dict[str, Any],
    status: str,
) -> None:
    with trio.fail_after(HOUR):
        async with booted(csms_network) as (csms, station):
            assert station.template.charge_point_vendor == "evsim-trio"
            answer = await csms.call(station.station_id, "DataTransfer", payload)
    assert answer == {"status": status}
