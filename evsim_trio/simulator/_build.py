"""From a site config to station specs: ids, hashIds, serial numbers, URLs, connectors."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from evsim_trio.config import Site, StationEntry, StationTemplate
from evsim_trio.station import (
    StationIdentity,
    StationSpec,
    hash_id,
    load_state,
    save_state,
    serial_number,
    state_path,
    station_id,
    station_rng,
)

log = logging.getLogger(__name__)


class BuildError(Exception):
    """The site config describes a fleet that cannot be built (e.g. colliding station ids)."""


def _connector_ids(template: StationTemplate, sid: str, seed: int) -> tuple[int, ...]:
    count = template.number_of_connectors
    if isinstance(count, tuple):
        # A list of possible counts: each station draws one from its own stream.
        picked = station_rng(seed, f"{sid}/connectors").choice(count)
        return tuple(range(1, picked + 1))
    return template.connector_ids()


class _Distributor:
    """Supervision URL distribution: charging-station-affinity, round-robin or random."""

    def __init__(self, distribution: str, seed: int) -> None:
        self.distribution = distribution
        self.seed = seed
        self._round_robin = itertools.count()

    def pick(self, urls: Sequence[str], sid: str, index: int) -> str:
        if len(urls) == 1:
            return urls[0]
        if self.distribution == "round-robin":
            return urls[next(self._round_robin) % len(urls)]
        if self.distribution == "random":
            return station_rng(self.seed, f"{sid}/url").choice(list(urls))
        # charging-station-affinity: the station index decides, stable across runs.
        return urls[(index - 1) % len(urls)]


def _identity(
    template: StationTemplate,
    entry_index: int,
    index: int,
    sid: str,
    seed: int,
    state_dir: Path,
) -> tuple[StationIdentity, Path, dict[str, Any] | None]:
    hid = hash_id(
        sid,
        vendor=template.charge_point_vendor,
        model=template.charge_point_model,
        charge_point_serial_number_prefix=template.charge_point_serial_number_prefix,
        charge_box_serial_number_prefix=template.charge_box_serial_number_prefix,
    )
    path = state_path(state_dir, hid)
    state = load_state(path)
    info = (
        (state or {}).get("station_info", {})
        if template.station_info_persistent_configuration
        else {}
    )
    cp_serial = info.get("charge_point_serial_number")
    cb_serial = info.get("charge_box_serial_number")
    if not isinstance(cp_serial, str) or not isinstance(cb_serial, str):
        # Serial numbers: prefix + random suffix, generated once, then persisted.
        rng = station_rng(seed, f"{sid}/serials")
        cp_serial = serial_number(template.charge_point_serial_number_prefix, rng)
        cb_serial = serial_number(template.charge_box_serial_number_prefix, rng)
        if template.station_info_persistent_configuration:
            info = {
                "station_id": sid,
                "charge_point_serial_number": cp_serial,
                "charge_box_serial_number": cb_serial,
            }
            if state is None:
                # A new station: its serial numbers are on disk before it first boots. No
                # fsync: a crash that loses the file loses nothing the seed cannot redo (and the
                # station's own first write carries them too); fsyncs cost ~0.3 ms per station.
                save_state(path, {"station_info": info}, fsync=False)
            else:
                # An existing file is never rewritten here (the station saves its own state).
                state = {**state, "station_info": info}
    identity = StationIdentity(
        station_id=sid,
        hash_id=hid,
        index=index,
        template_name=template.template_name,
        template_index=entry_index,
        charge_point_serial_number=cp_serial,
        charge_box_serial_number=cb_serial,
    )
    return identity, path, state


Shard = tuple[int, int]
"""(K, N): the K-th (1-based) of N disjoint slices of a fleet."""


def parse_shard(text: str) -> Shard:
    """`"K/N"` as (K, N); raises ValueError unless 1 <= K <= N."""
    k, sep, n = text.partition("/")
    try:
        shard = (int(k), int(n))
    except ValueError:
        shard = (0, 0)
    if not sep or not 1 <= shard[0] <= shard[1]:
        raise ValueError(f"expected K/N with 1 <= K <= N (e.g. 2/3), got {text!r}")
    return shard


def _check_shard(shard: Shard) -> None:
    k, n = shard
    if not 1 <= k <= n:
        raise ValueError(f"shard {k}/{n}: expected 1 <= K <= N")


@attrs.frozen
class PlannedStation:
    """A station's place in the fleet, before anything is read from or written to disk."""

    entry_index: int
    entry: StationEntry
    template: StationTemplate
    index: int
    station_id: str
    supervision_url: str


