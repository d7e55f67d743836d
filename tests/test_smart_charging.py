"""Smart charging end to end (OCPP 1.6 §3.13, §5.5, §5.7, §5.16): the embedded CSMS in memory,
MockClock. Every SetChargingProfile / ClearChargingProfile / GetCompositeSchedule status over the
wire, and the simulated meter obeying the composite limit second by second.

The station is the shipped 3-phase AC pedestal: 22 kW shared by two connectors, 230 V, so
32 A = 22080 W (capped at 22000 W), 16 A = 11040 W, 10 A = 6900 W. Its Power.Active.Import
meter template fluctuates by up to 5 %, downwards only.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from memlink import MemoryNetwork, make_station, record_calls, running, shipped_template

from evsim_trio.config import StationTemplate
from evsim_trio.csms import EmbeddedCsms
from evsim_trio.station import Station
from evsim_trio.station._clock import format_timestamp, parse_timestamp, utc_now

HOUR = 3600.0
STATION_W = 22000.0
W_16A = 16 * 230 * 3  # 11040
W_10A = 10 * 230 * 3  # 6900
FLUCTUATION = 0.05
Calls = list[tuple[float, str, dict[str, Any]]]
MakeProfile = Callable[[datetime, int | None], dict[str, Any]]


# -- helpers ---------------------------------------------------------------------------------


def steady_template() -> StationTemplate:
    """The shipped pedestal without power fluctuation: energies are exact integrals."""
    template = shipped_template()
    connectors = {
        cid: attrs.evolve(
            connector,
            meter_values=tuple(
                attrs.evolve(m, fluctuation_percent=0.0) for m in connector.meter_values
            ),
        )
        for cid, connector in template.connectors.items()
    }
    return attrs.evolve(template, connectors=connectors)


def station_for(
    network: MemoryNetwork, template: StationTemplate | None = None, *, interval: int = 60
) -> Station:
    station = make_station(template or shipped_template(), network.connect())
    station.configuration.set("WebSocketPingInterval", "0")
    station.configuration.set("MeterValueSampleInterval", str(interval))
    station.configuration.set(
        "MeterValuesSampledData", "Energy.Active.Import.Register,Power.Active.Import"
    )
    return station


def profile(
    profile_id: int = 1,
    *,
    purpose: str = "TxDefaultProfile",
    stack: int = 0,
    kind: str = "Relative",
    unit: str = "A",
    periods: tuple[tuple[int, float], ...] = ((0, 16.0),),
    start: datetime | None = None,
    recurrency: str | None = None,
    valid_from: datetime | None = None,
    valid_to: datetime | None = None,
    transaction_id: int | None = None,
) -> dict[str, Any]:
    """A csChargingProfiles object."""
    schedule: dict[str, Any] = {
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [{"startPeriod": s, "limit": limit} for s, limit in periods],
    }
    if start is not None:
        schedule["startSchedule"] = format_timestamp(start)
    raw: dict[str, Any] = {
        "chargingProfileId": profile_id,
        "stackLevel": stack,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": schedule,
    }
    if recurrency is not None:
        raw["recurrencyKind"] = recurrency
    if valid_from is not None:
        raw["validFrom"] = format_timestamp(valid_from)
    if valid_to is not None:
        raw["validTo"] = format_timestamp(valid_to)
    if transaction_id is not None:
        raw["transactionId"] = transaction_id
    return raw


async def set_profile(
    csms: EmbeddedCsms, station: Station, connector_id: int, cs_profile: dict[str, Any]
) -> str:
    answer = await csms.call(
        station.station_id,
        "SetChargingProfile",
        {"connectorId": connector_id, "csChargingProfiles": cs_profile},
    )
    return str(answer["status"])


async def composite(
    csms: EmbeddedCsms, station: Station, connector_id: int, duration: int, unit: str
) -> dict[str, Any]:
    return await csms.call(
        station.station_id,
        "GetCompositeSchedule",
        {"connectorId": connector_id, "duration": duration, "chargingRateUnit": unit},
    )


def installed_ids(station: Station) -> set[int]:
    return {int(raw["chargingProfileId"]) for _, raw in station.profiles.profiles()}


async def start(station: Station, connector_id: int = 1) -> tuple[int, float]:
    """Start a transaction; its CSMS id and the virtual time its metering started."""
    assert await station.start_transaction(connector_id, "TAG-1")
    tx = station.connectors[connector_id].transaction
    assert tx is not None
    assert tx.transaction_id is not None
    return tx.transaction_id, trio.current_time()


@attrs.frozen
class Reading:
    """One periodic MeterValues sample of a connector, as the CSMS received it."""

    at: float  # virtual time of receipt (= of sampling: nothing is queued here)
    stamp: datetime  # the station's timestamp of the sample
    energy_wh: float
    power_w: float


def readings(calls: Calls, connector_id: int = 1) -> list[Reading]:
    found = []
    for at, action, payload in calls:
        if action != "MeterValues" or payload["connectorId"] != connector_id:
            continue
        for value in payload["meterValue"]:
            sampled = value["sampledValue"]
            if sampled[0].get("context") != "Sample.Periodic":
                continue
            by_measurand = {s["measurand"]: s for s in sampled if "phase" not in s}
            energy = by_measurand["Energy.Active.Import.Register"]
            power = by_measurand["Power.Active.Import"]
            assert (energy["unit"], power["unit"]) == ("Wh", "W")
            found.append(
                Reading(
                    at,
                    parse_timestamp(value["timestamp"]),
                    float(energy["value"]),
                    float(power["value"]),
                )
            )
    return found


def follows(power_w: float, cap_w: float) -> bool:
    """`power_w` is the cap lowered by the template's fluctuation at most (W rounding)."""
    return cap_w * (1 - FLUCTUATION) - 1 <= power_w <= cap_w + 1


