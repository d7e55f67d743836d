"""Handlers of the CSMS requests that drive transactions, availability, reset and triggers.

Each answers at once and starts follow-up work in the station's nursery (OCPP 1.6 §5).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from evsim_trio.station._clock import format_timestamp, utc_now
from evsim_trio.station._handlers import handler

if TYPE_CHECKING:
    from evsim_trio.ocpp import Call
    from evsim_trio.station._station import Station

Payload = dict[str, Any]


@handler("RemoteStartTransaction")
async def remote_start(station: Station, call: Call) -> Payload:
    """1.6 §5.11: Accepted when a connector can start; the transaction follows the answer."""
    payload = call.payload
    connector_id = payload.get("connectorId")
    if connector_id is None:
        free = [
            c.connector_id for c in station.connectors.values() if c.connector_id and c.can_start()
        ]
        if not free:
            return {"status": "Rejected"}
        connector_id = free[0]
    connector = station.connectors.get(connector_id)
    # A Reserved connector may start for the reserved tag: start_transaction checks it.
    if connector_id == 0 or connector is None or not connector.can_start(reserved_ok=True):
        return {"status": "Rejected"}
    reservation = station.reservations.on_connector(connector_id)
    if (
        reservation is not None
        and reservation.parent_id_tag is None
        and not reservation.matches(str(payload["idTag"]), None)
    ):
        return {"status": "Rejected"}  # reserved for another idTag (1.6 §5.13)
    profile = payload.get("chargingProfile")
    if profile is not None and profile.get("chargingProfilePurpose") != "TxProfile":
        return {"status": "Rejected"}
    station.spawn(station.remote_start, connector_id, payload["idTag"], profile)
    return {"status": "Accepted"}


@handler("RemoteStopTransaction")
async def remote_stop(station: Station, call: Call) -> Payload:
    """1.6 §5.12: Accepted for a running transaction id, Rejected otherwise."""
    connector = station.transaction_for(int(call.payload["transactionId"]))
    if connector is None:
        return {"status": "Rejected"}
    station.spawn(station.stop_transaction, connector.connector_id, "Remote")
    return {"status": "Accepted"}


@handler("UnlockConnector")
async def unlock_connector(station: Station, call: Call) -> Payload:
    """1.6 §5.18: a running transaction is stopped with reason UnlockCommand, then Unlocked."""
    connector_id = int(call.payload["connectorId"])
    connector = station.connectors.get(connector_id)
    if connector_id == 0 or connector is None:
        return {"status": "NotSupported"}
    if connector.transaction is not None:
        # Stop it now (locally, so that it can't restart); the messages follow the answer.
        station.spawn(station.stop_transaction, connector_id, "UnlockCommand")
    connector.locked = False
    station.changed()
    return {"status": "Unlocked"}


@handler("Reset")
async def reset(station: Station, call: Call) -> Payload:
    """1.6 §5.14: stop transactions (SoftReset/HardReset), close, wait reset_time, boot again."""
    station.spawn(station.reset, str(call.payload["type"]))
    return {"status": "Accepted"}


@handler("ChangeAvailability")
async def change_availability(station: Station, call: Call) -> Payload:
    """1.6 §5.2: Scheduled while a transaction runs (applied when it ends); 0 = whole station."""
    connector_id = int(call.payload["connectorId"])
    wanted = str(call.payload["type"])
    if connector_id != 0 and connector_id not in station.connectors:
        return {"status": "Rejected"}
    targets = (
        [c for c in station.connectors.values()]
        if connector_id == 0
        else [station.connectors[connector_id]]
    )
    scheduled = False
    for connector in targets:
        if connector.transaction is not None:
            connector.pending_availability = wanted
            scheduled = True
        else:
            connector.pending_availability = None
            if connector.availability != wanted:
                connector.availability = wanted
                status = "Available" if wanted == "Operative" else "Unavailable"
                station.spawn(station.send_status, connector.connector_id, status)
    station.persist()
    return {"status": "Scheduled" if scheduled else "Accepted"}


TRIGGERABLE = frozenset(
    {
        "BootNotification",
        "DiagnosticsStatusNotification",
        "FirmwareStatusNotification",
        "Heartbeat",
        "MeterValues",
        "StatusNotification",
    }
)


@handler("TriggerMessage")
async def trigger_message(station: Station, call: Call) -> Payload:
    """1.6 §5.17: Accepted, then the requested message is sent after the answer."""
    requested = str(call.payload["requestedMessage"])
    connector_id = call.payload.get("connectorId")
    if requested not in TRIGGERABLE:
        return {"status": "NotImplemented"}
    if connector_id is not None and connector_id not in station.connectors:
        return {"status": "Rejected"}
    station.spawn(station.send_triggered, requested, connector_id)
    return {"status": "Accepted"}


@handler("SetChargingProfile")
async def set_charging_profile(station: Station, call: Call) -> Payload:
    """1.6 §5.16: stored per connector; the limit applies to the simulated power at once."""
    connector_id = int(call.payload["connectorId"])
    if connector_id != 0 and connector_id not in station.connectors:
        return {"status": "Rejected"}
    connector = station.connectors.get(connector_id)
    tx = connector.transaction if connector is not None else None
    status = station.install_profile(
        connector_id,
        call.payload["csChargingProfiles"],
        tx.transaction_id if tx is not None else None,
    )
    return {"status": status}


@handler("ClearChargingProfile")
async def clear_charging_profile(station: Station, call: Call) -> Payload:
    """1.6 §5.5: by id, connector, purpose and stack level; Unknown when nothing matched."""
    payload = call.payload
    status = station.profiles.clear(
        id=payload.get("id"),
        connector_id=payload.get("connectorId"),
        purpose=payload.get("chargingProfilePurpose"),
        stack_level=payload.get("stackLevel"),
    )
    if status == "Accepted":
        station.limits_changed()
    return {"status": status}


@handler("GetCompositeSchedule")
async def get_composite_schedule(station: Station, call: Call) -> Payload:
    """1.6 §5.7: the schedule the station would follow, in the requested unit."""
    payload = call.payload
    connector_id = int(payload["connectorId"])
    if connector_id != 0 and connector_id not in station.connectors:
        return {"status": "Rejected"}
    voltage, phases, dc = station.electrical()
    start = utc_now().replace(microsecond=0)
    schedule = station.profiles.composite_schedule(
        connector_id,
        start,
        int(payload["duration"]),
        str(payload.get("chargingRateUnit", "W")),
        tx_start=station.transaction_start(connector_id),
        voltage=voltage,
        phases=phases,
        dc=dc,
        max_power_w=_connector_cap(station, connector_id),
    )
    if schedule is None:
        return {"status": "Rejected"}
    return {
        "status": "Accepted",
        "connectorId": connector_id,
        "scheduleStart": format_timestamp(start),
        "chargingSchedule": schedule,
    }


def _connector_cap(station: Station, connector_id: int) -> float | None:
    """The most a connector (or, for 0, the station) can deliver, in W."""
    if connector_id == 0:
        meters = list(station.meters.values())
        return meters[0].station_max_power_w() if meters else None
    return station.meters[connector_id].connector_max_power_w(station.power_share())
