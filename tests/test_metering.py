"""Coherent metering (BEHAVIOUR.md "Metering"): energy, P/V/I consistency, SoC, limits, schema."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest
import tomli_w

from evsim_trio._resources import data_dir
from evsim_trio.config import MeterValueTemplate, StationTemplate, load_template
from evsim_trio.ocpp import get_validator
from evsim_trio.station._charging_profiles import ProfileStore
from evsim_trio.station._metering import (
    SUPPORTED_MEASURANDS,
    MeterModel,
    amps_to_watts,
    measurand_list,
    pick_station_power_w,
    watts_to_amps,
)

TEMPLATES = ("ac-1phase", "ac-3phase-2conn", "dc-fast")
ALL_MEASURANDS = (
    "Energy.Active.Import.Register",
    "Power.Active.Import",
    "Power.Offered",
    "Current.Import",
    "Current.Offered",
    "Voltage",
    "SoC",
)
TWO_HOURS = 7200.0
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def shipped(name: str) -> StationTemplate:
    return load_template(data_dir("station_templates") / f"{name}.toml")


def make_meter(template: StationTemplate | str, seed: int = 1, **options: Any) -> MeterModel:
    if isinstance(template, str):
        template = shipped(template)
    return MeterModel(template, template.connectors.get(1), random.Random(seed), **options)


def with_meter_values(template: StationTemplate, *meters: MeterValueTemplate) -> StationTemplate:
    connectors = dict(template.connectors)
    connectors[1] = attrs.evolve(connectors[1], meter_values=meters)
    return attrs.evolve(template, connectors=connectors)


def without_fluctuation(template: StationTemplate) -> StationTemplate:
    meters = tuple(
        attrs.evolve(m, fluctuation_percent=None) for m in template.connectors[1].meter_values
    )
    return with_meter_values(template, *meters)


def validate(values: list[dict[str, Any]]) -> None:
    get_validator("1.6").validate_request(
        "MeterValues",
        {
            "connectorId": 1,
            "meterValue": [{"timestamp": "2026-01-01T00:00:00Z", "sampledValue": values}],
        },
    )


def by_phase(values: list[dict[str, Any]], measurand: str) -> dict[str | None, float]:
    """{phase: value in W / Wh / A / V} of one measurand's sampled values."""
    scale = {"kW": 1000.0, "kWh": 1000.0}
    return {
        v.get("phase"): float(v["value"]) * scale.get(v.get("unit", ""), 1.0)
        for v in values
        if v["measurand"] == measurand
    }


def steps(kind: str, total: float = TWO_HOURS) -> Iterator[float]:
    """dt values adding up to `total`: fixed 10 s, or random 0.1..30 s."""
    rng = random.Random(42)
    elapsed = 0.0
    while elapsed < total:
        dt = 10.0 if kind == "fixed" else rng.uniform(0.1, 30.0)
        dt = min(dt, total - elapsed)
        elapsed += dt
        yield dt


# -- energy ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dt_kind", ["fixed", "random"])
@pytest.mark.parametrize("name", TEMPLATES)
def test_energy_register_is_monotone_and_matches_integral_of_power(name: str, dt_kind: str) -> None:
    meter = make_meter(name, battery_capacity_wh=10_000_000.0)
    meter.set_active(True)
    integral_wh = 0.0
    last = meter.energy_register_wh
    for dt in steps(dt_kind):
        meter.advance(dt)
        assert meter.energy_register_wh >= last
        last = meter.energy_register_wh
        integral_wh += meter.power_w * dt / 3600.0
    assert integral_wh > 0
    assert meter.energy_register_wh == pytest.approx(integral_wh, rel=0.005)


