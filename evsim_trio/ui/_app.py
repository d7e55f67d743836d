"""The quart-trio app: SRPC `ui0.0.1` over WebSocket at `/`, its HTTP twin, /metrics, the page.

The app never touches stations: every procedure goes through the simulator's command
interface. Requests are checked (`_srpc`) before they reach it, and every failure, including
an unexpected exception, becomes a failure response: a client never loses its connection to a
bad request, and the other clients never notice.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from quart import Response, request, send_file, send_from_directory, websocket
from quart_trio import QuartTrio
from werkzeug.exceptions import NotFound, RequestEntityTooLarge

from evsim_trio.config import UiServerSection

# The command interface; `evsim_trio.simulator` will re-export these (see the UI report).
from evsim_trio.simulator import UnknownProcedure, execute
from evsim_trio.ui._auth import Authenticator
from evsim_trio.ui._metrics import UiStatistics, make_registry
from evsim_trio.ui._srpc import (
    MAX_PAYLOAD_BYTES,
    PROTOCOL_VERSION,
    REFRESH_FRAME,
    SUBPROTOCOL,
    PayloadValidator,
    Request,
    RequestError,
    TokenBucket,
    encode_response,
    failure,
    parse_frame,
)

if TYPE_CHECKING:
    from quart.wrappers import Websocket

    from evsim_trio.simulator import Fleet

__all__ = ["WEB_DIR", "UiServer", "create_app"]

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent / "web"
# At most one ["refresh"] push per this many seconds: a burst of changes makes one push.
REFRESH_MIN_INTERVAL = 0.5
# Per WebSocket connection (and per HTTP client address): a burst of RATE_BURST requests,
# then RATE_PER_SECOND; requests over the rate get a "rate limited" failure at once.
RATE_BURST = 200
RATE_PER_SECOND = 100.0
# Requests of one WebSocket connection running at once; more wait (the socket is not read).
MAX_IN_FLIGHT = 32
# Frames waiting to be written to one WebSocket client.
CLIENT_QUEUE = 64
# HTTP clients whose rate limit state is kept (least recently seen ones are forgotten).
MAX_HTTP_CLIENTS = 1024
_REALM = 'Basic realm="evsim-trio", charset="UTF-8"'


class _Client:
    """One WebSocket client: its outgoing queue and the refresh it is owed."""

    def __init__(self) -> None:
        self.send_channel, self.receive_channel = trio.open_memory_channel[str | None](CLIENT_QUEUE)
        self.refresh_wanted = False

    def push_refresh(self) -> None:
        """Owe the client one `["refresh"]`; never blocks, and never queues two."""
        if self.refresh_wanted:
            return
        self.refresh_wanted = True
        # A full queue needs no wake-up: the writer checks after the frame it is busy with.
        with contextlib.suppress(trio.WouldBlock):
            self.send_channel.send_nowait(None)

    async def run_writer(self, ws: Websocket) -> None:
        """Send queued frames, and the refresh when owed, in order."""
        async for frame in self.receive_channel:
            if frame is not None:
                await ws.send(frame)
            if self.refresh_wanted:
                self.refresh_wanted = False
                await ws.send(REFRESH_FRAME)


class UiServer:
    """What the routes share: the simulator, auth, validators, clients and counters."""

    def __init__(self, simulator: Fleet, config: UiServerSection) -> None:
        self.simulator = simulator
        self.config = config
        self.auth = Authenticator(config.authentication)
        self.validator = PayloadValidator()
        self.stats = UiStatistics()
        self.registry = make_registry(simulator, self.stats)
        self.clients: set[_Client] = set()
        self._http_buckets: dict[str, TokenBucket] = {}

    async def dispatch(self, procedure: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Run a checked request through the command interface; always a response payload."""
        try:
            response = await execute(self.simulator, procedure, payload)
        except UnknownProcedure:
            response = failure(f"unknown procedure {procedure!r}")
        except Exception:
            # Whatever went wrong, the UI server stays up for this client and the others.
            log.exception("UI procedure %s failed", procedure)
            response = failure(f"{procedure}: internal error (the simulator log has details)")
        self.stats.requests[(procedure, str(response.get("status", "failure")))] += 1
        return response

    def http_allowed(self, client: str) -> bool:
        """Take a token from the HTTP client's bucket."""
        now = trio.current_time()
        bucket = self._http_buckets.pop(client, None)
        if bucket is None:
            bucket = TokenBucket(RATE_BURST, RATE_PER_SECOND, now)
            if len(self._http_buckets) >= MAX_HTTP_CLIENTS:
                del self._http_buckets[next(iter(self._http_buckets))]
        self._http_buckets[client] = bucket  # re-inserted: most recently seen last
        return bucket.take(now)

    async def run_refresh(self) -> None:
        """Push `["refresh"]` to every client after station data changed, debounced."""
        while True:
            await self.simulator.wait_changed()
            await trio.sleep(REFRESH_MIN_INTERVAL)
            if self.clients:
                self.stats.refreshes += 1
                for client in list(self.clients):
                    client.push_refresh()

    async def serve_websocket(self, ws: Websocket) -> None:
        """One accepted WebSocket client, until it goes away."""
        client = _Client()
        self.clients.add(client)
        self.stats.clients += 1
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.run_writer, ws)
                await self._read_requests(ws, client, nursery)
        finally:
            self.clients.discard(client)
            self.stats.clients -= 1

    async def _read_requests(self, ws: Websocket, client: _Client, nursery: trio.Nursery) -> None:
        bucket = TokenBucket(RATE_BURST, RATE_PER_SECOND, trio.current_time())
        in_flight = trio.Semaphore(MAX_IN_FLIGHT)
        while True:
            data = await ws.receive()
            try:
                checked = parse_frame(data if data is not None else "", self.validator)
            except RequestError as exc:
                await client.send_channel.send(exc.frame())
                continue
            if not bucket.take(trio.current_time()):
                self.stats.rate_limited += 1
                await client.send_channel.send(
                    encode_response(checked.uuid, failure("rate limited: slow down"))
                )
                continue
            await in_flight.acquire()
            nursery.start_soon(self._answer, client, in_flight, checked)

    async def _answer(self, client: _Client, in_flight: trio.Semaphore, checked: Request) -> None:
        try:
            response = await self.dispatch(checked.procedure, checked.payload)
            await client.send_channel.send(encode_response(checked.uuid, response))
        finally:
            in_flight.release()


