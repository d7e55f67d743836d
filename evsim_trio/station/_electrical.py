"""Electrical helpers shared by metering and smart charging: A <-> W, the station's power.

Pure functions, no trio. AC currents are per phase (OCPP 1.6 §3.13: a limit in A applies to
each phase), DC has a single current.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from evsim_trio.config import StationTemplate

__all__ = [
    "DEFAULT_AC_CURRENT_A",
    "DEFAULT_DC_POWER_W",
    "amps_to_watts",
    "measurand_list",
    "pick_station_power_w",
    "watts_to_amps",
]

# A template without `power`: 32 A per phase on AC, 50 kW on DC.
DEFAULT_AC_CURRENT_A = 32.0
DEFAULT_DC_POWER_W = 50_000.0


def amps_to_watts(amps: float, *, voltage: float, phases: int, dc: bool) -> float:
    """Power drawn at `amps` (per phase on AC): A·V on DC, A·V·phases on AC."""
    if dc:
        return amps * voltage
    if phases < 1:
        raise ValueError(f"an AC conversion needs 1 to 3 phases, got {phases}")
    return amps * voltage * phases


def watts_to_amps(watts: float, *, voltage: float, phases: int, dc: bool) -> float:
    """Current (per phase on AC) that draws `watts`: W/V on DC, W/(V·phases) on AC."""
    if dc:
        return watts / voltage
    if phases < 1:
        raise ValueError(f"an AC conversion needs 1 to 3 phases, got {phases}")
    return watts / (voltage * phases)


def pick_station_power_w(template: StationTemplate, rng: random.Random) -> float:
    """The station's maximum power in W: `power` (one value drawn with `rng` from a list),
    converted from `power_unit`; without `power`, 32 A per phase on AC or 50 kW on DC.

    A station draws it once and hands it to each connector's `MeterModel`.
    """
    power = template.power
    if power is None:
        if template.current_out_type == "DC":
            return DEFAULT_DC_POWER_W
        return amps_to_watts(
            DEFAULT_AC_CURRENT_A,
            voltage=template.nominal_voltage(),
            phases=template.phases(),
            dc=False,
        )
    value = rng.choice(power) if isinstance(power, tuple) else power
    return float(value) * 1000.0 if template.power_unit == "kW" else float(value)


def measurand_list(csl: str | Sequence[str]) -> list[str]:
    """The measurands of a MeterValuesSampledData-style CSL (or a sequence), blanks dropped."""
    items = csl.split(",") if isinstance(csl, str) else csl
    return [item.strip() for item in items if item.strip()]
