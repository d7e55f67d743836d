"""The UI server: SRPC `ui0.0.1` over WebSocket, its HTTP twin, /metrics and the web page.

`serve_ui(simulator, config)` serves it with hypercorn inside the caller's nursery; the app
talks to stations only through the simulator's command interface.
"""

from __future__ import annotations

from evsim_trio.ui._app import WEB_DIR, create_app
from evsim_trio.ui._auth import Authenticator, UiConfigError, check_ui_config, is_loopback
from evsim_trio.ui._metrics import FleetCollector, UiStatistics, make_registry
from evsim_trio.ui._serve import serve_ui
from evsim_trio.ui._srpc import (
    MAX_PAYLOAD_BYTES,
    PROTOCOL_VERSION,
    REFRESH_FRAME,
    SUBPROTOCOL,
    PayloadValidator,
    Request,
    RequestError,
    TokenBucket,
    parse_frame,
)

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "PROTOCOL_VERSION",
    "REFRESH_FRAME",
    "SUBPROTOCOL",
    "WEB_DIR",
    "Authenticator",
    "FleetCollector",
    "PayloadValidator",
    "Request",
    "RequestError",
    "TokenBucket",
    "UiConfigError",
    "UiStatistics",
    "check_ui_config",
    "create_app",
    "is_loopback",
    "make_registry",
    "parse_frame",
    "serve_ui",
]
