"""Serving the UI app with hypercorn on trio, inside the caller's nursery."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import hypercorn
import hypercorn.trio
import trio

from evsim_trio.config import UiServerSection
from evsim_trio.ui._app import create_app
from evsim_trio.ui._auth import check_ui_config
from evsim_trio.ui._srpc import MAX_PAYLOAD_BYTES

if TYPE_CHECKING:
    from evsim_trio.simulator import Fleet

__all__ = ["serve_ui"]

# WebSocket frames up to this size are read and answered (a failure when over 1 MiB); larger
# ones make hypercorn close the connection with code 1009 (message too big).
WS_MAX_MESSAGE_BYTES = 2 * MAX_PAYLOAD_BYTES
# Pending connections the kernel queues for us: bursts of HTTP clients are not turned away.
LISTEN_BACKLOG = 1024
# Bound on closing open connections when the server is stopped gracefully.
GRACEFUL_TIMEOUT = 1.0


def _hypercorn_config(config: UiServerSection) -> hypercorn.Config:
    host = f"[{config.host}]" if ":" in config.host else config.host
    hconfig = hypercorn.Config()
    hconfig.bind = [f"{host}:{config.port}"]
    hconfig.websocket_max_message_size = WS_MAX_MESSAGE_BYTES
    hconfig.accesslog = None
    hconfig.errorlog = logging.getLogger("evsim_trio.ui.hypercorn")
    hconfig.graceful_timeout = GRACEFUL_TIMEOUT
    hconfig.include_server_header = False
    hconfig.backlog = LISTEN_BACKLOG
    return hconfig


async def serve_ui(
    simulator: Fleet,
    config: UiServerSection,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the UI of `simulator` until cancelled; `task_status.started(bound URLs)`.

    Raises UiConfigError before binding when the configuration is unsafe (a non-loopback host
    without authentication), OSError when the address cannot be bound. Port 0 binds a free
    port: the URLs say which.
    """
    check_ui_config(config)
    app = create_app(simulator, config)
    await hypercorn.trio.serve(app, _hypercorn_config(config), task_status=task_status)
