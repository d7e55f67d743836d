"""Handlers of CSMS-initiated CALLs, registered by action name.

A handler computes its answer without waiting for the CSMS (it runs inside the link's reader);
follow-up work (a StartTransaction after RemoteStartTransaction, say) is started in the station's
nursery after the answer. The handlers of the Core profile and beyond arrive with the charging
issue; until then every CSMS-initiated action is answered with NotImplemented.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from evsim_trio.ocpp import Call
    from evsim_trio.station._station import Station

Handler = Callable[["Station", "Call"], Awaitable[dict[str, Any]]]

REGISTRY: dict[str, Handler] = {}
"""Action name -> handler; a station answers NotImplemented for any action not in here."""
