"""Shared helper of the UI tests: a running simulator + embedded CSMS + UI server, and clients.

Clients are plain: trio-websocket for the SRPC protocol and a small h11 client for HTTP, both on
real sockets on 127.0.0.1 (port 0 everywhere).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import h11
import trio
import trio_websocket

from evsim_trio._resources import data_dir
from evsim_trio.config import load_site
from evsim_trio.csms import EmbeddedCsms
from evsim_trio.simulator import Simulator
from evsim_trio.station import Station, StationState
from evsim_trio.ui import serve_ui

TEMPLATES = data_dir("station_templates")
USER, PASSWORD = "operator", "s3cret:with:colons"
Json = dict[str, Any]
Headers = list[tuple[str, str]]


def basic(user: str = USER, password: str = PASSWORD) -> str:
    """An Authorization header value."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def protocol_auth(user: str = USER, password: str = PASSWORD) -> str:
    """The protocol-basic-auth subprotocol: base64 of user:password without padding."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode().rstrip("=")
    return f"authorization.basic.{token}"


def write_site(
    tmp_path: Path,
    *,
    counts: dict[str, int],
    auth: str | None = None,
    host: str = "127.0.0.1",
) -> Path:
    """A site config with the embedded CSMS and the UI on free ports."""
    stations = "".join(
        f'\n[[stations]]\ntemplate = "{(TEMPLATES / name).as_posix()}"\ncount = {count}\n'
        for name, count in counts.items()
    )
    auth_section = (
        f'[ui_server.authentication]\nenabled = true\ntype = "{auth}"\n'
        f'username = "{USER}"\npassword = "{PASSWORD}"\n'
        if auth
        else ""
    )
    path = tmp_path / "site.toml"
    path.write_text(
        f'[simulator]\nseed = 7\nstate_dir = "{(tmp_path / "state").as_posix()}"\n'
        f"[csms]\nenabled = true\nport = 0\n"
        f'[ui_server]\nenabled = true\nhost = "{host}"\nport = 0\n{auth_section}{stations}'
    )
    return path


@attrs.define
class HttpResponse:
    """What the h11 client read."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