# -- SetChargingProfile --------------------------------------------------------------------


def _n_periods(count: int) -> tuple[tuple[int, float], ...]:
    return tuple((60 * i, 16.0) for i in range(count))


SET_CASES = [
    # id, configuration keys, transaction running, connector, profile, expected
    pytest.param({}, False, 1, lambda now, tx: profile(), "Accepted", id="tx-default-connector"),
    pytest.param({}, False, 0, lambda now, tx: profile(), "Accepted", id="tx-default-station"),
    pytest.param(
        {},
        False,
        0,
        lambda now, tx: profile(purpose="ChargePointMaxProfile"),
        "Accepted",
        id="max-profile-station",
    ),
    pytest.param(
        {},
        True,
        1,
        lambda now, tx: profile(purpose="TxProfile", transaction_id=tx),
        "Accepted",
        id="tx-profile-in-transaction",
    ),
    pytest.param(
        {},
        True,
        1,
        lambda now, tx: profile(purpose="TxProfile"),
        "Accepted",
        id="tx-profile-without-transaction-id",
    ),
    pytest.param(
        {},
        False,
        1,
        lambda now, tx: profile(purpose="TxProfile"),
        "Rejected",
        id="tx-profile-without-transaction",
    ),
    pytest.param(
        {},
        True,
        1,
        lambda now, tx: profile(purpose="TxProfile", transaction_id=(tx or 0) + 1000),
        "Rejected",
        id="tx-profile-for-another-transaction",
    ),
    pytest.param(
        {},
        True,
        0,
        lambda now, tx: profile(purpose="TxProfile"),
        "Rejected",
        id="tx-profile-on-connector-0",
    ),
    pytest.param(
        {},
        False,
        1,
        lambda now, tx: profile(purpose="ChargePointMaxProfile"),
        "Rejected",
        id="max-profile-on-a-connector",
    ),
    pytest.param(
        {}, False, 1, lambda now, tx: profile(stack=8), "Accepted", id="stack-level-at-max"
    ),
    pytest.param(
        {}, False, 1, lambda now, tx: profile(stack=9), "Rejected", id="stack-level-over-max"
    ),
    pytest.param(
        {"ChargeProfileMaxStackLevel": "2"},
        False,
        1,
        lambda now, tx: profile(stack=3),
        "Rejected",
        id="stack-level-over-configured-max",
    ),
    pytest.param(
        {},
        False,
        1,
        lambda now, tx: profile(periods=_n_periods(24)),
        "Accepted",
        id="periods-at-max",
    ),
    pytest.param(
        {},
        False,
        1,
        lambda now, tx: profile(periods=_n_periods(25)),
        "Rejected",
        id="too-many-periods",
    ),
    pytest.param(
        {"ChargingScheduleAllowedChargingRateUnit": "Current"},
        False,
        1,
        lambda now, tx: profile(unit="W", periods=((0, 11040.0),)),
        "Rejected",
        id="unit-w-not-allowed",
    ),
    pytest.param(
        {"ChargingScheduleAllowedChargingRateUnit": "Current"},
        False,
        1,
        lambda now, tx: profile(unit="A"),
        "Accepted",
        id="unit-a-allowed",
    ),
    pytest.param(
        {"ChargingScheduleAllowedChargingRateUnit": "Power"},
        False,
        1,
        lambda now, tx: profile(unit="A"),
        "Rejected",
        id="unit-a-not-allowed",
    ),
    pytest.param({}, False, 3, lambda now, tx: profile(), "Rejected", id="unknown-connector"),
    pytest.param(
        {},
        False,
        1,
        lambda now, tx: profile(valid_to=now - timedelta(minutes=1)),
        "Rejected",
        id="already-expired",
    ),
    pytest.param(
        {},
        False,
        1,
        lambda now, tx: profile(
            kind="Recurring", recurrency="Daily", start=now - timedelta(hours=1)
        ),
        "Accepted",
        id="recurring-daily",
    ),
    pytest.param(
        {},
        False,
        1,
        lambda now, tx: profile(kind="Recurring", start=now),
        "Rejected",
        id="recurring-without-recurrency-kind",
    ),
    pytest.param(
        {"MaxChargingProfilesInstalled": "1"},
        False,
        1,
        lambda now, tx: profile(2, stack=1),
        "Rejected",
        id="max-profiles-installed",
    ),
    pytest.param(
        {"MaxChargingProfilesInstalled": "1"},
        False,
        1,
        lambda now, tx: profile(99, stack=0),
        "Accepted",
        id="replacing-at-max-profiles-installed",
    ),
]