@pytest.mark.parametrize("dt_kind", ["fixed", "random"])
@pytest.mark.parametrize("name", TEMPLATES)
def test_constant_power_for_two_hours_gives_power_times_two_hours(name: str, dt_kind: str) -> None:
    template = without_fluctuation(shipped(name))
    meter = make_meter(template, battery_capacity_wh=10_000_000.0, energy_register_wh=1234.0)
    meter.set_active(True)
    readings = [meter.meter_reading_wh()]
    for dt in steps(dt_kind):
        meter.advance(dt)
        readings.append(
            int(by_phase(meter.sampled_values(ALL_MEASURANDS), ALL_MEASURANDS[0])[None])
        )
    expected_wh = meter.connector_max_power_w() * TWO_HOURS / 3600.0
    assert readings == sorted(readings)
    assert meter.energy_register_wh - 1234.0 == pytest.approx(expected_wh, rel=0.005)


def test_inactive_meter_draws_nothing() -> None:
    meter = make_meter("ac-3phase-2conn")
    for _ in range(10):
        meter.advance(60.0)
    assert meter.energy_register_wh == 0.0
    meter.set_active(True)
    meter.advance(60.0)
    assert meter.power_w > 0
    meter.set_active(False)
    assert meter.power_w == 0.0
    meter.advance(60.0)
    assert meter.power_w == 0.0


def test_negative_dt_is_refused() -> None:
    with pytest.raises(ValueError, match="dt"):
        make_meter("ac-1phase").advance(-1.0)


# -- consistency of P, V, I ------------------------------------------------------------------


@pytest.mark.parametrize("name", TEMPLATES)
def test_voltage_times_current_times_phases_equals_power_within_rounding(name: str) -> None:
    meter = make_meter(name, seed=3, battery_capacity_wh=10_000_000.0)
    meter.set_active(True)
    phases = 1 if meter.dc else meter.phases
    limits = [None, 20_000.0, 7_000.0, 3_000.0, 1_000.0]
    for index in range(200):
        meter.advance(15.0, limit_w=limits[index % len(limits)])
        values = meter.sampled_values(ALL_MEASURANDS)
        power = by_phase(values, "Power.Active.Import")[None]
        currents = by_phase(values, "Current.Import")
        voltages = by_phase(values, "Voltage")
        if meter.three_phase:
            assert set(currents) == {"L1", "L2", "L3"}
            amps = currents["L1"]
            assert currents["L1"] == currents["L2"] == currents["L3"]
            volts = voltages["L1-N"]
        else:
            (amps,) = currents.values()
            (volts,) = voltages.values()
        # Half a unit of the last shown digit for V (0.05), I (0.005) and P (0.5 W).
        tolerance = phases * (0.05 * amps + 0.005 * volts + 0.05 * 0.005) + 0.5 + 1e-9
        assert abs(volts * amps * phases - power) <= tolerance
        assert volts == pytest.approx(meter.nominal_voltage_v, rel=0.0101)


def test_three_phase_reports_line_voltages_and_phase_powers_that_add_up() -> None:
    template = shipped("ac-3phase-2conn")
    template = with_meter_values(
        template,
        MeterValueTemplate(measurand="Power.Active.Import", unit="W", fluctuation_percent=5),
        *(
            MeterValueTemplate(measurand="Power.Active.Import", unit="W", phase=phase)
            for phase in ("L1-N", "L2-N", "L3-N")
        ),
    )
    meter = make_meter(template)
    meter.set_active(True)
    for _ in range(50):
        meter.advance(30.0)
        values = meter.sampled_values(["Power.Active.Import", "Voltage", "Current.Import"])
        validate(values)
        power = by_phase(values, "Power.Active.Import")
        assert set(power) == {None, "L1-N", "L2-N", "L3-N"}
        assert abs(sum(power[p] for p in ("L1-N", "L2-N", "L3-N")) - power[None]) <= 2.0
        voltage = by_phase(values, "Voltage")
        assert set(voltage) == {None, "L1-N", "L2-N", "L3-N", "L1-L2", "L2-L3", "L3-L1"}
        assert voltage["L1-L2"] == pytest.approx(voltage["L1-N"] * math.sqrt(3), abs=0.15)


