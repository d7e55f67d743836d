"""Fleet operations for the command interface: start/stop stations, add and delete them.

Functions taking the simulator, so that `Simulator` itself stays the fleet runner; they use
its public fleet API (`running`, `make_station`, `start_station`, `notify_changed`).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import trio

from evsim_trio._resources import data_dir
from evsim_trio.config import (
    ConfigError,
    Site,
    StationEntry,
    StationTemplate,
    load_id_tags,
    load_template,
)
from evsim_trio.simulator._build import BuildError, build_specs
from evsim_trio.station import Station, state_path, station_id

if TYPE_CHECKING:
    from evsim_trio.simulator._simulator import Simulator

log = logging.getLogger(__name__)

__all__ = [
    "ControlError",
    "FleetLike",
    "add_stations",
    "base_name_for",
    "control_state",
    "delete_stations",
    "find_stations",
    "start_station",
    "start_stations",
    "stop_stations",
    "template_catalogue",
    "used_index",
]

# How long a stop waits for stations to close their sockets before it answers.
STOP_WAIT = 3.0

# Template options of addChargingStations -> StationTemplate attributes.
_TEMPLATE_OPTIONS: Mapping[str, tuple[str, ...]] = {
    "ocppStrictCompliance": ("ocpp_strict_compliance",),
    "autoRegister": ("auto_register",),
    "enableStatistics": ("enable_statistics",),
    "ocppPersistentConfiguration": ("ocpp_persistent_configuration",),
    "stationInfoPersistentConfiguration": ("station_info_persistent_configuration",),
    "persistentConfiguration": (
        "ocpp_persistent_configuration",
        "station_info_persistent_configuration",
    ),
}


class FleetLike(Protocol):
    """What the fleet-wide procedures read of a fleet, in-process or over workers."""

    site: Site
    seed: int

    @property
    def csms_url(self) -> str | None: ...


class ControlError(Exception):
    """A fleet operation cannot be done; the message says why."""


@attrs.define
class ControlState:
    """What the command interface remembers about a simulator."""

    started: bool = True
    shipped_templates: dict[str, StationTemplate] | None = None
    variants: int = 0


_STATES: weakref.WeakKeyDictionary[object, ControlState] = weakref.WeakKeyDictionary()


def control_state(simulator: object) -> ControlState:
    """The command interface's state of `simulator` (created on first use)."""
    state = _STATES.get(simulator)
    if state is None:
        state = _STATES[simulator] = ControlState()
    return state


def find_stations(
    simulator: Simulator, hash_ids: Sequence[str] | None
) -> tuple[list[Station], list[str]]:
    """The stations with these hashIds (all when None), and the hashIds no station has."""
    if hash_ids is None:
        return list(simulator.stations), []
    by_hash = {station.hash_id: station for station in simulator.stations}
    found = [by_hash[h] for h in hash_ids if h in by_hash]
    return found, [h for h in hash_ids if h not in by_hash]


async def _wait_stopped(simulator: Simulator, stations: Iterable[Station], wait: float) -> None:
    pending = list(stations)
    with trio.move_on_after(wait):
        while any(station.started for station in pending):
            await simulator.wait_changed()


def _require_running(simulator: Simulator) -> None:
    if not simulator.running:
        raise ControlError("the simulator is not running")


async def start_station(simulator: Simulator, station: Station) -> None:
    """Start `station` if it is not running: a fresh start, with a BootNotification."""
    _require_running(simulator)
    simulator.leave_ramp(station)
    if station.started:
        return
    # A start after a stop is a power cycle: the station connects (even after a UI
    # closeConnection) and registers again (1.6 §4.2).
    station.registration = None
    station.boot_response = None
    station.open_connection()
    simulator.start_station(station)
    # Mark it at once: a second start before its task runs must not start it twice.
    station.started = True
    station.changed()


async def start_stations(simulator: Simulator, stations: Iterable[Station]) -> None:
    """Start each of `stations` that is not running."""
    for station in stations:
        await start_station(simulator, station)


async def stop_stations(
    simulator: Simulator, stations: Iterable[Station], *, wait: float = STOP_WAIT
) -> None:
    """Stop `stations` (close frame 1001, no reconnect) and wait up to `wait` s for them."""
    stations = list(stations)
    for station in stations:
        simulator.leave_ramp(station)
        station.stop()
    await _wait_stopped(simulator, stations, wait)


async def _shipped_templates() -> dict[str, StationTemplate]:
    def load() -> dict[str, StationTemplate]:
        found: dict[str, StationTemplate] = {}
        for path in sorted(data_dir("station_templates").glob("*.toml")):
            try:
                template = load_template(path)
            except ConfigError:
                continue  # not a template (e.g. an authorization file)
            found[template.template_name] = template
        return found

    return await trio.to_thread.run_sync(load)


