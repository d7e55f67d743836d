"""Core profile requests about the station's configuration and vendor extensions.

GetConfiguration (OCPP 1.6 §5.8), ChangeConfiguration (§5.3), ClearCache (§5.4) and
DataTransfer from the CSMS (§5.6). Readings of the specification where it is silent:

- GetConfiguration: GetConfigurationMaxKeys bounds the number of keys a request may *name*
  (§9.1.9); a request naming more violates that bound, so it gets a CALLERROR
  OccurenceConstraintViolation rather than a silently truncated answer. A request naming no key
  gets every visible key, however many. Hidden keys are reported as unknown.
- ClearCache: Rejected only when the cache cannot be cleared (the station's
  `clear_authorization_cache()` returns False), not because AuthorizationCacheEnabled is false:
  a disabled cache can still be emptied. A station without a cache has nothing to clear and
  answers Accepted.
- DataTransfer: vendorId is a CiString255 (compared ignoring case) that must name the template's
  `charge_point_vendor`, else UnknownVendorId. The station implements no vendor message, so a
  request naming a messageId gets UnknownMessageId and one without gets Accepted, with no data.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from evsim_trio.ocpp import OccurenceConstraintViolation
from evsim_trio.station._handlers import handler

if TYPE_CHECKING:
    from evsim_trio.ocpp import Call
    from evsim_trio.station._ocpp_config import ConfigurationKey
    from evsim_trio.station._station import Station


def _reported(entry: ConfigurationKey) -> dict[str, Any]:
    return {"key": entry.key, "readonly": entry.readonly, "value": entry.value}


@handler("GetConfiguration")
async def get_configuration(station: Station, call: Call) -> dict[str, Any]:
    """The visible keys asked for (all when none is named), and the names not known."""
    configuration = station.configuration
    requested: list[str] = call.payload.get("key") or []
    if not requested:
        return {"configurationKey": [_reported(e) for e in configuration.visible_keys()]}
    limit = configuration.get_int("GetConfigurationMaxKeys")
    if len(requested) > limit:
        raise OccurenceConstraintViolation(
            f"{len(requested)} keys requested; GetConfigurationMaxKeys is {limit}"
        )
    known: dict[str, dict[str, Any]] = {}
    unknown: list[str] = []
    for key in requested:
        entry = configuration.entry(key)
        if entry is None or not entry.visible:
            if key not in unknown:
                unknown.append(key)
        else:
            known.setdefault(entry.key, _reported(entry))
    payload: dict[str, Any] = {"configurationKey": list(known.values())}
    if unknown:
        payload["unknownKey"] = unknown
    return payload


@handler("ChangeConfiguration")
async def change_configuration(station: Station, call: Call) -> dict[str, Any]:
    """Accepted / Rejected / RebootRequired / NotSupported; an accepted change applies at once."""
    status = station.configuration.change(call.payload["key"], call.payload["value"])
    if status in ("Accepted", "RebootRequired"):
        persist = getattr(station, "persist", None)
        if persist is not None:
            persist()
    return {"status": status}


@handler("ClearCache")
async def clear_cache(station: Station, call: Call) -> dict[str, Any]:
    """Accepted once the authorization cache is empty; Rejected when it cannot be cleared."""
    clear = getattr(station, "clear_authorization_cache", None)
    if clear is None:
        return {"status": "Accepted"}
    result = clear()
    if inspect.isawaitable(result):
        result = await result
    return {"status": "Rejected" if result is False else "Accepted"}


@handler("DataTransfer")
async def data_transfer(station: Station, call: Call) -> dict[str, Any]:
    """UnknownVendorId unless the vendor is ours; UnknownMessageId for any message id."""
    vendor = station.template.charge_point_vendor
    if call.payload["vendorId"].lower() != vendor.lower():
        return {"status": "UnknownVendorId"}
    if call.payload.get("messageId"):
        return {"status": "UnknownMessageId"}
    return {"status": "Accepted"}
