"""Connectors and their transactions (OCPP 1.6 §3.7 status, §4.8 StartTransaction, §4.10 Stop)."""

from __future__ import annotations

from typing import Any

import attrs
import trio

# ChargePointStatus values in which a connector can start a transaction (1.6 §4.9, §3.7).
STARTABLE = frozenset({"Available", "Preparing", "Finishing"})


@attrs.define(eq=False)
class Transaction:
    """One transaction on a connector. `transaction_id` stays None until the CSMS assigns one."""

    local_id: int
    connector_id: int
    id_tag: str
    meter_start: int
    start_timestamp: str
    transaction_id: int | None = None
    reservation_id: int | None = None
    start_energy_wh: float = 0.0
    # Readings kept for StopTransaction.transactionData (transaction_data_meter_values).
    meter_values: list[dict[str, Any]] = attrs.field(factory=list)
    id_tag_status: str = "Accepted"

    def to_state(self) -> dict[str, Any]:
        """Plain data for the state file."""
        state: dict[str, Any] = {
            "local_id": self.local_id,
            "connector_id": self.connector_id,
            "id_tag": self.id_tag,
            "meter_start": self.meter_start,
            "start_timestamp": self.start_timestamp,
            "start_energy_wh": self.start_energy_wh,
            "id_tag_status": self.id_tag_status,
            "meter_values": self.meter_values,
        }
        if self.transaction_id is not None:
            state["transaction_id"] = self.transaction_id
        if self.reservation_id is not None:
            state["reservation_id"] = self.reservation_id
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Transaction:
        """Rebuild from `to_state()` output."""
        return cls(
            local_id=int(state["local_id"]),
            connector_id=int(state["connector_id"]),
            id_tag=str(state["id_tag"]),
            meter_start=int(state["meter_start"]),
            start_timestamp=str(state["start_timestamp"]),
            transaction_id=state.get("transaction_id"),
            reservation_id=state.get("reservation_id"),
            start_energy_wh=float(state.get("start_energy_wh", 0.0)),
            meter_values=list(state.get("meter_values", [])),
            id_tag_status=str(state.get("id_tag_status", "Accepted")),
        )


@attrs.define(eq=False)
class Connector:
    """A connector: its status as last set, availability, lock, meter and transaction."""

    connector_id: int
    boot_status: str
    status: str
    error_code: str = "NoError"
    availability: str = "Operative"
    # ChangeAvailability received during a transaction: applied when it ends (1.6 §5.2).
    pending_availability: str | None = None
    locked: bool = False
    transaction: Transaction | None = None
    notified_status: str | None = None
    _changed: trio.Event = attrs.field(factory=trio.Event, repr=False)

    def set_status(self, status: str, error_code: str = "NoError") -> None:
        """Record a status change and wake `wait_status` callers."""
        self.status = status
        self.error_code = error_code
        self._changed.set()
        self._changed = trio.Event()

    async def wait_status(self, *statuses: str) -> None:
        """Wait until the connector's status is one of `statuses`."""
        while self.status not in statuses:
            await self._changed.wait()

    @property
    def operative(self) -> bool:
        """Whether the connector may be used (availability Operative, not Faulted)."""
        return self.availability == "Operative" and self.status not in ("Unavailable", "Faulted")

    def can_start(self, *, reserved_ok: bool = False) -> bool:
        """Whether a new transaction may start here now.

        A Reserved connector is startable only when the caller passes `reserved_ok`, after
        checking the idTag against the reservation (1.6 §5.13, see `_reservations.py`).
        """
        startable = self.status in STARTABLE or (reserved_ok and self.status == "Reserved")
        return self.transaction is None and self.operative and startable
