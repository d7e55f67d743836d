"""The simulator's command interface: the UI protocol's procedures, run against the fleet.

`execute(simulator, procedure, payload)` returns the response payload of the SRPC `ui0.0.1`
protocol (`{"status": "success" | "failure", ...}`); station procedures take optional
`hashIds` (default: every station) and answer `{status, hashIdsSucceeded, hashIdsFailed?,
responsesFailed?}`. Payloads are expected to be checked against `schemas/ui/` already (the UI
server does); a missing or mistyped field still gives a failure, never an exception.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import trio

from evsim_trio.ocpp import OcppError
from evsim_trio.simulator._control import (
    ControlError,
    add_stations,
    control_state,
    delete_stations,
    find_stations,
    start_station,
    start_stations,
    stop_stations,
    template_catalogue,
)
from evsim_trio.simulator._fleet_answers import (
    performance_entries,
    performance_statistics,
    simulator_state,
    template_statistics,
)
from evsim_trio.simulator._snapshot import charging_station_data, jsonable
from evsim_trio.station import Connector, LinkError, Station

if TYPE_CHECKING:
    from evsim_trio.simulator._simulator import Simulator

__all__ = ["PROCEDURES", "UnknownProcedure", "execute"]

Payload = dict[str, Any]


# Station procedures run on this many stations at once.
_FAN_OUT = 256


class UnknownProcedure(Exception):
    """No procedure of that name."""


class _Refused(Exception):
    """A station did not do what was asked; `response` is the CSMS answer if there was one."""

    def __init__(self, message: str, response: Payload | None = None) -> None:
        super().__init__(message)
        self.response = response


# -- running a procedure on stations -------------------------------------------------------


StationAction = Callable[[Station], Awaitable[object]]


def failure(error: str, **extra: Any) -> Payload:
    """A failure response."""
    return {"status": "failure", "error": error, **extra}


def unknown_hash_ids(unknown: list[str]) -> Payload:
    """The failure response to a request naming stations the fleet does not have."""
    return failure(
        f"unknown hashIds: {', '.join(unknown)}", hashIdsSucceeded=[], hashIdsFailed=unknown
    )


async def _on_stations(
    simulator: Simulator,
    payload: Payload,
    action: StationAction,
    *,
    stations: Sequence[Station] | None = None,
) -> Payload:
    """Run `action` on the payload's stations at once and gather the outcome per station."""
    if stations is None:
        hash_ids = payload.get("hashIds")
        stations, unknown = find_stations(simulator, hash_ids)
        if unknown:
            return unknown_hash_ids(unknown)
    outcome: dict[str, Payload | None] = {}
    limiter = trio.CapacityLimiter(_FAN_OUT)

    async def one(station: Station) -> None:
        async with limiter:
            outcome[station.hash_id] = await _attempt(station, action)

    async with trio.open_nursery() as nursery:
        for station in stations:
            nursery.start_soon(one, station)
    order = [station.hash_id for station in stations]
    failed = [h for h in order if outcome[h] is not None]
    response: Payload = {
        "status": "failure" if failed else "success",
        "hashIdsSucceeded": [h for h in order if outcome[h] is None],
    }
    if failed:
        response["hashIdsFailed"] = failed
        response["responsesFailed"] = [outcome[h] for h in failed]
    return response


async def _attempt(station: Station, action: StationAction) -> Payload | None:
    """None on success, else the failed response entry of the station."""
    entry: Payload = {"hashId": station.hash_id, "status": "failure"}
    try:
        await action(station)
    except _Refused as exc:
        entry["errorMessage"] = str(exc)
        if exc.response is not None:
            entry["commandResponse"] = exc.response
    except OcppError as exc:
        entry["errorMessage"] = f"{exc.code}: {exc.description}"
    except (LinkError, ControlError, KeyError, ValueError, RuntimeError) as exc:
        entry["errorMessage"] = str(exc) or type(exc).__name__
    else:
        return None
    return entry


def _connector(station: Station, connector_id: int) -> Connector:
    connector = station.connectors.get(connector_id)
    if connector is None:
        raise _Refused(f"{station.station_id} has no connector {connector_id}")
    return connector


def _accepted(action: str, response: Payload, status: str | None) -> Payload:
    if status != "Accepted":
        raise _Refused(f"{action} {status}", response)
    return response


# -- procedures --------------------------------------------------------------------------


async def _simulator_state(simulator: Simulator, payload: Payload) -> Payload:
    return simulator_state(simulator, [template_statistics(simulator.stations)])


async def _start_simulator(simulator: Simulator, payload: Payload) -> Payload:
    await start_stations(simulator, simulator.stations)
    control_state(simulator).started = True
    simulator.notify_changed()
    return {"status": "success"}


async def _stop_simulator(simulator: Simulator, payload: Payload) -> Payload:
    control_state(simulator).started = False
    await stop_stations(simulator, simulator.stations)
    simulator.notify_changed()
    return {"status": "success"}


