"""The default answers of the embedded CSMS to the CALLs a station sends (OCPP 1.6, section 4).

Every answer is valid against its ``<Action>Response`` schema. An idTag that starts with
``BAD`` is Invalid, every other one Accepted, so that tests can ask for a rejection by name.
"""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable
from typing import Any

from ._records import StationRecord

__all__ = ["Handler", "default_handlers", "id_tag_info", "utc_now"]

Handler = Callable[[StationRecord, dict[str, Any]], dict[str, Any] | Awaitable[dict[str, Any]]]
"""Answers one CALL: gets the station's record and the request payload, returns the response
payload (or an awaitable of it); raising an `OcppError` answers with that CALLERROR."""

REJECTED_PREFIX = "BAD"


def utc_now() -> str:
    """The current UTC time as OCPP wants it: ISO 8601 with milliseconds and a ``Z``."""
    now = datetime.datetime.now(datetime.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def id_tag_info(id_tag: str) -> dict[str, Any]:
    """The IdTagInfo for `id_tag`: Invalid if it starts with ``BAD``, else Accepted."""
    return {"status": "Invalid" if id_tag.startswith(REJECTED_PREFIX) else "Accepted"}


def _empty(record: StationRecord, payload: dict[str, Any]) -> dict[str, Any]:
    return {}


def _accepted(record: StationRecord, payload: dict[str, Any]) -> dict[str, Any]:
    return {"status": "Accepted"}


def _heartbeat(record: StationRecord, payload: dict[str, Any]) -> dict[str, Any]:
    return {"currentTime": utc_now()}


def _authorize(record: StationRecord, payload: dict[str, Any]) -> dict[str, Any]:
    return {"idTagInfo": id_tag_info(payload["idTag"])}


def _stop_transaction(record: StationRecord, payload: dict[str, Any]) -> dict[str, Any]:
    # idTagInfo is optional: a transaction may stop without an identifier (section 6.48).
    id_tag = payload.get("idTag")
    return {} if id_tag is None else {"idTagInfo": id_tag_info(id_tag)}


def default_handlers(
    heartbeat_interval: Callable[[], int], next_transaction_id: Callable[[], int]
) -> dict[str, Handler]:
    """A fresh dict of the default answers, by action.

    `heartbeat_interval()` gives the BootNotification interval, `next_transaction_id()` a
    transaction id unique and increasing across the whole CSMS.
    """

    def boot_notification(record: StationRecord, payload: dict[str, Any]) -> dict[str, Any]:
        return {"status": "Accepted", "currentTime": utc_now(), "interval": heartbeat_interval()}

    def start_transaction(record: StationRecord, payload: dict[str, Any]) -> dict[str, Any]:
        return {"transactionId": next_transaction_id(), "idTagInfo": id_tag_info(payload["idTag"])}

    handlers: dict[str, Handler] = {
        "Authorize": _authorize,
        "BootNotification": boot_notification,
        "DataTransfer": _accepted,
        "Heartbeat": _heartbeat,
        "SignCertificate": _accepted,
        "StartTransaction": start_transaction,
        "StopTransaction": _stop_transaction,
    }
    for action in (
        "DiagnosticsStatusNotification",
        "FirmwareStatusNotification",
        "LogStatusNotification",
        "MeterValues",
        "SecurityEventNotification",
        "SignedFirmwareStatusNotification",
        "StatusNotification",
    ):
        handlers[action] = _empty
    return handlers