@pytest.mark.parametrize(("keys", "in_tx", "connector_id", "make", "expected"), SET_CASES)
async def test_set_charging_profile_answers_each_status(
    autojump_clock: trio.testing.MockClock,
    csms_network: tuple[EmbeddedCsms, MemoryNetwork],
    keys: dict[str, str],
    in_tx: bool,
    connector_id: int,
    make: MakeProfile,
    expected: str,
) -> None:
    csms, network = csms_network
    station = station_for(network)
    for key, value in keys.items():
        station.configuration.set(key, value)
    with trio.fail_after(HOUR):
        async with running(station, csms):
            tx_id = (await start(station))[0] if in_tx else None
            if "MaxChargingProfilesInstalled" in keys:
                # One profile already there: connector 1, TxDefaultProfile, stack level 0.
                assert await set_profile(csms, station, 1, profile(1)) == "Accepted"
            before = installed_ids(station)
            cs_profile = make(utc_now(), tx_id)
            assert await set_profile(csms, station, connector_id, cs_profile) == expected
            after = installed_ids(station)
    if expected == "Accepted":
        assert cs_profile["chargingProfileId"] in after
        assert (connector_id, cs_profile) in station.profiles.profiles()
    else:
        assert after == before
    assert not csms.violations


# -- ClearChargingProfile ------------------------------------------------------------------

# id -> (connector, purpose, stack level)
INSTALLED = {
    1: (1, "TxDefaultProfile", 0),
    2: (1, "TxDefaultProfile", 1),
    3: (2, "TxDefaultProfile", 0),
    4: (0, "ChargePointMaxProfile", 0),
    5: (0, "TxDefaultProfile", 2),
}