async def _list_templates(simulator: Simulator, payload: Payload) -> Payload:
    return {"status": "success", "templates": sorted(await template_catalogue(simulator))}


async def _list_charging_stations(simulator: Simulator, payload: Payload) -> Payload:
    return {
        "status": "success",
        "chargingStations": [charging_station_data(s) for s in simulator.stations],
    }


async def _add_charging_stations(simulator: Simulator, payload: Payload) -> Payload:
    # `_firstIndex`: from the main process, when the stations of the fleet are spread over workers.
    first_index = payload.get("_firstIndex")
    added = await add_stations(
        simulator,
        str(payload["template"]),
        int(payload["numberOfStations"]),
        payload.get("options") or {},
        first_index=int(first_index) if first_index is not None else None,
    )
    return {
        "status": "success",
        "hashIdsSucceeded": [station.hash_id for station in added],
        "chargingStationIds": [station.station_id for station in added],
    }


async def _delete_charging_stations(simulator: Simulator, payload: Payload) -> Payload:
    stations, unknown = find_stations(simulator, payload.get("hashIds"))
    if unknown:
        return unknown_hash_ids(unknown)
    await delete_stations(
        simulator, stations, delete_state=bool(payload.get("deleteConfiguration", False))
    )
    return {"status": "success", "hashIdsSucceeded": [s.hash_id for s in stations]}


async def _performance_statistics(simulator: Simulator, payload: Payload) -> Payload:
    entries, statistics = performance_entries(simulator)
    return performance_statistics(statistics.timestamp, statistics.fleet, entries)


def _station_procedure(
    make: Callable[[Simulator, Payload], StationAction],
) -> Callable[[Simulator, Payload], Awaitable[Payload]]:
    """A procedure that runs the action `make(simulator, payload)` on the payload's stations."""

    async def procedure(simulator: Simulator, payload: Payload) -> Payload:
        return await _on_stations(simulator, payload, make(simulator, payload))

    return procedure


def _start_charging_station(simulator: Simulator, payload: Payload) -> StationAction:
    return lambda station: start_station(simulator, station)


def _stop_charging_station(simulator: Simulator, payload: Payload) -> StationAction:
    return lambda station: stop_stations(simulator, [station])


def _open_connection(simulator: Simulator, payload: Payload) -> StationAction:
    async def action(station: Station) -> None:
        if not station.started:
            raise _Refused(f"{station.station_id} is not started")
        station.open_connection()

    return action


def _close_connection(simulator: Simulator, payload: Payload) -> StationAction:
    async def action(station: Station) -> None:
        station.close_connection()

    return action


def _set_supervision_url(simulator: Simulator, payload: Payload) -> StationAction:
    url = str(payload["url"])

    async def action(station: Station) -> None:
        station.supervision_url = url
        station.changed()

    return action


def _change_configuration(simulator: Simulator, payload: Payload) -> StationAction:
    key, value = str(payload["key"]), str(payload["value"])

    async def action(station: Station) -> None:
        status = station.configuration.change(key, value)
        if status in ("Accepted", "RebootRequired"):
            station.persist()
            station.changed()
        else:
            raise _Refused(f"ChangeConfiguration {key}: {status}", {"status": status})

    return action


def _atg(start: bool) -> Callable[[Simulator, Payload], StationAction]:
    def make(simulator: Simulator, payload: Payload) -> StationAction:
        connector_ids = payload.get("connectorIds")

        async def action(station: Station) -> None:
            if not station.started:
                raise _Refused(f"{station.station_id} is not started")
            if start:
                station.atg.start(connector_ids)
            else:
                station.atg.stop(connector_ids)

        return action

    return make


def _lock(locked: bool) -> Callable[[Simulator, Payload], StationAction]:
    def make(simulator: Simulator, payload: Payload) -> StationAction:
        connector_id = int(payload["connectorId"])

        async def action(station: Station) -> None:
            _connector(station, connector_id).locked = locked
            station.persist()
            station.changed()

        return action

    return make


def _start_transaction(simulator: Simulator, payload: Payload) -> StationAction:
    connector_id, id_tag = int(payload["connectorId"]), str(payload["idTag"])

    async def action(station: Station) -> None:
        _connector(station, connector_id)
        if not station.started:
            raise _Refused(f"{station.station_id} is not started")
        if not await station.start_transaction(connector_id, id_tag):
            raise _Refused(f"transaction refused on connector {connector_id}")

    return action


async def _stop_transaction(simulator: Simulator, payload: Payload) -> Payload:
    transaction_id = int(payload["transactionId"])
    stations: Sequence[Station] | None = None
    if payload.get("hashIds") is None:
        # A transaction runs on one station: by default, ask the stations that have it.
        stations = [s for s in simulator.stations if s.transaction_for(transaction_id)]
        if not stations:
            return failure(f"no station has transaction {transaction_id}", hashIdsSucceeded=[])

    async def action(station: Station) -> None:
        connector = station.transaction_for(transaction_id)
        if connector is None:
            raise _Refused(f"{station.station_id} has no transaction {transaction_id}")
        if not await station.stop_transaction(connector.connector_id):
            raise _Refused(f"StopTransaction of transaction {transaction_id} refused")

    return await _on_stations(simulator, payload, action, stations=stations)


