"""Building the fleet from the site config and running it."""

from __future__ import annotations

from evsim_trio.simulator._build import BuildError, PlannedStation, build_specs, plan_fleet
from evsim_trio.simulator._simulator import FleetCounts, Simulator

__all__ = [
    "BuildError",
    "FleetCounts",
    "PlannedStation",
    "Simulator",
    "build_specs",
    "plan_fleet",
]
