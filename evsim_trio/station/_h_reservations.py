"""Handlers of the Reservation profile: ReserveNow (OCPP 1.6 §5.13), CancelReservation (§5.1).

Each answers at once; the StatusNotification of the connector follows the answer (the station
spawns it). The rules are in `_reservations.py`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from evsim_trio.station._clock import utc_now
from evsim_trio.station._handlers import handler
from evsim_trio.station._reservations import Reservation, reserve_now_status

if TYPE_CHECKING:
    from evsim_trio.ocpp import Call
    from evsim_trio.station._station import Station

Payload = dict[str, Any]


@handler("ReserveNow")
async def reserve_now(station: Station, call: Call) -> Payload:
    """1.6 §5.13: Accepted (the connector becomes Reserved), Faulted, Occupied, Rejected or
    Unavailable; an existing reservationId is replaced."""
    reservation = Reservation.from_request(call.payload)
    status = reserve_now_status(
        station.connectors,
        station.reservations,
        reservation,
        now=utc_now(),
        connector_zero_supported=station.configuration.get_bool(
            "ReserveConnectorZeroSupported", False
        ),
    )
    if status == "Accepted":
        station.reserve(reservation)
    return {"status": status}


@handler("CancelReservation")
async def cancel_reservation(station: Station, call: Call) -> Payload:
    """1.6 §5.1: Accepted for a known reservationId (its connector is Available again),
    Rejected otherwise."""
    found = station.cancel_reservation(int(call.payload["reservationId"]))
    return {"status": "Accepted" if found else "Rejected"}
