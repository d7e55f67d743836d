"""Reservations of connectors (OCPP 1.6 §3.11 Reservation, §5.13 ReserveNow, §5.1 Cancel).

Data and decisions only, no trio: the station (`_station.py`) applies them, runs one expiry task
per reservation and sends the StatusNotifications.

The rules, and the choices made where the specification is silent:
- ReserveNow answers, in this order (§5.13): Rejected for connector 0 while
  ReserveConnectorZeroSupported is false, for a connector the station does not have, or for an
  expiryDate not in the future; Faulted for a Faulted connector; Unavailable for an Inoperative
  or Unavailable one; Occupied for one with a transaction, in Preparing, Charging, SuspendedEV,
  SuspendedEVSE or Finishing, or reserved under another reservationId; else Accepted.
- A reservationId that exists already is replaced (§5.13): its own connector counts as free for
  the new one, and it is kept as it was when the new one is refused.
- A connector-0 reservation reserves no particular connector (connector 0 never shows Reserved);
  the station keeps one free connector (Available, operative, not reserved) per connector-0
  reservation. ReserveNow(0) is Accepted while more connectors are free than there are
  connector-0 reservations; when none is free the answer is Faulted if every connector is
  Faulted, Unavailable if every one is Faulted or out of service, else Occupied. A reservation
  of a specific connector, or a start by a tag no connector-0 reservation is for, is refused
  (Occupied / not started) when it would leave fewer free connectors than that.
- A start on a reserved connector is allowed only for the reservation's idTag, or for an idTag
  whose parentIdTag (learnt from the local authorization list, the authorization cache or an
  Authorize answer) is the reservation's parentIdTag; IdTokens compare case-insensitively
  (§7.27). The start consumes the reservation and StartTransaction carries its reservationId.
  A start elsewhere consumes a connector-0 reservation of that tag or parent.
- Authorization comes first: a reserved tag the CSMS rejects does not start.
- A reservation ends when consumed, cancelled, expired (the connector is Available again), or
  when its connector turns Faulted or Unavailable (§5.13).
- Reservations are persisted; one expired by the time the state is read is dropped, and one
  whose connector has meanwhile gone out of service or is running a transaction is dropped too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs

from evsim_trio.station._clock import format_timestamp, parse_timestamp, utc_now
from evsim_trio.station._connector import Connector

__all__ = [
    "BUSY",
    "Reservation",
    "ReservationStore",
    "leaves_room",
    "match_reservation",
    "reserve_now_status",
    "restore_statuses",
    "station_now",
]

# Statuses of a connector in use (§5.13: ReserveNow answers Occupied).
BUSY = frozenset({"Preparing", "Charging", "SuspendedEV", "SuspendedEVSE", "Finishing"})


@attrs.frozen
class Reservation:
    """One reservation, as ReserveNow made it (§5.13)."""

    reservation_id: int
    connector_id: int
    id_tag: str
    expiry: datetime
    parent_id_tag: str | None = None

    @classmethod
    def from_request(cls, payload: Mapping[str, Any]) -> Reservation:
        """From a ReserveNow.req payload."""
        parent = payload.get("parentIdTag")
        return cls(
            reservation_id=int(payload["reservationId"]),
            connector_id=int(payload["connectorId"]),
            id_tag=str(payload["idTag"]),
            expiry=parse_timestamp(str(payload["expiryDate"])),
            parent_id_tag=None if parent is None else str(parent),
        )

    def matches(self, id_tag: str, parent_id_tag: str | None) -> bool:
        """Whether a start by `id_tag` (whose parent is `parent_id_tag`) may use it.

        IdTokens compare case-insensitively (1.6 §7.27).
        """
        if id_tag.casefold() == self.id_tag.casefold():
            return True
        return (
            self.parent_id_tag is not None
            and parent_id_tag is not None
            and parent_id_tag.casefold() == self.parent_id_tag.casefold()
        )

    def to_state(self) -> dict[str, Any]:
        """Plain data for the state file."""
        state: dict[str, Any] = {
            "reservation_id": self.reservation_id,
            "connector_id": self.connector_id,
            "id_tag": self.id_tag,
            "expiry": format_timestamp(self.expiry),
        }
        if self.parent_id_tag is not None:
            state["parent_id_tag"] = self.parent_id_tag
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Reservation:
        """Rebuild from `to_state()` output."""
        parent = state.get("parent_id_tag")
        return cls(
            reservation_id=int(state["reservation_id"]),
            connector_id=int(state["connector_id"]),
            id_tag=str(state["id_tag"]),
            expiry=parse_timestamp(str(state["expiry"])),
            parent_id_tag=None if parent is None else str(parent),
        )


class ReservationStore:
    """The reservations of a station, by reservationId."""

    def __init__(self) -> None:
        self._by_id: dict[int, Reservation] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Reservation]:
        return iter(list(self._by_id.values()))

    def get(self, reservation_id: int) -> Reservation | None:
        """The reservation with that id, if any."""
        return self._by_id.get(reservation_id)

    def on_connector(self, connector_id: int) -> Reservation | None:
        """The reservation of a specific connector (> 0), if any."""
        if connector_id == 0:
            return None
        for reservation in self._by_id.values():
            if reservation.connector_id == connector_id:
                return reservation
        return None

    def on_connector_zero(self, *, excluding: int | None = None) -> list[Reservation]:
        """The connector-0 reservations (optionally without reservation `excluding`)."""
        return [
            r for r in self._by_id.values() if r.connector_id == 0 and r.reservation_id != excluding
        ]

    def candidates(self, connector_id: int) -> list[Reservation]:
        """The reservations a start on `connector_id` may consume.

        Its own reservation when it has one (only that one decides), else the connector-0 ones.
        """
        own = self.on_connector(connector_id)
        return [own] if own is not None else self.on_connector_zero()

    def add(self, reservation: Reservation) -> Reservation | None:
        """Store `reservation`; returns the one with the same id it replaces, if any."""
        replaced = self._by_id.get(reservation.reservation_id)
        self._by_id[reservation.reservation_id] = reservation
        return replaced

    def remove(self, reservation_id: int) -> Reservation | None:
        """Forget a reservation; returns it (None when unknown)."""
        return self._by_id.pop(reservation_id, None)

    def to_state(self) -> list[dict[str, Any]]:
        """Plain data for the state file."""
        return [r.to_state() for r in self._by_id.values()]

    def load_state(self, state: Sequence[Mapping[str, Any]], *, now: datetime) -> None:
        """Replace the contents with `to_state()` output, dropping what expired by `now`."""
        self._by_id.clear()
        for saved in state:
            reservation = Reservation.from_state(saved)
            if reservation.expiry > now:
                self._by_id[reservation.reservation_id] = reservation


def _is_free(connector: Connector, store: ReservationStore, replacing: int | None) -> bool:
    """Usable by a new reservation or a walk-in start: Available, operative, nobody's reservation.

    A connector Reserved by the reservation being replaced (`replacing`) counts as free.
    """
    if connector.transaction is not None or not connector.operative:
        return False
    if connector.status == "Available":
        return True
    own = store.on_connector(connector.connector_id)
    return connector.status == "Reserved" and own is not None and own.reservation_id == replacing


def _free_count(
    connectors: Mapping[int, Connector],
    store: ReservationStore,
    *,
    replacing: int | None = None,
    excluding: int | None = None,
) -> int:
    return sum(
        1
        for cid, c in connectors.items()
        if cid > 0 and cid != excluding and _is_free(c, store, replacing)
    )


def reserve_now_status(
    connectors: Mapping[int, Connector],
    store: ReservationStore,
    reservation: Reservation,
    *,
    now: datetime,
    connector_zero_supported: bool,
) -> str:
    """The ReserveNow.conf status for `reservation` (§5.13; the order is in the module doc)."""
    connector_id = reservation.connector_id
    rid = reservation.reservation_id
    if reservation.expiry <= now:
        return "Rejected"
    zero_reservations = len(store.on_connector_zero(excluding=rid))
    if connector_id == 0:
        if not connector_zero_supported:
            return "Rejected"
        if _free_count(connectors, store, replacing=rid) > zero_reservations:
            return "Accepted"
        physical = [c for cid, c in connectors.items() if cid > 0]
        if physical and all(c.status == "Faulted" for c in physical):
            return "Faulted"
        if physical and all(not c.operative for c in physical):
            return "Unavailable"
        return "Occupied"
    connector = connectors.get(connector_id)
    if connector is None or connector_id < 0:
        return "Rejected"
    if connector.status == "Faulted":
        return "Faulted"
    if connector.availability != "Operative" or connector.status == "Unavailable":
        return "Unavailable"
    if not _is_free(connector, store, rid):
        return "Occupied"
    if _free_count(connectors, store, replacing=rid, excluding=connector_id) < zero_reservations:
        return "Occupied"  # the last free connectors are promised to connector-0 reservations
    return "Accepted"


def match_reservation(
    reservations: Iterable[Reservation], id_tag: str, parent_id_tag: str | None
) -> Reservation | None:
    """The first of `reservations` a start by `id_tag` (parent `parent_id_tag`) consumes."""
    for reservation in reservations:
        if reservation.matches(id_tag, parent_id_tag):
            return reservation
    return None


def leaves_room(
    connectors: Mapping[int, Connector], store: ReservationStore, connector_id: int
) -> bool:
    """Whether a start on `connector_id` by a tag no reservation is for keeps enough connectors
    free for the connector-0 reservations (the connector itself no longer counts)."""
    zero_reservations = len(store.on_connector_zero())
    if zero_reservations == 0:
        return True
    return _free_count(connectors, store, excluding=connector_id) >= zero_reservations


def restore_statuses(store: ReservationStore, connectors: Mapping[int, Connector]) -> None:
    """After a restore: reserved connectors show Reserved; drop reservations that cannot hold."""
    for reservation in store:
        if reservation.connector_id == 0:
            continue
        connector = connectors.get(reservation.connector_id)
        if connector is None or connector.transaction is not None or not connector.operative:
            store.remove(reservation.reservation_id)
        else:
            connector.set_status("Reserved")


def station_now() -> datetime:
    """The station clock, or the wall clock for a station built outside a trio run."""
    try:
        return utc_now()
    except RuntimeError:
        return datetime.now(UTC)