def test_three_phase_voltage_flags_select_what_is_reported() -> None:
    template = attrs.evolve(
        shipped("ac-3phase-2conn"),
        main_voltage_meter_values=False,
        phase_line_to_line_voltage_meter_values=False,
    )
    values = make_meter(template).sampled_values(["Voltage"])
    assert [v.get("phase") for v in values] == ["L1-N", "L2-N", "L3-N"]


@pytest.mark.parametrize(
    ("energy_unit", "power_unit", "energy_text", "power_text"),
    [("Wh", "W", "12346", "7400"), ("kWh", "kW", "12.346", "7.400")],
)
def test_units_of_the_meter_templates_are_honoured(
    energy_unit: str, power_unit: str, energy_text: str, power_text: str
) -> None:
    template = with_meter_values(
        shipped("ac-1phase"),
        MeterValueTemplate(measurand="Energy.Active.Import.Register", unit=energy_unit),  # type: ignore[arg-type]
        MeterValueTemplate(measurand="Power.Active.Import", unit=power_unit, location="Inlet"),  # type: ignore[arg-type]
    )
    meter = make_meter(template, energy_register_wh=12_345.6)
    meter.set_active(True)
    meter.advance(0.0)
    values = meter.sampled_values(
        ["Energy.Active.Import.Register", "Power.Active.Import", "Power.Offered"]
    )
    validate(values)
    energy, power, offered = values
    assert (energy["value"], energy["unit"], energy["location"]) == (
        energy_text,
        energy_unit,
        "Outlet",
    )
    assert (power["value"], power["unit"], power["location"]) == (power_text, power_unit, "Inlet")
    assert offered["unit"] == power_unit


def test_sampled_values_carry_context_format_and_skip_unsupported_measurands() -> None:
    template = with_meter_values(
        shipped("ac-1phase"),
        MeterValueTemplate(measurand="Temperature", unit="Celsius", value="21.5"),
    )
    meter = make_meter(template)
    values = meter.sampled_values(
        ["Temperature", "Frequency", "RPM", "Energy.Active.Import.Register", "SoC", "Temperature"],
        context="Transaction.Begin",
    )
    validate(values)
    assert [v["measurand"] for v in values] == ["Temperature", "Energy.Active.Import.Register"]
    assert values[0]["value"] == "21.5"
    assert all(v["context"] == "Transaction.Begin" and v["format"] == "Raw" for v in values)
    assert {"Temperature", "Frequency", "RPM"}.isdisjoint(SUPPORTED_MEASURANDS)
    with pytest.raises(ValueError, match="context"):
        meter.sampled_values(["Voltage"], context="Sometimes")


# -- SoC ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dt_kind", ["fixed", "random"])
def test_soc_never_falls_and_stops_at_100_where_power_drops_to_zero(dt_kind: str) -> None:
    meter = make_meter("dc-fast", battery_capacity_wh=40_000.0, initial_soc_percent=20.0)
    meter.set_active(True)
    socs = []
    for dt in steps(dt_kind):
        meter.advance(dt)
        assert meter.soc_percent is not None
        socs.append(meter.soc_percent)
        (soc_value,) = (v for v in meter.sampled_values(["SoC"]) if v["measurand"] == "SoC")
        assert soc_value["location"] == "EV"
        assert int(soc_value["value"]) == math.floor(meter.soc_percent)
    assert socs == sorted(socs)
    assert socs[-1] == 100.0
    assert meter.ev_full
    assert meter.power_w == 0.0
    # Exactly the missing 80 % of the battery went in.
    assert meter.energy_register_wh == pytest.approx(0.8 * 40_000.0)
    meter.advance(600.0)
    assert meter.energy_register_wh == pytest.approx(0.8 * 40_000.0)


def test_soc_is_none_without_an_soc_meter_template() -> None:
    meter = make_meter("ac-3phase-2conn")
    assert meter.soc_percent is None
    assert meter.sampled_values(["SoC"]) == []