@pytest.mark.parametrize(
    ("request_payload", "expected", "left"),
    [
        pytest.param({"id": 2}, "Accepted", {1, 3, 4, 5}, id="by-id"),
        pytest.param({"id": 99}, "Unknown", {1, 2, 3, 4, 5}, id="unknown-id"),
        pytest.param({"id": 1, "connectorId": 2}, "Accepted", {2, 3, 4, 5}, id="id-wins"),
        pytest.param({"connectorId": 1}, "Accepted", {3, 4, 5}, id="by-connector"),
        pytest.param({"connectorId": 0}, "Accepted", {1, 2, 3}, id="by-connector-0"),
        pytest.param(
            {"chargingProfilePurpose": "ChargePointMaxProfile"},
            "Accepted",
            {1, 2, 3, 5},
            id="by-purpose",
        ),
        pytest.param({"stackLevel": 0}, "Accepted", {2, 5}, id="by-stack-level"),
        pytest.param(
            {"connectorId": 1, "stackLevel": 1}, "Accepted", {1, 3, 4, 5}, id="connector-and-stack"
        ),
        pytest.param(
            {"connectorId": 0, "chargingProfilePurpose": "TxDefaultProfile", "stackLevel": 2},
            "Accepted",
            {1, 2, 3, 4},
            id="all-criteria",
        ),
        pytest.param(
            {"connectorId": 2, "chargingProfilePurpose": "ChargePointMaxProfile"},
            "Unknown",
            {1, 2, 3, 4, 5},
            id="no-match",
        ),
        pytest.param({"stackLevel": 7}, "Unknown", {1, 2, 3, 4, 5}, id="unknown-stack-level"),
        pytest.param({}, "Accepted", set(), id="everything"),
    ],
)
async def test_clear_charging_profile_by_criteria(
    autojump_clock: trio.testing.MockClock,
    csms_network: tuple[EmbeddedCsms, MemoryNetwork],
    request_payload: dict[str, Any],
    expected: str,
    left: set[int],
) -> None:
    csms, network = csms_network
    station = station_for(network)
    with trio.fail_after(HOUR):
        async with running(station, csms):
            for profile_id, (cid, purpose, stack) in INSTALLED.items():
                cs_profile = profile(profile_id, purpose=purpose, stack=stack)
                assert await set_profile(csms, station, cid, cs_profile) == "Accepted"
            answer = await csms.call(station.station_id, "ClearChargingProfile", request_payload)
            assert answer == {"status": expected}
            assert installed_ids(station) == left
    assert not csms.violations