async def http_request(
    base_url: str,
    method: str,
    target: str,
    *,
    body: bytes = b"",
    headers: Sequence[tuple[str, str]] = (),
) -> HttpResponse:
    """One HTTP/1.1 request on its own connection."""
    parts = urlsplit(base_url)
    assert parts.hostname is not None
    assert parts.port is not None
    stream = await trio.open_tcp_stream(parts.hostname, parts.port)
    async with stream:
        conn = h11.Connection(h11.CLIENT)
        all_headers = [
            ("Host", f"{parts.hostname}:{parts.port}"),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            *headers,
        ]
        await stream.send_all(
            conn.send(h11.Request(method=method, target=target, headers=all_headers))
        )
        try:
            if body:
                await stream.send_all(conn.send(h11.Data(data=body)))
            await stream.send_all(conn.send(h11.EndOfMessage()))
        except trio.BrokenResourceError:
            pass  # the server answered without reading the whole body: read its answer
        status, response_headers, chunks = 0, {}, []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
                response_headers = {k.decode().lower(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
    return HttpResponse(status, response_headers, b"".join(chunks))


@attrs.define
class WsClient:
    """An SRPC client: requests with fresh UUIDs; `["refresh"]` pushes are counted aside."""

    ws: trio_websocket.WebSocketConnection
    refreshes: int = 0
    _held: dict[str, Json] = attrs.field(factory=dict)

    async def send(self, procedure: str, payload: Json | None = None) -> str:
        """Send a request; its uuid."""
        request_id = str(uuid.uuid4())
        await self.ws.send_message(json.dumps([request_id, procedure, payload or {}]))
        return request_id

    async def frame(self) -> list[Any]:
        """The next frame that is not a refresh."""
        while True:
            message = json.loads(await self.ws.get_message())
            if message == ["refresh"]:
                self.refreshes += 1
                continue
            return list(message)

    async def response(self, request_id: str) -> Json:
        """The response to `request_id` (other responses are held for their own callers)."""
        while request_id not in self._held:
            message_id, payload = await self.frame()
            self._held[message_id] = payload
        return self._held.pop(request_id)

    async def request(self, procedure: str, payload: Json | None = None) -> Json:
        """A request and its response payload."""
        return await self.response(await self.send(procedure, payload))

    async def wait_refresh(self) -> None:
        """Wait for the next `["refresh"]` push."""
        seen = self.refreshes
        while self.refreshes == seen:
            message = json.loads(await self.ws.get_message())
            if message == ["refresh"]:
                self.refreshes += 1
            else:
                self._held[message[0]] = message[1]


@asynccontextmanager
async def _open_ws(
    base_url: str, subprotocols: Sequence[str], headers: Sequence[tuple[str, str]]
) -> AsyncIterator[WsClient]:
    # Our own stream, closed by us: trio-websocket's open_websocket_url leaves the socket open
    # when the server ends the connection (trio-websocket 0.12), which warnings turn into errors.
    parts = urlsplit(base_url)
    assert parts.hostname is not None
    assert parts.port is not None
    stream = await trio.open_tcp_stream(parts.hostname, parts.port)
    async with stream, trio.open_nursery() as nursery:
        ws = await trio_websocket.wrap_client_stream(
            nursery,
            stream,
            f"{parts.hostname}:{parts.port}",
            "/",
            subprotocols=list(subprotocols),
            extra_headers=[(k.encode(), v.encode()) for k, v in headers],
        )
        try:
            yield WsClient(ws)
        finally:
            with trio.move_on_after(1, shield=True):
                await ws.aclose()
            nursery.cancel_scope.cancel()


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


@asynccontextmanager
async def open_ws(
    base_url: str,
    *,
    subprotocols: Sequence[str] = ("ui0.0.1",),
    headers: Sequence[tuple[str, str]] = (),
) -> AsyncIterator[WsClient]:
    """A WebSocket client of the UI at `/`; a lone error comes out as itself, not in a group."""
    try:
        async with _open_ws(base_url, subprotocols, headers) as client:
            yield client
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        if len(leaves) == 1 and isinstance(leaves[0], Exception):
            raise leaves[0] from None
        raise


@attrs.define
class Ui:
    """A running fleet with its UI: the simulator, its CSMS and the UI's base URL."""

    simulator: Simulator
    csms: EmbeddedCsms
    url: str
    nursery: trio.Nursery
    auth_headers: Headers = attrs.field(factory=list)

    @property
    def stations(self) -> list[Station]:
        """The fleet's stations now."""
        return self.simulator.stations

    def hash_ids(self) -> list[str]:
        """hashIds of the fleet, in order."""
        return [s.hash_id for s in self.stations]

    async def post(self, procedure: str, payload: Json | None = None) -> HttpResponse:
        """POST /ui/0.0.1/<procedure> with the payload as JSON."""
        return await http_request(
            self.url,
            "POST",
            f"/ui/0.0.1/{procedure}",
            body=json.dumps(payload or {}).encode(),
            headers=[("Content-Type", "application/json"), *self.auth_headers],
        )

    async def wait_csms(self, predicate: Any) -> None:
        """Wait until `predicate()` holds on the CSMS's records."""
        await self.csms.wait_until(predicate)

    async def wait_fleet(self, predicate: Any) -> None:
        """Wait until `predicate()` holds, re-checked on every station change."""
        while not predicate():
            await self.simulator.wait_changed()


@asynccontextmanager
async def open_ui(
    tmp_path: Path,
    *,
    counts: dict[str, int] | None = None,
    auth: str | None = None,
) -> AsyncIterator[Ui]:
    """Run a fleet (all booted, statuses sent) and its UI server; everything stops on exit."""
    counts = counts or {"ac-1phase.toml": 2}
    site = load_site(write_site(tmp_path, counts=counts, auth=auth))
    async with trio.open_nursery() as nursery:
        with trio.fail_after(15):
            simulator: Simulator = await nursery.start(Simulator(site).run)
            csms = simulator.csms
            assert csms is not None
            total = sum(counts.values())
            await simulator.wait_until(lambda c: c.booted == total)
            statuses = sum(len(s.connectors) for s in simulator.stations)
            await csms.wait_until(
                lambda: (
                    sum(r.received["StatusNotification"] for r in csms.stations.values())
                    >= statuses
                )
            )
            urls = await nursery.start(serve_ui, simulator, site.config.ui_server)
        headers = [("Authorization", basic())] if auth == "basic-auth" else []
        try:
            yield Ui(simulator, csms, urls[0], nursery, headers)
        finally:
            # Stations close their sockets first: the CSMS would wait for their close frames.
            with trio.move_on_after(5, shield=True):
                await simulator.shutdown()
            nursery.cancel_scope.cancel()


def booted(ui: Ui) -> bool:
    """Every station booted."""
    return all(s.state is StationState.BOOTED for s in ui.stations)