def test_plugging_in_a_new_ev_resets_soc_but_not_the_register() -> None:
    meter = make_meter("dc-fast", initial_soc_percent=90.0, battery_capacity_wh=10_000.0)
    meter.set_active(True)
    meter.advance(3600.0)
    assert meter.ev_full
    energy = meter.energy_register_wh
    meter.plug_in(soc_percent=30.0)
    assert meter.soc_percent == 30.0
    meter.advance(10.0)
    assert meter.power_w > 0
    assert meter.energy_register_wh > energy


# -- limits and sharing ---------------------------------------------------------------------


def tx_profile(*periods: tuple[int, float], profile_id: int = 1) -> dict[str, Any]:
    return {
        "chargingProfileId": profile_id,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [
                {"startPeriod": start, "limit": limit} for start, limit in periods
            ],
        },
    }


def install(store: ProfileStore, profile: dict[str, Any]) -> None:
    status = store.set(
        1,
        profile,
        now=T0,
        transaction_id=7,
        max_stack_level=8,
        allowed_units=("Current", "Power"),
        max_periods=24,
        max_installed=16,
    )
    assert status == "Accepted", store.rejection


def test_a_16_amp_tx_profile_caps_three_phase_power_at_11040_watts() -> None:
    store = ProfileStore()
    install(store, tx_profile((0, 16.0)))
    meter = make_meter("ac-3phase-2conn")
    meter.set_active(True)
    fluctuation = meter.fluctuation_percent / 100.0
    assert fluctuation > 0
    for index in range(360):
        limit = store.limit_at(
            1, T0 + timedelta(seconds=10 * index), tx_start=T0, voltage=230.0, phases=3, dc=False
        )
        assert limit == (11_040.0, None)
        meter.advance(10.0, limit_w=limit[0])
        assert 11_040.0 * (1 - fluctuation) <= meter.power_w <= 11_040.0
        values = meter.sampled_values(["Current.Import", "Power.Offered"])
        assert by_phase(values, "Power.Offered")[None] == 11_040.0
        assert all(amps <= 16.0 * 1.011 for amps in by_phase(values, "Current.Import").values())


def test_power_follows_a_profile_stepping_32_then_10_then_0_amps() -> None:
    store = ProfileStore()
    install(store, tx_profile((0, 32.0), (600, 10.0), (1200, 0.0)))
    meter = make_meter(shipped("ac-3phase-2conn"), seed=9)
    meter.set_active(True)
    fluctuation = meter.fluctuation_percent / 100.0
    for second in range(0, 1800, 10):
        limit = store.limit_at(
            1, T0 + timedelta(seconds=second), tx_start=T0, voltage=230.0, phases=3, dc=False
        )
        assert limit is not None
        meter.advance(10.0, limit_w=limit[0])
        expected = 22_000.0 if second < 600 else 6_900.0 if second < 1200 else 0.0
        assert expected * (1 - fluctuation) <= meter.power_w <= expected


@pytest.mark.parametrize(
    ("shared", "share", "cap"),
    [(True, 1, 22_000.0), (True, 2, 11_000.0), (False, 1, 11_000.0), (False, 2, 11_000.0)],
)
def test_station_power_is_shared_between_active_connectors(
    shared: bool, share: int, cap: float
) -> None:
    template = attrs.evolve(
        without_fluctuation(shipped("ac-3phase-2conn")), power_shared_by_connectors=shared
    )
    first, second = make_meter(template, seed=1), make_meter(template, seed=2)
    for meter in (first, second):
        meter.set_active(True)
        meter.advance(10.0, share=share)
        assert meter.power_w == pytest.approx(cap)
    if share == 2:
        assert first.power_w + second.power_w <= template_power_w(template) + 1e-6


def template_power_w(template: StationTemplate) -> float:
    return pick_station_power_w(template, random.Random(0))


@pytest.mark.parametrize("limit", [-5.0, 0.0])
def test_a_zero_or_negative_limit_stops_the_power(limit: float) -> None:
    meter = make_meter("ac-1phase")
    meter.set_active(True)
    meter.advance(10.0, limit_w=limit)
    assert meter.power_w == 0.0
    assert meter.offered_w == 0.0