async def template_catalogue(simulator: FleetLike) -> dict[str, StationTemplate]:
    """Templates stations can be added from, by name: the site's, then the shipped ones."""
    state = control_state(simulator)
    if state.shipped_templates is None:
        state.shipped_templates = await _shipped_templates()
    catalogue: dict[str, StationTemplate] = {}
    for template in simulator.site.templates.values():
        if template.path is not None:
            catalogue.setdefault(template.template_name, template)
    for name, template in state.shipped_templates.items():
        catalogue.setdefault(name, template)
    return catalogue


def used_index(names: Iterable[tuple[str, int]], base_name: str, template: StationTemplate) -> int:
    """The highest index of the (station id, index) pairs named from `base_name` (0 if none)."""
    used = 0
    for sid, index in names:
        if index > used and sid == station_id(
            base_name, index, name_suffix=template.name_suffix, fixed_name=template.fixed_name
        ):
            used = index
    return used


def base_name_for(template: StationTemplate, options: Mapping[str, Any]) -> str:
    """The base name of stations added from `template` with addChargingStations `options`."""
    return str(options.get("baseName") or template.base_name or template.template_name)


def _variant(
    simulator: Simulator, template: StationTemplate, options: Mapping[str, Any]
) -> tuple[Path, StationTemplate]:
    """The template with the option overrides, and the key it is registered under in the site."""
    assert template.path is not None
    changes: dict[str, Any] = {}
    for option, attributes in _TEMPLATE_OPTIONS.items():
        if option in options:
            changes.update(dict.fromkeys(attributes, bool(options[option])))
    if not changes:
        return template.path, template
    state = control_state(simulator)
    state.variants += 1
    key = template.path.with_name(f"{template.path.name}#ui-{state.variants}")
    return key, attrs.evolve(template, **changes)


async def add_stations(
    simulator: Simulator,
    template_name: str,
    count: int,
    options: Mapping[str, Any],
    *,
    first_index: int | None = None,
) -> list[Station]:
    """Add `count` stations of a template; their indexes continue after the highest in use
    (or from `first_index`, chosen by the main process over every worker's stations).

    `options`: autoStart (default true), baseName, supervisionUrls, and template flags.
    """
    _require_running(simulator)
    catalogue = await template_catalogue(simulator)
    name = template_name.removesuffix(".toml")
    template = catalogue.get(name)
    if template is None:
        raise ControlError(f"unknown template {template_name!r}; listTemplates names them")
    key, template = _variant(simulator, template, options)
    site = simulator.site
    id_tags = dict(site.id_tags)
    auth_file = template.authorization_file
    if auth_file is not None and auth_file not in id_tags:
        try:
            id_tags[auth_file] = await trio.to_thread.run_sync(load_id_tags, auth_file)
        except ConfigError as exc:
            raise ControlError(str(exc)) from None
    site = attrs.evolve(site, templates={**site.templates, key: template}, id_tags=id_tags)
    base_name = base_name_for(template, options)
    urls = options.get("supervisionUrls")
    if first_index is None:
        names = ((s.station_id, s.identity.index) for s in simulator.stations)
        first_index = used_index(names, base_name, template) + 1
    entry = StationEntry(
        template=key,
        count=count,
        base_name=base_name,
        supervision_urls=(urls,) if isinstance(urls, str) else (tuple(urls) if urls else None),
        auto_start=bool(options.get("autoStart", True)),
    )
    try:
        specs = await trio.to_thread.run_sync(
            lambda: build_specs(
                site,
                seed=simulator.seed,
                state_dir=simulator.state_dir,
                embedded_csms_url=simulator.csms_url,
                entries=[entry],
                first_index=first_index,
            )
        )
    except BuildError as exc:
        raise ControlError(str(exc)) from None
    taken = {station.station_id for station in simulator.stations}
    clashes = [spec.identity.station_id for spec in specs if spec.identity.station_id in taken]
    if clashes:
        raise ControlError(f"station ids already in use: {', '.join(clashes)}")
    simulator.site = site
    added = []
    for spec in specs:
        station = simulator.make_station(spec)
        simulator.stations.append(station)
        added.append(station)
        if spec.auto_start:
            await start_station(simulator, station)
    log.info("added %d stations from template %s", len(added), template.template_name)
    simulator.notify_changed()
    return added


async def delete_stations(
    simulator: Simulator, stations: Sequence[Station], *, delete_state: bool = False
) -> None:
    """Stop `stations`, remove them from the fleet and, if asked, delete their saved state."""
    doomed = {id(station) for station in stations}
    simulator.stations[:] = [s for s in simulator.stations if id(s) not in doomed]
    simulator.notify_changed()
    await stop_stations(simulator, stations)
    if delete_state:
        for station in stations:
            state_path(simulator.state_dir, station.hash_id).unlink(missing_ok=True)
