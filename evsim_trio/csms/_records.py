"""What the embedded CSMS remembers about each station, and how messages update it.

The record is updated from what actually crosses the wire (the CALL received and the answer
sent), not inside the default handlers, so that a test that overrides a handler still sees
`registration`, `connector_status` and the counters move.
"""

from __future__ import annotations

import collections
from typing import Any

import attrs

__all__ = ["StationRecord", "observe_answer", "observe_call"]


@attrs.define(eq=False)
class StationRecord:
    """One station as seen by the embedded CSMS (kept after it disconnects).

    `connections` counts accepted WebSocket connections, `authorization` is the raw value of the
    `Authorization` header of the latest one (None if absent), `received` counts the valid CALLs
    per action. `last_payload` keeps the latest request payload per action and `transactions`
    the StartTransaction payload of every transaction not stopped yet, by transaction id.
    """

    station_id: str
    connected: bool = False
    connections: int = 0
    boot_count: int = 0
    last_boot: dict[str, Any] | None = None
    registration: str | None = None
    connector_status: dict[int, str] = attrs.field(factory=dict)
    heartbeats: int = 0
    received: collections.Counter[str] = attrs.field(factory=collections.Counter)
    authorization: str | None = None
    last_payload: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    transactions: dict[int, dict[str, Any]] = attrs.field(factory=dict)


def observe_call(record: StationRecord, action: str, payload: dict[str, Any]) -> None:
    """Update `record` for a CALL `action` received from its station.

    Tolerates payloads that were not schema-validated (a CSMS with `validate=False`).
    """
    record.received[action] += 1
    record.last_payload[action] = payload
    if action == "Heartbeat":
        record.heartbeats += 1
    elif action == "StatusNotification":
        connector_id, status = payload.get("connectorId"), payload.get("status")
        if isinstance(connector_id, int) and isinstance(status, str):
            record.connector_status[connector_id] = status
    elif action == "BootNotification":
        record.boot_count += 1
        record.last_boot = payload
    elif action == "StopTransaction":
        transaction_id = payload.get("transactionId")
        if isinstance(transaction_id, int):
            record.transactions.pop(transaction_id, None)


def observe_answer(
    record: StationRecord, action: str, payload: dict[str, Any], answer: dict[str, Any]
) -> None:
    """Update `record` for the CALLRESULT `answer` sent for the CALL (`action`, `payload`)."""
    if action == "BootNotification":
        record.registration = answer.get("status")
    elif action == "StartTransaction":
        transaction_id = answer.get("transactionId")
        if isinstance(transaction_id, int):
            record.transactions[transaction_id] = payload