def test_power_list_is_drawn_once_with_the_rng_and_kw_converted() -> None:
    template = attrs.evolve(shipped("dc-fast"), power=(50.0, 150.0, 350.0), power_unit="kW")
    picks = {pick_station_power_w(template, random.Random(seed)) for seed in range(40)}
    assert picks == {50_000.0, 150_000.0, 350_000.0}
    meter = make_meter(template, station_power_w=50_000.0, number_of_connectors=1)
    assert meter.station_max_power_w() == 50_000.0
    default = attrs.evolve(shipped("ac-3phase-2conn"), power=None)
    assert pick_station_power_w(default, random.Random(0)) == pytest.approx(32 * 230 * 3)


# -- reproducibility, schema, state --------------------------------------------------------


def run_session(seed: int) -> list[list[dict[str, Any]]]:
    meter = make_meter("dc-fast", seed=seed)
    meter.set_active(True)
    out = []
    for _ in range(30):
        meter.advance(15.0, share=2)
        out.append(meter.sampled_values(ALL_MEASURANDS))
    return out


def test_same_seed_gives_the_same_values() -> None:
    assert run_session(5) == run_session(5)
    assert run_session(5) != run_session(6)


@pytest.mark.parametrize("context", ["Sample.Periodic", "Sample.Clock", "Transaction.End"])
@pytest.mark.parametrize("name", TEMPLATES)
def test_every_sampled_value_output_validates_against_the_meter_values_schema(
    name: str, context: str
) -> None:
    meter = make_meter(name)
    validate(meter.sampled_values(ALL_MEASURANDS, context=context))
    meter.set_active(True)
    for limit in (None, 5_000.0, 0.0):
        meter.advance(30.0, limit_w=limit)
        values = meter.sampled_values([*ALL_MEASURANDS, "Temperature"], context=context)
        validate(values)
        assert all(isinstance(v["value"], str) for v in values)


def test_state_round_trip_keeps_register_and_soc_and_is_toml_able() -> None:
    meter = make_meter("dc-fast", initial_soc_percent=42.0)
    meter.set_active(True)
    meter.advance(60.0)
    state = meter.to_state()
    tomli_w.dumps({"meter": state})
    json.dumps(state)
    restored = make_meter("dc-fast", seed=99)
    restored.from_state(state)
    assert restored.energy_register_wh == meter.energy_register_wh
    assert restored.soc_percent == meter.soc_percent
    plain = make_meter("ac-1phase")
    assert "soc_percent" not in plain.to_state()


@pytest.mark.parametrize(
    "state",
    [{"energy_register_wh": -1}, {"energy_register_wh": "12"}, {"soc_percent": 120}],
)
def test_malformed_meter_state_is_refused(state: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="expected"):
        make_meter("dc-fast").from_state(state)


@pytest.mark.parametrize(
    ("amps", "voltage", "phases", "dc", "watts"),
    [
        (16.0, 230.0, 3, False, 11_040.0),
        (32.0, 230.0, 1, False, 7_360.0),
        (100.0, 400.0, 0, True, 40_000.0),
    ],
)
def test_amps_and_watts_convert_both_ways(
    amps: float, voltage: float, phases: int, dc: bool, watts: float
) -> None:
    assert amps_to_watts(amps, voltage=voltage, phases=phases, dc=dc) == pytest.approx(watts)
    assert watts_to_amps(watts, voltage=voltage, phases=phases, dc=dc) == pytest.approx(amps)


def test_ac_conversion_without_phases_is_refused() -> None:
    with pytest.raises(ValueError, match="phases"):
        amps_to_watts(16.0, voltage=230.0, phases=0, dc=False)


def test_measurand_list_splits_a_csl() -> None:
    assert measurand_list(" Voltage, ,SoC ") == ["Voltage", "SoC"]