async def test_clear_charging_profile_without_profiles_is_unknown(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    station = station_for(network)
    with trio.fail_after(HOUR):
        async with running(station, csms):
            answer = await csms.call(station.station_id, "ClearChargingProfile", {})
    assert answer == {"status": "Unknown"}


# -- GetCompositeSchedule ------------------------------------------------------------------


async def test_composite_schedule_in_amps_and_watts(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    station = station_for(network)
    with trio.fail_after(HOUR):
        async with running(station, csms):
            begin = utc_now().replace(microsecond=0) - timedelta(seconds=100)
            # The station at 12 A; connector 1 at 16 A, then 10 A from begin + 300 s.
            cp_max = profile(
                1,
                purpose="ChargePointMaxProfile",
                kind="Absolute",
                start=begin,
                periods=((0, 12.0),),
            )
            tx_default = profile(2, kind="Absolute", start=begin, periods=((0, 16.0), (300, 10.0)))
            assert await set_profile(csms, station, 0, cp_max) == "Accepted"
            assert await set_profile(csms, station, 1, tx_default) == "Accepted"
            in_amps = await composite(csms, station, 1, 600, "A")
            in_watts = await composite(csms, station, 1, 600, "W")
            of_station = await composite(csms, station, 0, 600, "A")
    assert in_amps["status"] == in_watts["status"] == "Accepted"
    assert in_amps["connectorId"] == 1
    start = parse_timestamp(in_amps["scheduleStart"])
    assert in_amps["scheduleStart"].endswith("Z")
    assert parse_timestamp(in_amps["chargingSchedule"]["startSchedule"]) == start
    step = round((begin + timedelta(seconds=300) - start).total_seconds())
    assert 0 < step < 600
    assert in_amps["chargingSchedule"] == {
        "duration": 600,
        "startSchedule": in_amps["chargingSchedule"]["startSchedule"],
        "chargingRateUnit": "A",
        "chargingSchedulePeriod": [
            {"startPeriod": 0, "limit": 12.0},
            {"startPeriod": step, "limit": 10.0},
        ],
    }
    assert in_watts["chargingSchedule"]["chargingRateUnit"] == "W"
    assert in_watts["chargingSchedule"]["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 12 * 230 * 3},
        {"startPeriod": step, "limit": W_10A},
    ]
    # Connector 0 is the station: its ChargePointMaxProfile only.
    assert of_station["status"] == "Accepted"
    assert of_station["chargingSchedule"]["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 12.0}
    ]
    assert not csms.violations


async def test_composite_schedule_of_an_unknown_connector_is_rejected(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    station = station_for(network)
    with trio.fail_after(HOUR):
        async with running(station, csms):
            assert await set_profile(csms, station, 0, profile()) == "Accepted"
            answer = await composite(csms, station, 3, 600, "A")
    assert answer == {"status": "Rejected"}
    assert not csms.violations


# -- the meter follows the composite -------------------------------------------------------

STEPS = ((0, 32.0), (600, 10.0), (1200, 0.0))


async def test_power_and_energy_follow_a_tx_profile_stepping_32_10_0_amps(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    station = station_for(network)
    calls = record_calls(csms)
    with trio.fail_after(2 * HOUR):
        async with running(station, csms):
            tx_id, t0 = await start(station)
            tx_profile = profile(
                7, purpose="TxProfile", transaction_id=tx_id, periods=STEPS, kind="Relative"
            )
            assert await set_profile(csms, station, 1, tx_profile) == "Accepted"
            schedule = await composite(csms, station, 1, 1800, "W")
            await trio.sleep(1800 + 1)
    meter_start = next(p["meterStart"] for _, a, p in calls if a == "StartTransaction")
    samples = {round((r.at - t0) / 60): r for r in readings(calls) if r.at - t0 <= 1800 + 1}
    assert sorted(samples) == list(range(1, 31))
    caps = {1: STATION_W, 2: float(W_10A), 3: 0.0}  # 32 A = 22080 W: capped by the station

    def cap_of(k: int) -> float | None:
        """The cap over sample k's minute; None where a step boundary ends it."""
        if k % 10 == 0:
            return None
        return caps[k // 10 + 1]

    # At each step the power follows the step, with the template's fluctuation.
    for k, reading in samples.items():
        cap = cap_of(k)
        if cap is not None:
            assert follows(reading.power_w, cap), (k, reading.power_w, cap)
    # Energy per step (the minutes that end inside it) = sum of P * 60 s, within 0.5 %.
    energy = {0: float(meter_start), **{k: r.energy_wh for k, r in samples.items()}}
    for first, last in ((1, 9), (11, 19)):
        metered = energy[last] - energy[first - 1]
        expected = sum(samples[k].power_w * 60 / 3600 for k in range(first, last + 1))
        assert metered == pytest.approx(expected, rel=0.005)
    assert energy[30] == energy[20]  # 0 A: nothing at all
    # Over the whole session, the boundary minutes included: the integral of the stepped cap,
    # lowered by the fluctuation at most (the register rounds to whole Wh).
    integral = (STATION_W * 600 + W_10A * 600) / 3600
    assert integral * (1 - FLUCTUATION) - 1 <= energy[30] - energy[0] <= integral + 1
    # What the CSMS is told is what the meter obeyed.
    assert schedule["status"] == "Accepted"
    periods = schedule["chargingSchedule"]["chargingSchedulePeriod"]
    assert [p["limit"] for p in periods] == [STATION_W, W_10A, 0.0]
    assert periods[1]["startPeriod"] in (599, 600, 601)
    assert periods[2]["startPeriod"] in (1199, 1200, 1201)
    assert not csms.violations


async def test_energy_is_the_integral_of_the_stepped_limit_whatever_the_sample_interval(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    # Samples every 900 s: each one spans a step of the profile.
    station = station_for(network, steady_template(), interval=900)
    calls = record_calls(csms)
    with trio.fail_after(2 * HOUR):
        async with running(station, csms):
            tx_id, t0 = await start(station)
            tx_profile = profile(7, purpose="TxProfile", transaction_id=tx_id, periods=STEPS)
            assert await set_profile(csms, station, 1, tx_profile) == "Accepted"
            await trio.sleep(1800 + 1)
    samples = [r for r in readings(calls) if r.at - t0 <= 1800 + 1]
    assert [round(r.at - t0) for r in samples] == [900, 1800]
    # 600 s at 22 kW + 300 s at 6.9 kW, then 300 s at 6.9 kW + 600 s at 0.
    first = (STATION_W * 600 + W_10A * 300) / 3600
    second = first + W_10A * 300 / 3600
    assert [r.energy_wh for r in samples] == [round(first), round(second)]
    assert [r.power_w for r in samples] == [W_10A, 0.0]  # the power at the sampling instant


async def test_a_profile_set_or_cleared_mid_interval_applies_from_that_instant_only(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    station = station_for(network, steady_template())
    calls = record_calls(csms)
    with trio.fail_after(2 * HOUR):
        async with running(station, csms):
            _, t0 = await start(station)
            tx = station.connectors[1].transaction
            assert tx is not None
            await trio.sleep(30)
            # Absolute, started with the transaction: it must not reach back 30 s.
            stop_profile = profile(
                7,
                purpose="TxProfile",
                kind="Absolute",
                start=parse_timestamp(tx.start_timestamp),
                periods=((0, 0.0),),
            )
            assert await set_profile(csms, station, 1, stop_profile) == "Accepted"
            await trio.sleep(60)
            answer = await csms.call(station.station_id, "ClearChargingProfile", {"id": 7})
            assert answer == {"status": "Accepted"}
            await trio.sleep(30 + 1)
    samples = [r for r in readings(calls) if r.at - t0 <= 120 + 1]
    assert [round(r.at - t0) for r in samples] == [60, 120]
    half_minute_wh = STATION_W * 30 / 3600
    assert [r.energy_wh for r in samples] == [round(half_minute_wh), round(2 * half_minute_wh)]
    assert [r.power_w for r in samples] == [0.0, STATION_W]


async def test_charge_point_max_profile_caps_a_tx_profile(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    station = station_for(network)
    calls = record_calls(csms)
    with trio.fail_after(2 * HOUR):
        async with running(station, csms):
            cp_max = profile(
                1,
                purpose="ChargePointMaxProfile",
                kind="Absolute",
                start=utc_now() - timedelta(hours=1),
                periods=((0, 16.0),),
            )
            assert await set_profile(csms, station, 0, cp_max) == "Accepted"
            tx_id, t0 = await start(station)
            tx_profile = profile(2, purpose="TxProfile", transaction_id=tx_id, periods=((0, 32.0),))
            assert await set_profile(csms, station, 1, tx_profile) == "Accepted"
            schedule = await composite(csms, station, 1, 600, "A")
            await trio.sleep(600 + 1)
            cleared = await csms.call(
                station.station_id,
                "ClearChargingProfile",
                {"chargingProfilePurpose": "ChargePointMaxProfile"},
            )
            assert cleared == {"status": "Accepted"}
            await trio.sleep(600)
    samples = {round((r.at - t0) / 60): r for r in readings(calls)}
    capped = [samples[k].power_w for k in range(1, 11)]
    assert all(follows(p, W_16A) for p in capped), capped
    # Once the station's cap is cleared, the TxProfile's 32 A (the station's 22 kW) applies.
    freed = [samples[k].power_w for k in range(12, 20)]
    assert all(follows(p, STATION_W) for p in freed), freed
    assert schedule["chargingSchedule"]["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 16.0}
    ]
    assert not csms.violations


async def test_tx_default_profile_applies_to_new_transactions_until_a_tx_profile(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    station = station_for(network)
    calls = record_calls(csms)
    with trio.fail_after(2 * HOUR):
        async with running(station, csms):
            # On connector 0: the default of every connector.
            assert await set_profile(csms, station, 0, profile(1, periods=((0, 10.0),))) == (
                "Accepted"
            )
            tx_id, t0 = await start(station)
            await trio.sleep(300 + 1)
            tx_profile = profile(2, purpose="TxProfile", transaction_id=tx_id, stack=0)
            assert await set_profile(csms, station, 1, tx_profile) == "Accepted"
            await trio.sleep(300)
            assert await station.stop_transaction(1)
            # The TxProfile ended with its transaction; the next one gets the default again.
            assert installed_ids(station) == {1}
            _, t1 = await start(station)
            await trio.sleep(300 + 1)
    first = {round((r.at - t0) / 60): r.power_w for r in readings(calls) if r.at < t1}
    second = [r.power_w for r in readings(calls) if r.at > t1]
    assert all(follows(first[k], W_10A) for k in range(1, 6)), first
    assert all(follows(first[k], W_16A) for k in range(6, 11)), first
    assert len(second) == 5
    assert all(follows(p, W_10A) for p in second), second
    assert not csms.violations


async def test_recurring_daily_profile_crosses_midnight(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    # The station clock follows trio's: wait (virtually) until 23:30 UTC before booting.
    now = utc_now()
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    station = station_for(network, interval=900)
    calls = record_calls(csms)
    with trio.fail_after(3 * 24 * HOUR):
        await trio.sleep((midnight - timedelta(minutes=30) - now).total_seconds() + 0.5)
        async with running(station, csms):
            # Every night from 22:00 to 06:00 at 10 A, the day at 16 A; first run yesterday.
            nightly = profile(
                1,
                kind="Recurring",
                recurrency="Daily",
                start=midnight - timedelta(hours=26),
                valid_from=midnight - timedelta(hours=26),
                periods=((0, 10.0), (8 * 3600, 16.0)),
            )
            assert await set_profile(csms, station, 1, nightly) == "Accepted"
            day = await composite(csms, station, 1, 24 * 3600, "A")
            await start(station)
            await trio.sleep(23 * HOUR)
    assert day["status"] == "Accepted"
    start_at = parse_timestamp(day["scheduleStart"])
    six = round((midnight + timedelta(hours=6) - start_at).total_seconds())
    ten_pm = round((midnight + timedelta(hours=22) - start_at).total_seconds())
    assert day["chargingSchedule"]["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 10.0},
        {"startPeriod": six, "limit": 16.0},
        {"startPeriod": ten_pm, "limit": 10.0},
    ]
    samples = readings(calls)
    boundaries = [midnight + timedelta(hours=6), midnight + timedelta(hours=22)]
    night = day_time = 0
    crossed = False
    for reading in samples:
        begin = reading.stamp - timedelta(seconds=900)
        if any(begin < b <= reading.stamp for b in boundaries):
            continue  # this quarter-hour has both limits
        if begin < midnight <= reading.stamp:
            crossed = True
        if boundaries[0] <= begin and reading.stamp <= boundaries[1]:
            day_time += 1
            assert follows(reading.power_w, W_16A), reading
        else:
            night += 1
            assert follows(reading.power_w, W_10A), reading
    assert crossed
    assert night >= 20  # 23:30 -> 06:00 and 22:00 -> 22:30
    assert day_time >= 60  # 06:00 -> 22:00
    assert not csms.violations
