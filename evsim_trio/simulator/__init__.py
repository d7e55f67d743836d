"""Building the fleet from the site config and running it."""

from __future__ import annotations

from evsim_trio.simulator._build import BuildError, PlannedStation, build_specs, plan_fleet
from evsim_trio.simulator._commands import PROCEDURES, UnknownProcedure, execute
from evsim_trio.simulator._simulator import FleetCounts, Simulator

__all__ = [
    "PROCEDURES",
    "BuildError",
    "FleetCounts",
    "PlannedStation",
    "Simulator",
    "UnknownProcedure",
    "build_specs",
    "execute",
    "plan_fleet",
]
