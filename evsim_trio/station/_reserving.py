"""Reservations on a station (OCPP 1.6 §5.13 ReserveNow, §5.1 CancelReservation).

A mixin of `Station`: the attributes annotated below are the station's; the rules (matching,
connector-0 room) are pure functions in `_reservations`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from evsim_trio.ocpp import OcppError
from evsim_trio.station._clock import utc_now
from evsim_trio.station._link import CallTimeout, LinkError, Payload
from evsim_trio.station._reservations import (
    Reservation,
    ReservationStore,
    leaves_room,
    match_reservation,
)

if TYPE_CHECKING:
    from evsim_trio.station._connector import Connector
    from evsim_trio.station._local_auth import LocalAuthList
    from evsim_trio.station._ocpp_config import OcppConfiguration

log = logging.getLogger(__name__)


class ReservationsMixin:
    """Reserve, cancel, consume; one expiry task per reservation in the station's nursery."""

    label: str
    configuration: OcppConfiguration
    connectors: dict[int, Connector]
    reservations: ReservationStore
    local_list: LocalAuthList
    auth_cache: dict[str, dict[str, Any]]
    _nursery: trio.Nursery | None
    _reservation_scopes: dict[int, trio.CancelScope]

    call: Callable[[str, Payload], Awaitable[Payload]]
    send_status: Callable[..., Awaitable[None]]
    spawn: Callable[..., None]
    persist: Callable[[], None]
    cache_id_tag_info: Callable[[str, dict[str, Any]], bool]
    changed: Callable[[], None]
    is_online: Callable[[], bool]

    def reserve(self, reservation: Reservation) -> None:
        """Keep an Accepted ReserveNow (replacing one with its id): Reserved, expiry task."""
        replaced = self.reservations.add(reservation)
        if replaced is not None:
            self._end_reservation_task(replaced.reservation_id)
            if replaced.connector_id != reservation.connector_id:
                self._release_connector(replaced.connector_id)
        connector = self.connectors.get(reservation.connector_id)
        if (
            reservation.connector_id > 0
            and connector is not None
            and connector.status != "Reserved"
        ):
            # Set now, so that a start or ReserveNow right after the answer sees it.
            connector.set_status("Reserved")
            self.spawn(self.send_status, reservation.connector_id, "Reserved")
        self._start_reservation_task(reservation)
        log.info(
            "%s: reservation %d of connector %d for %s until %s",
            self.label,
            reservation.reservation_id,
            reservation.connector_id,
            reservation.id_tag,
            reservation.expiry.isoformat(),
        )
        self.persist()
        self.changed()

    def cancel_reservation(self, reservation_id: int) -> bool:
        """CancelReservation: False for an unknown id; else its connector is Available again."""
        reservation = self.reservations.remove(reservation_id)
        if reservation is None:
            return False
        self._end_reservation_task(reservation_id)
        self._release_connector(reservation.connector_id)
        self.persist()
        self.changed()
        return True

    def consume_reservation(self, reservation: Reservation) -> None:
        """A transaction starts under `reservation`: it ends, the connector goes on Preparing."""
        self.reservations.remove(reservation.reservation_id)
        self._end_reservation_task(reservation.reservation_id)
        self.persist()
        self.changed()

    async def parent_id_tag(self, id_tag: str) -> str | None:
        """The parentIdTag of `id_tag` (1.6 §5.13): from the local authorization list or the
        authorization cache, else from an Authorize answer (cached when the cache is enabled);
        None when unknown."""
        info = None
        if self.configuration.get_bool("LocalAuthListEnabled", True):
            info = self.local_list.get(id_tag)
        if info is None:
            info = self.auth_cache.get(id_tag)
        if info is None and self.is_online():
            try:
                response = await self.call("Authorize", {"idTag": id_tag})
            except (OcppError, CallTimeout, LinkError) as exc:
                log.info("%s: parentIdTag of %s unknown: %s", self.label, id_tag, exc)
                return None
            info = dict(response["idTagInfo"])
            if self.cache_id_tag_info(id_tag, info):
                self.persist()
        parent = None if info is None else info.get("parentIdTag")
        return None if parent is None else str(parent)

    async def reservation_for_start(
        self, connector_id: int, id_tag: str
    ) -> tuple[bool, Reservation | None]:
        """Whether reservations let `id_tag` start on `connector_id`, and the one it consumes.

        A reserved connector: only its reservation's idTag or parentIdTag. Another connector:
        a connector-0 reservation of the tag is consumed; any other tag starts only while enough
        connectors stay free for the connector-0 reservations.
        """
        candidates = self.reservations.candidates(connector_id)
        parent: str | None = None
        if match_reservation(candidates, id_tag, None) is None and any(
            r.parent_id_tag is not None for r in candidates
        ):
            parent = await self.parent_id_tag(id_tag)
        # Looked up again: a reservation may have expired or been cancelled meanwhile.
        match = match_reservation(self.reservations.candidates(connector_id), id_tag, parent)
        if match is not None:
            return True, match
        if self.reservations.on_connector(connector_id) is not None:
            return False, None
        return leaves_room(self.connectors, self.reservations, connector_id), None

    def resume_reservations(self) -> None:
        """At the start of each life of the station: an expiry task per reservation."""
        self._reservation_scopes.clear()
        for reservation in self.reservations:
            self._start_reservation_task(reservation)

    def _release_connector(self, connector_id: int) -> None:
        """A reservation of `connector_id` ended without a transaction: Available again."""
        connector = self.connectors.get(connector_id)
        if connector_id > 0 and connector is not None and connector.status == "Reserved":
            connector.set_status("Available")
            self.spawn(self.send_status, connector_id, "Available")

    def _start_reservation_task(self, reservation: Reservation) -> None:
        if self._nursery is None:
            return  # not running: `resume_reservations` starts it with the next life
        scope = trio.CancelScope()
        self._reservation_scopes[reservation.reservation_id] = scope
        self._nursery.start_soon(self._run_reservation, reservation, scope)

    def _end_reservation_task(self, reservation_id: int) -> None:
        scope = self._reservation_scopes.pop(reservation_id, None)
        if scope is not None:
            scope.cancel()

    async def _run_reservation(self, reservation: Reservation, scope: trio.CancelScope) -> None:
        """End `reservation` at its expiryDate (the connector is Available again), or at once
        when its connector turns Faulted or Unavailable (1.6 §5.13)."""
        rid = reservation.reservation_id
        connector = self.connectors.get(reservation.connector_id)
        with scope:
            # The station clock follows trio's, so MockClock runs the expiry in virtual time.
            delay = (reservation.expiry - utc_now()).total_seconds()
            with trio.move_on_after(max(0.0, delay)):
                if reservation.connector_id == 0 or connector is None:
                    await trio.sleep_forever()
                else:
                    await connector.wait_status("Faulted", "Unavailable")
                if self.reservations.get(rid) is reservation:
                    log.info("%s: reservation %d ended: connector out of service", self.label, rid)
                    self.reservations.remove(rid)
                    self._reservation_scopes.pop(rid, None)
                    self.persist()
                    self.changed()
                return
            if self.reservations.get(rid) is not reservation:
                return
            log.info("%s: reservation %d expired", self.label, rid)
            self.reservations.remove(rid)
            self._reservation_scopes.pop(rid, None)
            self.persist()
            self.changed()
            if connector is not None and connector.status == "Reserved":
                await self.send_status(reservation.connector_id, "Available")
