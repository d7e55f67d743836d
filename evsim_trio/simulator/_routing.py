"""The command interface of a fleet: in-process, or routed to the worker processes.

`execute(fleet, procedure, payload)` answers exactly as `_commands.execute` does for an
in-process `Simulator`; for a `WorkerFleet` it sends each station's part of a request to the
worker that runs the station and merges the answers in fleet order (the order the in-process
fleet would list them in), so that a UI client cannot tell the two apart. Stations of a worker
that died fail with the reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import trio

from evsim_trio.config import LogSection, Site
from evsim_trio.simulator._build import plan_fleet
from evsim_trio.simulator._commands import (
    PROCEDURES,
    UnknownProcedure,
    failure,
    unknown_hash_ids,
)
from evsim_trio.simulator._commands import execute as execute_in_process
from evsim_trio.simulator._control import (
    ControlError,
    base_name_for,
    control_state,
    template_catalogue,
    used_index,
)
from evsim_trio.simulator._fleet_answers import (
    performance_statistics,
    simulator_state,
    template_rows,
)
from evsim_trio.simulator._simulator import Simulator
from evsim_trio.simulator._statistics import TrafficStatistics
from evsim_trio.simulator._workers import Worker, WorkerFleet, WorkerGone, worker_count

__all__ = ["Fleet", "execute", "make_fleet"]

Fleet = Simulator | WorkerFleet
"""A fleet the UI and the CLI drive: in-process, or spread over worker processes."""

Payload = dict[str, Any]


def make_fleet(
    site: Site,
    *,
    seed: int | None = None,
    shard: tuple[int, int] | None = None,
    state_dir: Path | None = None,
    log_setup: tuple[LogSection, str | None] | None = None,
) -> Fleet:
    """The fleet of `site`: in-process, or over worker processes as `[workers]` says.

    Raises BuildError (a fleet that cannot be planned) before any process starts.
    """
    config = site.config
    csms = config.csms
    planned = plan_fleet(
        site,
        seed=0,  # the count does not depend on the seed
        embedded_csms_url=f"ws://{csms.host}:{csms.port}" if csms.enabled else None,
        shard=shard,
    )
    processes = worker_count(config.workers.processes, len(planned))
    if processes == 0:
        return Simulator(site, seed=seed, state_dir=state_dir, shard=shard)
    return WorkerFleet(
        site,
        processes=processes,
        seed=seed,
        state_dir=state_dir,
        shard=shard,
        log_setup=log_setup,
    )


def _gone_entry(hash_id: str, reason: str) -> Payload:
    return {"hashId": hash_id, "status": "failure", "errorMessage": reason}


def _by_worker(fleet: WorkerFleet, targets: Sequence[str]) -> dict[int, list[str]]:
    """`targets` (known hashIds) grouped by the index of the worker that runs them."""
    groups: dict[int, list[str]] = {}
    for hash_id in targets:
        groups.setdefault(fleet.roster[hash_id].worker, []).append(hash_id)
    return groups


async def _on_stations(
    fleet: WorkerFleet, procedure: str, payload: Payload, targets: Sequence[str]
) -> Payload:
    """Run a station procedure on `targets` (known hashIds, in answer order) in their workers."""
    position = {hash_id: i for i, hash_id in enumerate(targets)}
    by_worker = _by_worker(fleet, targets)
    succeeded: list[str] = []
    failed: list[Payload] = []
    answers: list[tuple[list[str], Any]] = []

    async def one(worker: Worker, hash_ids: list[str]) -> None:
        try:
            answer = await fleet.call(worker, procedure, {**payload, "hashIds": hash_ids})
        except WorkerGone as exc:
            answer = str(exc)  # why its stations failed
        answers.append((hash_ids, answer))

    async with trio.open_nursery() as nursery:
        for index, hash_ids in by_worker.items():
            nursery.start_soon(one, fleet.workers[index], hash_ids)
    for hash_ids, answer in answers:
        if isinstance(answer, str):
            failed += [_gone_entry(h, answer) for h in hash_ids]
            continue
        succeeded += answer.get("hashIdsSucceeded", [])
        failed += answer.get("responsesFailed", [])
        # Entries without a response (should not happen): still reported as failed.
        reported = {entry.get("hashId") for entry in answer.get("responsesFailed", [])}
        failed += [
            {"hashId": h, "status": "failure"}
            for h in answer.get("hashIdsFailed", [])
            if h not in reported
        ]
    succeeded.sort(key=lambda h: position.get(h, len(position)))
    failed.sort(key=lambda entry: position.get(str(entry.get("hashId")), len(position)))
    response: Payload = {
        "status": "failure" if failed else "success",
        "hashIdsSucceeded": succeeded,
    }
    if failed:
        response["hashIdsFailed"] = [entry["hashId"] for entry in failed]
        response["responsesFailed"] = failed
    return response


def _targets(fleet: WorkerFleet, payload: Payload) -> tuple[list[str], list[str]]:
    """The payload's hashIds that are in the fleet (all, in fleet order, when none are given)
    and those that are not."""
    hash_ids = payload.get("hashIds")
    if hash_ids is None:
        return fleet.ordered(fleet.roster), []
    return [h for h in hash_ids if h in fleet.roster], [
        h for h in hash_ids if h not in fleet.roster
    ]


async def _stations_procedure(fleet: WorkerFleet, procedure: str, payload: Payload) -> Payload:
    targets, unknown = _targets(fleet, payload)
    if unknown:
        return unknown_hash_ids(unknown)
    return await _on_stations(fleet, procedure, payload, targets)


async def _simulator_state(fleet: WorkerFleet, procedure: str, payload: Payload) -> Payload:
    shares = [
        share["templateStatistics"]
        for _, share in await fleet.gather("_templateStatistics", {})
        if share
    ]
    for worker in fleet.workers:
        if worker.error is not None:
            # A dead worker's stations are still in the fleet: added, not started.
            entries = (fleet.roster[h] for h in fleet.owned_by(worker))
            shares.append(template_rows((e.template_name, e.index, False) for e in entries))
    return simulator_state(fleet, shares, processes=fleet.processes)


async def _start_stop_simulator(fleet: WorkerFleet, procedure: str, payload: Payload) -> Payload:
    for worker, answer in await fleet.gather(procedure, {}):
        if answer is not None and answer.get("status") != "success":
            return failure(f"worker {worker.index + 1}: {answer.get('error', procedure)}")
    control_state(fleet).started = procedure == "startSimulator"
    fleet.notify_changed()
    return {"status": "success"}


async def _list_templates(fleet: WorkerFleet, procedure: str, payload: Payload) -> Payload:
    return {"status": "success", "templates": sorted(await template_catalogue(fleet))}


def _failed_station_data(fleet: WorkerFleet, hash_id: str) -> Payload:
    """What is known of a station whose worker died: its identity, and that it failed."""
    entry = fleet.roster[hash_id]
    return {
        "started": False,
        "wsState": 3,
        "state": "failed",
        "error": fleet.gone_reason(fleet.workers[entry.worker]),
        "stationInfo": {
            "chargingStationId": entry.station_id,
            "hashId": hash_id,
            "templateName": entry.template_name,
            "templateIndex": entry.index,
        },
        "connectors": [],
    }


async def _list_charging_stations(fleet: WorkerFleet, procedure: str, payload: Payload) -> Payload:
    stations: list[Payload] = []
    for _, answer in await fleet.gather(procedure, {}):
        if answer is not None:
            stations += answer.get("chargingStations", [])
    for worker in fleet.workers:
        if worker.error is not None:
            stations += [_failed_station_data(fleet, h) for h in fleet.owned_by(worker)]
    stations.sort(key=lambda s: fleet.order_of(s["stationInfo"]["hashId"]))
    return {"status": "success", "chargingStations": stations}


async def _add_charging_stations(fleet: WorkerFleet, procedure: str, payload: Payload) -> Payload:
    live = [w for w in fleet.workers if w.alive]
    if not live:
        return failure("no worker process is running")
    catalogue = await template_catalogue(fleet)
    template = catalogue.get(str(payload["template"]).removesuffix(".toml"))
    first_index = None
    if template is not None:
        base_name = base_name_for(template, payload.get("options") or {})
        names = ((e.station_id, e.index) for e in fleet.roster.values())
        first_index = used_index(names, base_name, template) + 1
    # The worker with the fewest stations takes them.
    load = {w.index: 0 for w in live}
    for entry in fleet.roster.values():
        if entry.worker in load:
            load[entry.worker] += 1
    worker = fleet.workers[min(load, key=lambda i: (load[i], i))]
    try:
        answer = await fleet.call(worker, procedure, {**payload, "_firstIndex": first_index})
        fleet.adopt_roster(worker, (await fleet.call(worker, "_roster", {}))["roster"])
    except WorkerGone as exc:
        return failure(str(exc))
    fleet.notify_changed()
    return dict(answer)


async def _delete_charging_stations(
    fleet: WorkerFleet, procedure: str, payload: Payload
) -> Payload:
    targets, unknown = _targets(fleet, payload)
    if unknown:
        return unknown_hash_ids(unknown)
    for index, hash_ids in _by_worker(fleet, targets).items():
        worker = fleet.workers[index]
        if worker.alive:
            with contextlib.suppress(WorkerGone):
                await fleet.call(worker, procedure, {**payload, "hashIds": hash_ids})
        for hash_id in hash_ids:
            fleet.roster.pop(hash_id, None)
    fleet.notify_changed()
    return {"status": "success", "hashIdsSucceeded": targets}


async def _performance_statistics(fleet: WorkerFleet, procedure: str, payload: Payload) -> Payload:
    merged = TrafficStatistics()
    entries: list[Payload] = []
    timestamp = ""
    for _, answer in await fleet.gather("_performanceStatistics", {}):
        if answer is not None:
            merged.merge(TrafficStatistics.from_json(answer["fleet"]))
            entries += answer["entries"]
            timestamp = max(timestamp, str(answer["timestamp"]))
    entries.sort(key=lambda e: fleet.order_of(e["hashId"]))
    return performance_statistics(timestamp, merged, entries)


async def _stop_transaction(fleet: WorkerFleet, procedure: str, payload: Payload) -> Payload:
    if payload.get("hashIds") is not None:
        return await _stations_procedure(fleet, procedure, payload)
    transaction_id = int(payload["transactionId"])
    having: list[str] = []
    for _, answer in await fleet.gather("_transactionStations", {"transactionId": transaction_id}):
        if answer is not None:
            having += answer["hashIds"]
    if not having:
        return failure(f"no station has transaction {transaction_id}", hashIdsSucceeded=[])
    return await _on_stations(fleet, procedure, payload, fleet.ordered(having))


_Route = Callable[[WorkerFleet, str, Payload], Awaitable[Payload]]
_ROUTES: dict[str, _Route] = {
    "simulatorState": _simulator_state,
    "startSimulator": _start_stop_simulator,
    "stopSimulator": _start_stop_simulator,
    "listTemplates": _list_templates,
    "listChargingStations": _list_charging_stations,
    "addChargingStations": _add_charging_stations,
    "deleteChargingStations": _delete_charging_stations,
    "performanceStatistics": _performance_statistics,
    "stopTransaction": _stop_transaction,
}


async def execute(fleet: Fleet, procedure: str, payload: Payload) -> Payload:
    """Run one UI procedure on the fleet and return its response payload.

    Raises UnknownProcedure for a name not in PROCEDURES; every other failure is a
    `{"status": "failure", ...}` response.
    """
    if not isinstance(fleet, WorkerFleet):
        return await execute_in_process(fleet, procedure, payload)
    if procedure not in PROCEDURES:
        raise UnknownProcedure(procedure)
    route = _ROUTES.get(procedure, _stations_procedure)
    try:
        return await route(fleet, procedure, payload)
    except ControlError as exc:
        return failure(str(exc))
    except (KeyError, TypeError, ValueError) as exc:
        return failure(f"{procedure}: bad payload: {exc!r}")
    except RuntimeError as exc:  # a worker could not run the procedure
        return failure(str(exc))
