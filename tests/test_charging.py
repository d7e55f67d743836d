"""A whole station charging under MockClock: ATG, power limits, clock-aligned readings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from memlink import MemoryNetwork, make_station, record_calls, shipped_template, wait_state

from evsim_trio.csms import EmbeddedCsms
from evsim_trio.station import Station, StationState

HOUR = 3600.0


@asynccontextmanager
async def running(stations: list[Station], csms: EmbeddedCsms) -> AsyncIterator[None]:
    async with trio.open_nursery() as nursery:
        for station in stations:
            nursery.start_soon(station.run)
        for station in stations:
            await wait_state(station, StationState.BOOTED)
            await csms.wait_until(
                lambda s=station: (
                    csms.stations[s.station_id].received["StatusNotification"] >= len(s.connectors)
                )
            )
        yield
        for station in stations:
            station.stop()


@pytest.fixture
def csms_network(nursery: trio.Nursery) -> tuple[EmbeddedCsms, MemoryNetwork]:
    csms = EmbeddedCsms(heartbeat_interval=300)
    return csms, MemoryNetwork(nursery, csms.handle_request)


def power_values(calls: list[tuple[float, str, dict[str, Any]]]) -> list[float]:
    """Every total Power.Active.Import value (W) in the MeterValues received."""
    values = []
    for _, action, payload in calls:
        if action != "MeterValues":
            continue
        for reading in payload["meterValue"]:
            for sample in reading["sampledValue"]:
                if sample.get("measurand") == "Power.Active.Import" and "phase" not in sample:
                    factor = 1000.0 if sample.get("unit") == "kW" else 1.0
                    values.append(float(sample["value"]) * factor)
    return values


async def test_atg_runs_sessions_on_every_connector_for_its_hours(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    template = shipped_template()
    atg = attrs.evolve(
        template.automatic_transaction_generator,
        enable=True,
        min_duration=60,
        max_duration=120,
        min_delay_between_two_transactions=30,
        max_delay_between_two_transactions=60,
        probability_of_start=1.0,
        stop_after_hours=1.0,
        require_authorize=True,
    )
    template = attrs.evolve(template, automatic_transaction_generator=atg)
    stations = [make_station(template, network.connect(), index=i) for i in (1, 2)]
    calls = record_calls(csms)
    with trio.fail_after(10 * HOUR):
        async with running(stations, csms):
            await trio.sleep(1.5 * HOUR)
    starts = [p for _, a, p in calls if a == "StartTransaction"]
    stops = [p for _, a, p in calls if a == "StopTransaction"]
    # 2 stations x 2 connectors, one session per 90-180 s for an hour: 20..40 each.
    assert 4 * 20 <= len(starts) <= 4 * 40
    assert len(stops) == len(starts)
    assert all(p["reason"] == "Local" for p in stops)
    assert all(p["meterStop"] > 0 for p in stops)
    # Nothing starts after stop_after_hours.
    last_start = max(t for t, a, _ in calls if a == "StartTransaction")
    first = min(t for t, a, _ in calls if a == "BootNotification")
    assert last_start - first <= HOUR + 1
    for station in stations:
        for status in station.atg.statuses.values():
            assert status.start_transaction_requests >= 20
            assert status.accepted_start_transaction_requests == status.start_transaction_requests
    assert not csms.violations


async def test_tx_profile_of_16_a_caps_power_at_11040_w(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    station = make_station(shipped_template(), network.connect())
    station.configuration.set("MeterValueSampleInterval", "60")
    station.configuration.set("MeterValuesSampledData", "Power.Active.Import")
    calls = record_calls(csms)
    with trio.fail_after(10 * HOUR):
        async with running([station], csms):
            await station.start_transaction(1, "TAG-1")
            tx = station.connectors[1].transaction
            assert tx is not None
            await trio.sleep(600)
            before = len(power_values(calls))
            profile = {
                "chargingProfileId": 1,
                "transactionId": tx.transaction_id,
                "stackLevel": 0,
                "chargingProfilePurpose": "TxProfile",
                "chargingProfileKind": "Relative",
                "chargingSchedule": {
                    "chargingRateUnit": "A",
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}],
                },
            }
            answer = await csms.call(
                station.station_id,
                "SetChargingProfile",
                {"connectorId": 1, "csChargingProfiles": profile},
            )
            assert answer == {"status": "Accepted"}
            await trio.sleep(1200)
    values = power_values(calls)
    uncapped, capped = values[:before], values[before + 1 :]
    assert max(uncapped) > 11040  # the 22 kW station charges above 16 A before the profile
    assert capped
    assert all(v <= 11040 * 1.01 for v in capped)
    assert min(capped) >= 11040 * 0.85  # the template's fluctuation only lowers power


async def test_amperage_limit_key_caps_power(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    template = shipped_template(amperage_limitation_ocpp_key="MaxCurrent")
    station = make_station(template, network.connect())
    station.configuration.set("MaxCurrent", "10")
    station.configuration.set("MeterValuesSampledData", "Power.Active.Import")
    calls = record_calls(csms)
    with trio.fail_after(10 * HOUR):
        async with running([station], csms):
            await station.start_transaction(1, "TAG-1")
            await trio.sleep(600)
    values = power_values(calls)
    assert values
    assert all(v <= 3 * 230 * 10 * 1.01 for v in values)


async def test_clock_aligned_readings_on_the_interval_boundaries(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    station = make_station(shipped_template(), network.connect())
    station.configuration.set("ClockAlignedDataInterval", "900")
    station.configuration.set("MeterValuesAlignedData", "Energy.Active.Import.Register")
    calls = record_calls(csms)
    with trio.fail_after(10 * HOUR):
        async with running([station], csms):
            await trio.sleep(HOUR)
    aligned = [
        p
        for _, a, p in calls
        if a == "MeterValues"
        and p["meterValue"][0]["sampledValue"][0].get("context") == "Sample.Clock"
    ]
    # 4 boundaries per hour, for each of the 2 connectors (no transaction: not queued).
    assert 6 <= len(aligned) <= 10
    for payload in aligned:
        stamp = payload["meterValue"][0]["timestamp"]
        minutes, seconds = int(stamp[14:16]), float(stamp[17:23])
        assert minutes % 15 == 0
        assert seconds < 1.0
