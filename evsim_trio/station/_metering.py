"""Coherent metering of one connector (BEHAVIOUR.md "Metering"; OCPP 1.6 §7.31 Measurand,
§7.43 SampledValue).

Pure: no trio, no clock. The station calls `MeterModel.advance(dt)` with the time elapsed since
the previous step and asks `sampled_values()` for what a MeterValues.req carries. Everything
reported derives from one simulated active power P and one voltage V, so the values agree with
each other within their rounding:

- AC: I = P / (V · phases) on each phase, P = Σ phase powers; DC: I = P / V.
- V is the template's nominal `voltage_out` with a fresh ±1 % draw at every step (balanced: the
  same V on every phase; line-to-line voltages are V·√3).
- P is the applicable cap (station power per connector, or shared between the active connectors
  when `power_shared_by_connectors`, and the `limit_w` of the step: amperage key, charging
  profile), lowered at each step by up to `fluctuation_percent` of the connector's
  Power.Active.Import meter template. Fluctuation only ever lowers P: the cap is a hard limit.
- Energy: E += P · dt / 3600 Wh, monotone. The register is reported rounded to whole Wh
  (`meter_reading_wh`, also meterStart/meterStop).
- SoC (only when the connector's meter templates name SoC): rises with energy over
  `battery_capacity_wh`, never falls. **When the battery is full (SoC 100 %) the EV stops
  drawing: P drops to 0**; the step that fills it delivers exactly the energy that was missing.

All randomness goes through the station's seeded `random.Random`: same seed, same values.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping
from typing import Any

from evsim_trio.config import ConnectorTemplate, MeterValueTemplate, StationTemplate
from evsim_trio.station._electrical import (
    amps_to_watts,
    measurand_list,
    pick_station_power_w,
    watts_to_amps,
)

__all__ = [
    "SUPPORTED_MEASURANDS",
    "MeterModel",
    "amps_to_watts",
    "measurand_list",
    "pick_station_power_w",
    "watts_to_amps",
]

# Measurands the model simulates. Any other measurand is reported only when the connector's
# meter templates give it a fixed `value` (then that value, as is); otherwise it is skipped.
SUPPORTED_MEASURANDS: frozenset[str] = frozenset(
    {
        "Energy.Active.Import.Register",
        "Power.Active.Import",
        "Power.Offered",
        "Current.Import",
        "Current.Offered",
        "Voltage",
        "SoC",
    }
)
# OCPP 1.6 §7.36 ReadingContext.
CONTEXTS: frozenset[str] = frozenset(
    {
        "Interruption.Begin",
        "Interruption.End",
        "Sample.Clock",
        "Sample.Periodic",
        "Transaction.Begin",
        "Transaction.End",
        "Trigger",
        "Other",
    }
)
VOLTAGE_NOISE = 0.01
# A new EV arrives with a uniform whole SoC in this range (when SoC is measured).
INITIAL_SOC_RANGE = (10, 50)
DEFAULT_LOCATION = "Outlet"
_SQRT3 = math.sqrt(3.0)
_PHASES = ("L1", "L2", "L3")
_LINE_TO_LINE = ("L1-L2", "L2-L3", "L3-L1")


def _sampled(
    measurand: str, value: str, unit: str | None, phase: str | None, location: str | None
) -> dict[str, Any]:
    entry: dict[str, Any] = {"value": value, "measurand": measurand}
    if unit is not None:
        entry["unit"] = unit
    if phase is not None:
        entry["phase"] = phase
    if location is not None:
        entry["location"] = location
    return entry


def _power_text(watts: float, unit: str) -> str:
    return f"{watts / 1000.0:.3f}" if unit == "kW" else f"{watts:.0f}"


class MeterModel:
    """The meter of one connector: power, voltage, current, energy register and SoC.

    `station_power_w` is the station's maximum (default: `pick_station_power_w`, which draws
    from `rng` when `power` is a list: a station with several connectors should draw once and
    pass it). `number_of_connectors` is this station's count (default: the template's largest).
    `initial_soc_percent` is the SoC of the first EV (default: drawn from `rng`); it is ignored
    when the connector does not measure SoC.
    """

    def __init__(
        self,
        template: StationTemplate,
        connector_template: ConnectorTemplate | None,
        rng: random.Random,
        *,
        energy_register_wh: float = 0.0,
        battery_capacity_wh: float = 50_000.0,
        initial_soc_percent: float | None = None,
        station_power_w: float | None = None,
        number_of_connectors: int | None = None,
    ) -> None:
        if energy_register_wh < 0:
            raise ValueError(f"energy register must be >= 0 Wh, got {energy_register_wh}")
        if battery_capacity_wh <= 0:
            raise ValueError(f"battery capacity must be > 0 Wh, got {battery_capacity_wh}")
        self.template = template
        self.rng = rng
        self.meter_templates: tuple[MeterValueTemplate, ...] = (
            connector_template.meter_values if connector_template is not None else ()
        )
        self.dc = template.current_out_type == "DC"
        self.phases = 1 if self.dc else template.phases()
        self.nominal_voltage_v = template.nominal_voltage()
        self.battery_capacity_wh = float(battery_capacity_wh)
        self.number_of_connectors = max(1, number_of_connectors or template.max_connectors())
        self._station_power_w = (
            float(station_power_w)
            if station_power_w is not None
            else pick_station_power_w(template, rng)
        )
        power_entry = self._main_entry("Power.Active.Import")
        fluctuation = power_entry.fluctuation_percent if power_entry is not None else None
        self.fluctuation_percent = fluctuation or 0.0
        self.measures_soc = any(m.measurand == "SoC" for m in self.meter_templates)
        self.energy_register_wh = float(energy_register_wh)
        self.soc_percent: float | None = None
        if self.measures_soc:
            self.soc_percent = self._initial_soc(initial_soc_percent)
        self.active = False
        self.power_w = 0.0
        self.offered_w = self.connector_max_power_w()
        self.voltage_v = self._draw_voltage()

    # -- limits ---------------------------------------------------------------------------

    def station_max_power_w(self) -> float:
        """The station's maximum power in W (the template's `power`, in W)."""
        return self._station_power_w

    def connector_max_power_w(self, share: int = 1) -> float:
        """This connector's cap in W: the station power shared by `share` active connectors
        when `power_shared_by_connectors`, else the station power / number of connectors."""
        if self.template.power_shared_by_connectors:
            return self._station_power_w / max(1, share)
        return self._station_power_w / self.number_of_connectors

    @property
    def ev_full(self) -> bool:
        """True when SoC is measured and has reached 100 %: the EV draws no more power."""
        return self.soc_percent is not None and self.soc_percent >= 100.0

    @property
    def current_a(self) -> float:
        """The current on each phase (AC) or the DC current, from P and V."""
        return watts_to_amps(self.power_w, voltage=self.voltage_v, phases=self.phases, dc=self.dc)

    def meter_reading_wh(self) -> int:
        """The energy register rounded to a whole Wh: `meterStart` / `meterStop`, and what
        Energy.Active.Import.Register reports (never decreases, as the register)."""
        return round(self.energy_register_wh)

    # -- simulation -----------------------------------------------------------------------

    def set_active(self, active: bool) -> None:
        """Charging (`True`) or not: an inactive connector draws no power."""
        self.active = active
        if not active:
            self.power_w = 0.0

    def plug_in(self, soc_percent: float | None = None) -> None:
        """A new EV: its SoC is `soc_percent` (default drawn with the rng), when SoC is
        measured. The energy register is unaffected."""
        if self.measures_soc:
            self.soc_percent = self._initial_soc(soc_percent)

    def advance(self, dt_s: float, *, limit_w: float | None = None, share: int = 1) -> None:
        """Simulate `dt_s` seconds at this step's power.

        P = the cap (connector maximum for `share` active connectors, and `limit_w` when given)
        lowered by the fluctuation draw, never negative; 0 when inactive or the EV is full.
        E += P·dt/3600; SoC rises with it and stops at 100 %.
        """
        if dt_s < 0:
            raise ValueError(f"dt must be >= 0 s, got {dt_s}")
        self.voltage_v = self._draw_voltage()
        cap = self.connector_max_power_w(share)
        if limit_w is not None:
            cap = min(cap, max(0.0, limit_w))
        self.offered_w = cap
        if not self.active or self.ev_full or cap <= 0.0:
            self.power_w = 0.0
            return
        power = cap
        if self.fluctuation_percent > 0.0:
            power = cap * (1.0 - self.fluctuation_percent / 100.0 * self.rng.random())
        step_wh = power * dt_s / 3600.0
        if self.soc_percent is not None:
            room_wh = (100.0 - self.soc_percent) / 100.0 * self.battery_capacity_wh
            if step_wh >= room_wh and dt_s > 0:
                # The battery fills during this step: deliver what is missing, at the mean
                # power that does it, so that E and the reported P still agree.
                step_wh = room_wh
                power = room_wh * 3600.0 / dt_s
                self.soc_percent = 100.0
            else:
                self.soc_percent = min(
                    100.0, self.soc_percent + step_wh / self.battery_capacity_wh * 100.0
                )
        self.power_w = power
        self.energy_register_wh += step_wh

    # -- reporting ------------------------------------------------------------------------

    def sampled_values(
        self, measurands: Iterable[str], *, context: str = "Sample.Periodic"
    ) -> list[dict[str, Any]]:
        """OCPP 1.6 SampledValue dicts for `measurands` (a MeterValuesSampledData CSL, split).

        Each carries value (a string), context, format "Raw", measurand, unit, location
        (the meter template's, default Outlet; EV for SoC) and phase where it applies. On
        3-phase AC: Current.Import per phase L1/L2/L3; Power.Active.Import total plus one per
        phase when the meter templates list Power.Active.Import by phase; Voltage without phase
        (if `main_voltage_meter_values`), L1-N/L2-N/L3-N and, if
        `phase_line_to_line_voltage_meter_values`, L1-L2/L2-L3/L3-L1. Units follow the meter
        templates (W or kW, Wh or kWh). SoC is left out when not measured; measurands outside
        `SUPPORTED_MEASURANDS` only appear when a meter template gives them a fixed `value`.
        Repeated measurands are reported once.
        """
        if context not in CONTEXTS:
            raise ValueError(f"unknown OCPP 1.6 reading context {context!r}")
        values: list[dict[str, Any]] = []
        seen: set[str] = set()
        for measurand in measurands:
            if measurand in seen:
                continue
            seen.add(measurand)
            values.extend(self._values_of(measurand))
        for entry in values:
            entry["context"] = context
            entry["format"] = "Raw"
        return values

    def _values_of(self, measurand: str) -> list[dict[str, Any]]:
        if measurand == "Energy.Active.Import.Register":
            return [self._energy()]
        if measurand in ("Power.Active.Import", "Power.Offered"):
            return self._power(measurand)
        if measurand in ("Current.Import", "Current.Offered"):
            return self._current(measurand)
        if measurand == "Voltage":
            return self._voltage()
        if measurand == "SoC":
            return self._soc()
        return [
            _sampled(m.measurand, m.value, m.unit, m.phase, m.location)
            for m in self.meter_templates
            if m.measurand == measurand and m.value is not None
        ]

    def _energy(self) -> dict[str, Any]:
        measurand = "Energy.Active.Import.Register"
        unit = self._unit(measurand, "Wh")
        wh = self.meter_reading_wh()
        text = f"{wh / 1000.0:.3f}" if unit == "kWh" else str(wh)
        return _sampled(measurand, text, unit, None, self._location(measurand))

    def _power(self, measurand: str) -> list[dict[str, Any]]:
        watts = self.power_w if measurand == "Power.Active.Import" else self.offered_w
        # Power.Offered without a meter template of its own follows Power.Active.Import's unit.
        unit = self._unit(measurand, self._unit("Power.Active.Import", "W"))
        values = [
            _sampled(measurand, _power_text(watts, unit), unit, None, self._location(measurand))
        ]
        phase_entries = [m for m in self.meter_templates if m.measurand == measurand and m.phase]
        if self.three_phase and measurand == "Power.Active.Import" and phase_entries:
            neutral = any(m.phase is not None and m.phase.endswith("-N") for m in phase_entries)
            for name in _PHASES:
                entry = self._phase_entry(measurand, name)
                phase_unit = entry.unit if entry is not None and entry.unit else unit
                label = f"{name}-N" if neutral else name
                text = _power_text(watts / 3.0, phase_unit)
                location = self._location(measurand, entry)
                values.append(_sampled(measurand, text, phase_unit, label, location))
        return values

    def _current(self, measurand: str) -> list[dict[str, Any]]:
        watts = self.power_w if measurand == "Current.Import" else self.offered_w
        amps = watts_to_amps(watts, voltage=self.voltage_v, phases=self.phases, dc=self.dc)
        text = f"{amps:.2f}"
        if measurand == "Current.Import" and self.three_phase:
            return [
                _sampled(
                    measurand,
                    text,
                    "A",
                    name,
                    self._location(measurand, self._phase_entry(measurand, name)),
                )
                for name in _PHASES
            ]
        phase = self._single_phase(measurand) if measurand == "Current.Import" else None
        return [_sampled(measurand, text, "A", phase, self._location(measurand))]

    def _voltage(self) -> list[dict[str, Any]]:
        measurand = "Voltage"
        location = self._location(measurand)
        text = f"{self.voltage_v:.1f}"
        if not self.three_phase:
            return [_sampled(measurand, text, "V", self._single_phase(measurand), location)]
        values = []
        if self.template.main_voltage_meter_values:
            values.append(_sampled(measurand, text, "V", None, location))
        values.extend(_sampled(measurand, text, "V", f"{name}-N", location) for name in _PHASES)
        if self.template.phase_line_to_line_voltage_meter_values:
            line = f"{self.voltage_v * _SQRT3:.1f}"
            values.extend(_sampled(measurand, line, "V", name, location) for name in _LINE_TO_LINE)
        return values

    def _soc(self) -> list[dict[str, Any]]:
        if self.soc_percent is None:
            return []
        text = str(math.floor(self.soc_percent))
        return [_sampled("SoC", text, "Percent", None, self._location("SoC"))]

    # -- meter templates ------------------------------------------------------------------

    @property
    def three_phase(self) -> bool:
        """True on a 3-phase AC station (per-phase values are reported)."""
        return not self.dc and self.phases == 3

    def _main_entry(self, measurand: str) -> MeterValueTemplate | None:
        entries = [m for m in self.meter_templates if m.measurand == measurand]
        for entry in entries:
            if entry.phase is None:
                return entry
        return entries[0] if entries else None

    def _phase_entry(self, measurand: str, name: str) -> MeterValueTemplate | None:
        for entry in self.meter_templates:
            if entry.measurand == measurand and entry.phase in (name, f"{name}-N"):
                return entry
        return None

    def _unit(self, measurand: str, default: str) -> str:
        entry = self._main_entry(measurand)
        return entry.unit if entry is not None and entry.unit else default

    def _location(self, measurand: str, entry: MeterValueTemplate | None = None) -> str:
        entry = entry or self._main_entry(measurand)
        if entry is not None and entry.location is not None:
            return entry.location
        return "EV" if measurand == "SoC" else DEFAULT_LOCATION

    def _single_phase(self, measurand: str) -> str | None:
        # A 1-phase AC station reports the phase its template names (e.g. L1); DC has none.
        if self.dc:
            return None
        entry = self._main_entry(measurand)
        return entry.phase if entry is not None else None

    # -- randomness -----------------------------------------------------------------------

    def _draw_voltage(self) -> float:
        return self.nominal_voltage_v * (1.0 + self.rng.uniform(-VOLTAGE_NOISE, VOLTAGE_NOISE))

    def _initial_soc(self, soc_percent: float | None) -> float:
        if soc_percent is None:
            return float(self.rng.randint(*INITIAL_SOC_RANGE))
        return min(100.0, max(0.0, float(soc_percent)))

    # -- persistence ----------------------------------------------------------------------

    def to_state(self) -> dict[str, float]:
        """The persistent part (TOML-able: no None): energy register and, if measured, SoC."""
        state = {"energy_register_wh": self.energy_register_wh}
        if self.soc_percent is not None:
            state["soc_percent"] = self.soc_percent
        return state

    def from_state(self, state: Mapping[str, Any]) -> None:
        """Continue from `to_state()` output (after a restart); ValueError if malformed.

        Without a saved SoC, the current one is kept.
        """
        energy = state.get("energy_register_wh", 0.0)
        soc = state.get("soc_percent")
        if isinstance(energy, bool) or not isinstance(energy, int | float) or energy < 0:
            raise ValueError(f"energy_register_wh: expected a number >= 0, got {energy!r}")
        if soc is not None and (
            isinstance(soc, bool) or not isinstance(soc, int | float) or not 0 <= soc <= 100
        ):
            raise ValueError(f"soc_percent: expected a number from 0 to 100, got {soc!r}")
        self.energy_register_wh = float(energy)
        if soc is not None and self.measures_soc:
            self.soc_percent = float(soc)