def plan_fleet(
    site: Site,
    *,
    seed: int,
    embedded_csms_url: str | None,
    entries: Sequence[StationEntry] | None = None,
    first_index: int = 1,
    shard: Shard | None = None,
    worker: Shard | None = None,
) -> list[PlannedStation]:
    """Ids and supervision URLs of every station, in config order; pure (no I/O).

    Indexes run from `first_index` per entry (stations added at run time continue a series).
    With `shard=(K, N)`, only the stations whose position p (0-based, in config order over the
    whole fleet) has p % N == K - 1: N shards are disjoint and together the whole fleet, and a
    station has the same id, index and URL in its shard as in the whole fleet.

    With `worker=(J, W)` too, the J-th of W slices of that (a worker process's stations, dealt the
    same way).

    Raises BuildError when ids collide or a station has no URL to connect to, ValueError for a
    shard that is not 1 <= K <= N.
    """
    for part in (shard, worker):
        if part is not None:
            _check_shard(part)
    config = site.config
    distributor = _Distributor(config.supervision.distribution, seed)
    planned: list[PlannedStation] = []
    seen: dict[str, int] = {}
    for entry_index, entry in enumerate(entries if entries is not None else config.stations):
        template = site.template_for(entry)
        base_name = entry.base_name or template.base_name or template.template_name
        urls: Sequence[str] = (
            entry.supervision_urls
            or template.supervision_urls
            or config.supervision.urls
            or ((embedded_csms_url,) if embedded_csms_url else ())
        )
        if not urls:
            raise BuildError(
                f"{site.path}: stations[{entry_index}]: no supervision URL and no embedded CSMS"
            )
        for index in range(first_index, first_index + entry.count):
            sid = station_id(
                base_name,
                index,
                name_suffix=template.name_suffix,
                fixed_name=template.fixed_name,
            )
            if sid in seen:
                raise BuildError(
                    f"{site.path}: stations[{entry_index}]: station id {sid!r} is already used "
                    f"by stations[{seen[sid]}]; give the entries different base_name values"
                )
            seen[sid] = entry_index
            url = distributor.pick(urls, sid, index)
            planned.append(PlannedStation(entry_index, entry, template, index, sid, url))
    # Sliced after the whole fleet is planned: ids are checked for collisions fleet-wide and
    # round-robin URLs are dealt as without shards.
    for part in (shard, worker):
        if part is not None:
            k, n = part
            planned = planned[k - 1 :: n]
    return planned


def build_specs(
    site: Site,
    *,
    seed: int,
    state_dir: Path,
    embedded_csms_url: str | None,
    entries: Sequence[StationEntry] | None = None,
    first_index: int = 1,
    shard: Shard | None = None,
    worker: Shard | None = None,
) -> list[StationSpec]:
    """Every station of the site (or of its `shard`, see `plan_fleet`), with its state loaded.

    Raises BuildError (and ValueError for a bad shard).
    """
    specs = []
    planned = plan_fleet(
        site,
        seed=seed,
        embedded_csms_url=embedded_csms_url,
        entries=entries,
        first_index=first_index,
        shard=shard,
        worker=worker,
    )
    for p in planned:
        identity, path, state = _identity(
            p.template, p.entry_index, p.index, p.station_id, seed, state_dir
        )
        specs.append(
            StationSpec(
                identity=identity,
                template=p.template,
                supervision_url=p.supervision_url,
                seed=seed,
                connector_ids=_connector_ids(p.template, p.station_id, seed),
                auto_start=p.entry.auto_start,
                id_tags=site.id_tags_for(p.template),
                state_path=path,
                state=state,
            )
        )
    return specs
