"""Shared test helper: stations linked to a CSMS over in-memory streams.

Memory streams never wait on the kernel, so `MockClock(autojump_threshold=0)` only jumps when
every task is truly idle: hours of station life run in milliseconds, with exact timings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import attrs
import trio
import trio.testing
import trio_websocket

from evsim_trio._resources import data_dir
from evsim_trio.config import StationTemplate, load_template
from evsim_trio.csms import EmbeddedCsms
from evsim_trio.station import (
    Connect,
    Station,
    StationIdentity,
    StationSpec,
    StationState,
    WebSocket,
    hash_id,
    station_id,
)

ServeRequest = Callable[[trio_websocket.WebSocketRequest], Awaitable[None]]


@attrs.define
class MemoryNetwork:
    """Hands each connection's server half to `serve`; records connect attempts (virtual time)."""

    nursery: trio.Nursery
    serve: ServeRequest
    attempts: list[float] = attrs.field(factory=list)
    urls: list[str] = attrs.field(factory=list)
    _attempted: trio.Event = attrs.field(factory=trio.Event)

    async def wait_attempts(self, count: int) -> None:
        """Wait until `count` connect attempts were made in all."""
        while len(self.attempts) < count:
            await self._attempted.wait()

    async def _serve_one(self, stream: trio.abc.Stream) -> None:
        async with trio.open_nursery() as nursery:
            request = await trio_websocket.wrap_server_stream(nursery, stream)
            await self.serve(request)
            nursery.cancel_scope.cancel()

    def connect(self) -> Connect:
        """A `Connect` for stations that opens an in-memory WebSocket to `serve`."""

        @asynccontextmanager
        async def connect(
            url: str, subprotocols: Sequence[str], headers: list[tuple[bytes, bytes]]
        ) -> AsyncIterator[WebSocket]:
            self.attempts.append(trio.current_time())
            self.urls.append(url)
            self._attempted.set()
            self._attempted = trio.Event()
            client, server = trio.testing.memory_stream_pair()
            self.nursery.start_soon(self._serve_one, server)
            async with client, trio.open_nursery() as nursery:
                ws = await trio_websocket.wrap_client_stream(
                    nursery,
                    cast(Any, client),
                    "localhost",
                    urlsplit(url).path,
                    subprotocols=list(subprotocols),
                    extra_headers=headers,
                )
                try:
                    yield cast(WebSocket, ws)
                finally:
                    with trio.move_on_after(1) as scope:
                        scope.shield = True
                        await ws.aclose()
                    nursery.cancel_scope.cancel()

        return connect


def shipped_template(name: str = "ac-3phase-2conn.toml", **overrides: Any) -> StationTemplate:
    """A shipped station template, with attribute overrides."""
    template = load_template(data_dir("station_templates") / name)
    return attrs.evolve(template, **overrides) if overrides else template


def make_station(
    template: StationTemplate,
    connect: Connect,
    *,
    index: int = 1,
    url: str = "ws://csms.test/ocpp",
    seed: int = 7,
    id_tags: tuple[str, ...] = ("TAG-1", "TAG-2", "TAG-3"),
    state_path: Path | None = None,
    state: dict[str, Any] | None = None,
) -> Station:
    """A station built by hand (the simulator is not involved)."""
    sid = station_id(template.base_name or "TEST", index, name_suffix=template.name_suffix)
    identity = StationIdentity(
        station_id=sid,
        hash_id=hash_id(
            sid, vendor=template.charge_point_vendor, model=template.charge_point_model
        ),
        index=index,
        template_name=template.template_name,
        template_index=0,
        charge_point_serial_number="CP-SERIAL-1",
        charge_box_serial_number="CB-SERIAL-1",
    )
    spec = StationSpec(
        identity=identity,
        template=template,
        supervision_url=url,
        seed=seed,
        connector_ids=template.connector_ids(),
        id_tags=id_tags,
        state_path=state_path,
        state=state,
    )
    return Station(spec, connect=connect)


async def wait_station(station: Station, predicate: Callable[[], bool]) -> None:
    """Wait until `predicate()` holds, re-checked on each change of `station`."""
    changed = trio.Event()

    def notify(_station: Station) -> None:
        nonlocal changed
        changed.set()
        changed = trio.Event()

    station.on_change = notify
    while not predicate():
        await changed.wait()


async def wait_state(station: Station, state: StationState) -> None:
    """Wait until `station` reaches `state`."""
    await wait_station(station, lambda: station.state is state)


def record_calls(csms: EmbeddedCsms) -> list[tuple[float, str, dict[str, Any]]]:
    """Wrap every handler of `csms` to log (virtual time, action, payload) of each CALL."""
    log: list[tuple[float, str, dict[str, Any]]] = []

    def wrap(action: str, inner: Any) -> Any:
        async def handler(record: Any, payload: dict[str, Any]) -> Any:
            log.append((trio.current_time(), action, payload))
            result = inner(record, payload)
            if hasattr(result, "__await__"):
                result = await result
            return result

        return handler

    for action, inner in list(csms.handlers.items()):
        csms.handlers[action] = wrap(action, inner)
    return log


@asynccontextmanager
async def running(station: Station, csms: EmbeddedCsms) -> AsyncIterator[Station]:
    """Run `station` until the block ends; enter once its boot StatusNotifications are out.

    On a clean exit the CSMS must have seen no invalid message from the station.
    """
    async with trio.open_nursery() as nursery:
        nursery.start_soon(station.run)
        await wait_state(station, StationState.BOOTED)
        await csms.wait_until(
            lambda: (
                csms.stations[station.station_id].received["StatusNotification"]
                >= len(station.connectors)
            )
        )
        yield station
        station.stop()
        nursery.cancel_scope.cancel()
    assert not csms.violations
