"""Local Auth List Management profile: SendLocalList (OCPP 1.6 §5.15), GetLocalListVersion (§5.10).

LocalAuthListEnabled false (§9.2.1) makes SendLocalList NotSupported and GetLocalListVersion
-1, as for a station without a list; the list itself is kept, unused, until it is enabled
again. An accepted update is persisted with the station state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from evsim_trio.ocpp import OccurenceConstraintViolation
from evsim_trio.station._handlers import handler
from evsim_trio.station._local_auth import InvalidLocalList

if TYPE_CHECKING:
    from evsim_trio.ocpp import Call
    from evsim_trio.station._station import Station


@handler("SendLocalList")
async def send_local_list(station: Station, call: Call) -> dict[str, Any]:
    """Accepted / Failed / NotSupported / VersionMismatch (1.6 §7.43 UpdateStatus)."""
    configuration = station.configuration
    if not configuration.get_bool("LocalAuthListEnabled", True):
        return {"status": "NotSupported"}
    payload = call.payload
    try:
        status = station.local_list.update(
            str(payload["updateType"]),
            int(payload["listVersion"]),
            payload.get("localAuthorizationList") or [],
            max_send=configuration.get_int("SendLocalListMaxLength"),
            max_length=configuration.get_int("LocalAuthListMaxLength"),
        )
    except InvalidLocalList as exc:
        raise OccurenceConstraintViolation(str(exc)) from exc
    if status == "Accepted":
        station.persist()
    return {"status": status}


@handler("GetLocalListVersion")
async def get_local_list_version(station: Station, call: Call) -> dict[str, Any]:
    """The list's version: 0 when it is empty, -1 when LocalAuthListEnabled is false."""
    if not station.configuration.get_bool("LocalAuthListEnabled", True):
        return {"listVersion": -1}
    return {"listVersion": station.local_list.version}