def _authorize(simulator: Simulator, payload: Payload) -> StationAction:
    id_tag = str(payload["idTag"])

    async def action(station: Station) -> None:
        status = await station.authorize(id_tag)
        _accepted("Authorize", {"idTagInfo": {"status": status}}, status)

    return action


def _boot_notification(simulator: Simulator, payload: Payload) -> StationAction:
    async def action(station: Station) -> None:
        response = await station.send_boot_notification()
        if response is None:
            raise _Refused("BootNotification failed (CALLERROR or timeout)")
        _accepted("BootNotification", jsonable(response), response.get("status"))

    return action


def _heartbeat(simulator: Simulator, payload: Payload) -> StationAction:
    return lambda station: station.call("Heartbeat", {})


def _status_notification(simulator: Simulator, payload: Payload) -> StationAction:
    connector_id, status = int(payload["connectorId"]), str(payload["status"])
    error_code = str(payload.get("errorCode", "NoError"))

    async def action(station: Station) -> None:
        connector = _connector(station, connector_id)
        await station.send_status(connector_id, status, error_code)
        if connector.notified_status != status:
            raise _Refused(f"StatusNotification {status} was not acknowledged by the CSMS")

    return action


def _meter_values(simulator: Simulator, payload: Payload) -> StationAction:
    connector_id = int(payload["connectorId"])

    async def action(station: Station) -> None:
        _connector(station, connector_id)
        # In a transaction the reading joins the transaction's queue (delivered in order).
        await station.send_meter_values_now(connector_id)

    return action


def _data_transfer(simulator: Simulator, payload: Payload) -> StationAction:
    async def action(station: Station) -> None:
        request: Payload = {
            "vendorId": payload.get("vendorId") or station.template.charge_point_vendor
        }
        request.update((k, payload[k]) for k in ("messageId", "data") if k in payload)
        response = await station.call("DataTransfer", request)
        _accepted("DataTransfer", response, response.get("status"))

    return action


def _notification(action_name: str) -> Callable[[Simulator, Payload], StationAction]:
    def make(simulator: Simulator, payload: Payload) -> StationAction:
        status = str(payload["status"])
        return lambda station: station.call(action_name, {"status": status})

    return make


Procedure = Callable[["Simulator", Payload], Awaitable[Payload]]

PROCEDURES: dict[str, Procedure] = {
    "simulatorState": _simulator_state,
    "startSimulator": _start_simulator,
    "stopSimulator": _stop_simulator,
    "listTemplates": _list_templates,
    "listChargingStations": _list_charging_stations,
    "addChargingStations": _add_charging_stations,
    "deleteChargingStations": _delete_charging_stations,
    "performanceStatistics": _performance_statistics,
    "stopTransaction": _stop_transaction,
    **{
        name: _station_procedure(make)
        for name, make in {
            "setSupervisionUrl": _set_supervision_url,
            "changeConfiguration": _change_configuration,
            "startChargingStation": _start_charging_station,
            "stopChargingStation": _stop_charging_station,
            "openConnection": _open_connection,
            "closeConnection": _close_connection,
            "startAutomaticTransactionGenerator": _atg(start=True),
            "stopAutomaticTransactionGenerator": _atg(start=False),
            "lockConnector": _lock(locked=True),
            "unlockConnector": _lock(locked=False),
            "startTransaction": _start_transaction,
            "authorize": _authorize,
            "bootNotification": _boot_notification,
            "heartbeat": _heartbeat,
            "statusNotification": _status_notification,
            "meterValues": _meter_values,
            "dataTransfer": _data_transfer,
            "diagnosticsStatusNotification": _notification("DiagnosticsStatusNotification"),
            "firmwareStatusNotification": _notification("FirmwareStatusNotification"),
        }.items()
    },
}
"""Procedure name -> implementation; the UI's `schemas/ui/` has one schema per name."""


async def execute(simulator: Simulator, procedure: str, payload: Payload) -> Payload:
    """Run one UI procedure and return its response payload.

    Raises UnknownProcedure for a name not in PROCEDURES. Failures of the request (a bad field,
    an unknown template) and of stations come back as `{"status": "failure", ...}`.
    """
    implementation = PROCEDURES.get(procedure)
    if implementation is None:
        raise UnknownProcedure(procedure)
    try:
        return await implementation(simulator, payload)
    except ControlError as exc:
        return failure(str(exc))
    except (KeyError, TypeError, ValueError) as exc:
        return failure(f"{procedure}: bad payload: {exc!r}")