def _json_response(payload: dict[str, Any], status: int, **headers: str) -> Response:
    return Response(
        json.dumps(payload, separators=(",", ":")),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _unauthorized() -> Response:
    return _json_response(failure("authentication required"), 401, **{"WWW-Authenticate": _REALM})


def create_app(simulator: Fleet, config: UiServerSection) -> QuartTrio:
    """The UI app for `simulator`; serve it with `serve_ui` (or any ASGI server on trio)."""
    app = QuartTrio(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_PAYLOAD_BYTES
    server = UiServer(simulator, config)
    app.extensions["evsim_trio_ui"] = server

    @app.before_serving
    async def start_refresh() -> None:
        app.nursery.start_soon(server.run_refresh)

    @app.websocket("/")
    async def ws_root() -> Response | None:
        offered = websocket.requested_subprotocols
        if SUBPROTOCOL not in offered:
            return _json_response(failure(f"WebSocket subprotocol {SUBPROTOCOL} required"), 400)
        if not server.auth.check_websocket(websocket.headers.get("Authorization"), offered):
            server.stats.auth_failures += 1
            return _unauthorized()
        await websocket.accept(subprotocol=SUBPROTOCOL)
        await server.serve_websocket(websocket)
        return None

    @app.post(f"/ui/{PROTOCOL_VERSION}/<procedure>")
    async def http_procedure(procedure: str) -> Response:
        if not server.auth.check_header(request.headers.get("Authorization")):
            server.stats.auth_failures += 1
            return _unauthorized()
        if not server.http_allowed(request.remote_addr or "?"):
            server.stats.rate_limited += 1
            return _json_response(failure("rate limited: slow down"), 429, **{"Retry-After": "1"})
        try:
            body = await request.get_data(as_text=False)
            payload = json.loads(body) if body.strip() else {}
            name = server.validator.canonical(procedure)
            checked = server.validator.validate(name, payload)
        except RequestEntityTooLarge:
            return _json_response(failure(f"request larger than {MAX_PAYLOAD_BYTES} bytes"), 413)
        except ValueError as exc:  # JSON or UTF-8
            return _json_response(failure(f"request body is not valid JSON: {exc}"), 400)
        except RequestError as exc:
            return _json_response(exc.response, 400)
        response = await server.dispatch(name, checked)
        return _json_response(response, 200 if response.get("status") == "success" else 400)

    @app.errorhandler(RequestEntityTooLarge)
    async def too_large(error: RequestEntityTooLarge) -> Response:
        return _json_response(failure(f"request larger than {MAX_PAYLOAD_BYTES} bytes"), 413)

    @app.get("/metrics")
    async def metrics() -> Response:
        if not server.auth.check_header(request.headers.get("Authorization")):
            server.stats.auth_failures += 1
            return _unauthorized()
        await server.simulator.refresh_metrics()  # worker fleets fetch the figures here
        return Response(generate_latest(server.registry), content_type=CONTENT_TYPE_LATEST)

    def page_allowed() -> bool:
        if not server.auth.page_needs_header():
            return True
        return server.auth.check_header(request.headers.get("Authorization"))

    @app.get("/")
    async def index() -> Response:
        if not page_allowed():
            server.stats.auth_failures += 1
            return _unauthorized()
        page = WEB_DIR / "index.html"
        if not page.is_file():
            return Response(
                "evsim-trio: the web UI is not installed; the UI protocol is served at "
                f"ws://<this host>/ (subprotocol {SUBPROTOCOL})\n",
                status=404,
                content_type="text/plain; charset=utf-8",
            )
        return await send_file(page, mimetype="text/html")

    @app.get("/static/<path:path>")
    async def static_file(path: str) -> Response:
        if not page_allowed():
            server.stats.auth_failures += 1
            return _unauthorized()
        if not WEB_DIR.is_dir():
            raise NotFound()
        return await send_from_directory(WEB_DIR, path)

    return app
