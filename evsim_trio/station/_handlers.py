"""Handlers of CSMS-initiated CALLs, registered by action name.

A handler computes its answer without waiting for the CSMS (it runs inside the link's reader);
follow-up work (a StartTransaction after RemoteStartTransaction, say) is started in the station's
nursery after the answer. Handler modules (`_h_*.py`) register with `@handler("Action")` and are
imported by the package `__init__`; an action without a handler is answered NotImplemented.
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


def handler(action: str) -> Callable[[Handler], Handler]:
    """Register the decorated coroutine function as the station's handler of `action`."""

    def register(fn: Handler) -> Handler:
        if action in REGISTRY:
            raise RuntimeError(f"two handlers for {action}")
        REGISTRY[action] = fn
        return fn

    return register
