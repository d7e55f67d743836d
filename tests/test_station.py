"""One station under MockClock(autojump_threshold=0) against the embedded CSMS in memory."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio_websocket
from memlink import MemoryNetwork, make_station, shipped_template, wait_state

from evsim_trio.csms import EmbeddedCsms, StationRecord
from evsim_trio.ocpp import (
    Call,
    NotSupportedError,
)
from evsim_trio.station import Station, StationState, WsState, reconnect_delay, station_rng

HOUR = 3600.0


@asynccontextmanager
async def running(station: Station) -> AsyncIterator[Station]:
    """Run `station` in the background; stop it on exit."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(station.run)
        yield station
        station.stop()
        nursery.cancel_scope.cancel()


@pytest.fixture
def csms_network(nursery: trio.Nursery) -> tuple[EmbeddedCsms, MemoryNetwork]:
    csms = EmbeddedCsms(heartbeat_interval=60)
    return csms, MemoryNetwork(nursery, csms.handle_request)


async def test_boot_accepted_sends_status_for_every_connector(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    station = make_station(shipped_template(), network.connect())
    with trio.fail_after(HOUR):
        async with running(station):
            await csms.wait_until(
                lambda: (
                    sum(r.received["StatusNotification"] for r in csms.stations.values())
                    >= len(station.connectors)
                )
            )
            record = csms.stations[station.station_id]
            assert record.registration == "Accepted"
            assert record.boot_count == 1
            assert record.last_boot is not None
            assert record.last_boot["chargePointSerialNumber"] == "CP-SERIAL-1"
            assert set(record.connector_status) == set(station.connectors)
            assert station.state is StationState.BOOTED
            assert station.ws_state is WsState.OPEN
            assert network.urls == [f"ws://csms.test/ocpp/{station.station_id}"]
    assert not csms.violations


async def test_boot_pending_retries_after_interval(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    boots: list[float] = []
    order: list[str] = []

    def boot(record: StationRecord, payload: dict[str, Any]) -> dict[str, Any]:
        boots.append(trio.current_time())
        status = "Pending" if len(boots) < 3 else "Accepted"
        return {"status": status, "interval": 50, "currentTime": "2026-01-01T00:00:00Z"}

    def status_notification(record: StationRecord, payload: dict[str, Any]) -> dict[str, Any]:
        order.append("StatusNotification")
        return {}

    csms.handlers["BootNotification"] = boot
    csms.handlers["StatusNotification"] = status_notification
    station = make_station(shipped_template(), network.connect())
    with trio.fail_after(HOUR):
        async with running(station):
            await wait_state(station, StationState.BOOTED)
            await csms.wait_until(lambda: len(order) == len(station.connectors))
    assert [b - boots[0] for b in boots] == [0, 50, 100]
    # Nothing but BootNotification while Pending: statuses come after the Accepted boot.
    record = csms.stations[station.station_id]
    assert record.received["Heartbeat"] == 0
    # The interval of the Accepted response becomes the heartbeat interval.
    assert station.configuration.get("HeartbeatInterval") == "50"


async def test_boot_rejected_gives_up_after_registration_max_retries(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    boots: list[float] = []

    def boot(record: StationRecord, payload: dict[str, Any]) -> dict[str, Any]:
        boots.append(trio.current_time())
        return {"status": "Rejected", "interval": 10, "currentTime": "2026-01-01T00:00:00Z"}

    csms.handlers["BootNotification"] = boot
    station = make_station(shipped_template(registration_max_retries=2), network.connect())
    with trio.fail_after(HOUR):
        await station.run()  # returns once the station gives up
    assert station.state is StationState.FAILED
    assert [b - boots[0] for b in boots] == [0, 10, 20]
    record = csms.stations[station.station_id]
    assert set(record.received) == {"BootNotification"}
    assert station.ws_state is WsState.CLOSED


async def test_rejected_station_answers_nothing_but_security_error(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    csms.handlers["BootNotification"] = lambda record, payload: {
        "status": "Rejected",
        "interval": 100,
        "currentTime": "2026-01-01T00:00:00Z",
    }
    station = make_station(shipped_template(), network.connect())
    with trio.fail_after(HOUR):
        async with running(station):
            await csms.wait_until(lambda: station.station_id in csms.stations)
            await csms.wait_until(lambda: csms.stations[station.station_id].boot_count == 1)
            with pytest.raises(Exception, match="Rejected") as info:
                await csms.call(station.station_id, "Heartbeat", {})
            assert getattr(info.value, "code", None) == "SecurityError"


async def test_heartbeat_every_interval_for_24_hours(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    beats: list[float] = []

    def heartbeat(record: StationRecord, payload: dict[str, Any]) -> dict[str, Any]:
        beats.append(trio.current_time())
        return {"currentTime": "2026-01-01T00:00:00Z"}

    csms.handlers["Heartbeat"] = heartbeat
    # No WebSocket pings in this test: only heartbeats wake the station.
    template = shipped_template()
    station = make_station(template, network.connect())
    station.configuration.set("WebSocketPingInterval", "0")
    with trio.fail_after(48 * HOUR):
        async with running(station):
            await wait_state(station, StationState.BOOTED)
            booted_at = trio.current_time()
            await trio.sleep(24 * HOUR + 1)
    assert len(beats) == 24 * 60
    assert beats[0] - booted_at <= 60
    assert all(b - a == pytest.approx(60) for a, b in itertools.pairwise(beats))


async def test_reconnects_with_growing_delays_after_csms_drops_socket(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    template = shipped_template(
        reconnect_exponential_delay=True, reconnect_base_delay=1.0, reconnect_max_delay=60.0
    )
    station = make_station(template, network.connect())
    refused = 6
    with trio.fail_after(HOUR):
        async with running(station):
            await wait_state(station, StationState.BOOTED)
            csms.accepting = False
            dropped_at = trio.current_time()
            await csms.disconnect(station.station_id)
            # The first attempt right after the drop and `refused` more are refused.
            await network.wait_attempts(1 + refused + 1)
            csms.accepting = True
            await wait_state(station, StationState.BOOTED)
            await csms.wait_until(lambda: csms.stations[station.station_id].connected)
            # A station that was Accepted resumes without a new BootNotification.
            assert csms.stations[station.station_id].boot_count == 1
    # attempts[0] is the first connection; the drop is followed by attempts[1:].
    delays = [network.attempts[1] - dropped_at]
    delays += [b - a for a, b in itertools.pairwise(network.attempts[1:])]
    assert len(delays) >= refused + 1
    # Exponential: delay n within +/-20 % of base * 2**n (a rejected handshake takes no
    # virtual time in memory), so strictly growing.
    for n, delay in enumerate(delays[:refused]):
        nominal = min(1.0 * 2**n, 60.0)
        assert 0.8 * nominal <= delay <= 1.2 * nominal, (n, delay)
    assert all(b > a for a, b in itertools.pairwise(delays[:refused]))


def test_reconnect_delay_is_seeded_and_capped() -> None:
    a = [
        reconnect_delay(n, base=1, cap=60, exponential=True, rng=station_rng(1, "X"))
        for n in range(10)
    ]
    b = [
        reconnect_delay(n, base=1, cap=60, exponential=True, rng=station_rng(1, "X"))
        for n in range(10)
    ]
    assert a == b
    assert max(a) <= 60 * 1.2
    fixed = [
        reconnect_delay(n, base=5, cap=60, exponential=False, rng=station_rng(1, "X"))
        for n in range(10)
    ]
    assert all(4.0 <= d <= 6.0 for d in fixed)


async def test_unhandled_action_gets_not_supported_and_station_stays_connected(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    station = make_station(shipped_template(), network.connect())
    with trio.fail_after(HOUR):
        async with running(station):
            await wait_state(station, StationState.BOOTED)
            # The security whitepaper's certificate actions have no handler: known 1.6
            # actions, so NotSupported (unknown actions get NotImplemented, below).
            assert "GetInstalledCertificateIds" not in station.handlers
            with pytest.raises(NotSupportedError):
                await csms.call(
                    station.station_id,
                    "GetInstalledCertificateIds",
                    {"certificateType": "CentralSystemRootCertificate"},
                )
            beats = csms.stations[station.station_id].received["Heartbeat"]
            await trio.sleep(61)
            assert csms.stations[station.station_id].received["Heartbeat"] == beats + 1
            assert len(network.attempts) == 1


async def test_command_disabled_by_commands_support_gets_not_supported(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    template = shipped_template()
    support = type(template.commands_support)(incoming_commands={"ClearCache": False})
    station = make_station(shipped_template(commands_support=support), network.connect())

    async def clear_cache(call: Call) -> dict[str, Any]:
        return {"status": "Accepted"}

    station.handlers["ClearCache"] = clear_cache
    with trio.fail_after(HOUR):
        async with running(station):
            await wait_state(station, StationState.BOOTED)
            with pytest.raises(NotSupportedError):
                await csms.call(station.station_id, "ClearCache", {})
            support2 = type(template.commands_support)(incoming_commands={"ClearCache": True})
            station.template = shipped_template(commands_support=support2)
            assert await csms.call(station.station_id, "ClearCache", {}) == {"status": "Accepted"}


async def test_bad_frames_get_callerror_and_station_stays_connected(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    replies: list[Any] = []
    alive = trio.Event()

    async def raw_csms(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept(subprotocol="ocpp1.6")
        while True:
            try:
                frame = json.loads(await ws.get_message())
            except trio_websocket.ConnectionClosed:
                return
            if frame[0] == 3 or frame[0] == 4:
                replies.append(frame)
                continue
            action = frame[2]
            if action == "BootNotification":
                await ws.send_message(
                    json.dumps(
                        [
                            3,
                            frame[1],
                            {
                                "status": "Accepted",
                                "interval": 30,
                                "currentTime": "2026-01-01T00:00:00Z",
                            },
                        ]
                    )
                )
                await ws.send_message("this is not json")
                await ws.send_message('{"not": "an array"}')
                await ws.send_message('[2, "m1", "Reset", {"type": "Sideways"}]')
                await ws.send_message('[2, "m2", "NoSuchAction", {}]')
            elif action == "Heartbeat":
                await ws.send_message(
                    json.dumps([3, frame[1], {"currentTime": "2026-01-01T00:00:00Z"}])
                )
                alive.set()
            else:
                await ws.send_message(json.dumps([3, frame[1], {}]))

    network = MemoryNetwork(nursery, raw_csms)
    station = make_station(shipped_template(), network.connect())
    nursery.start_soon(station.run)
    with trio.fail_after(HOUR):
        await alive.wait()
    station.stop()
    codes = [(r[1], r[2]) for r in replies if r[0] == 4]
    assert ("-1", "FormationViolation") in codes
    assert any(code == "ProtocolError" for _, code in codes)
    assert ("m1", "PropertyConstraintViolation") in codes
    assert ("m2", "NotImplemented") in codes
    assert len(network.attempts) == 1


async def test_basic_auth_credentials_are_sent_to_the_csms(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    template = shipped_template(supervision_user="cp-user", supervision_password="s3cret:x")
    station = make_station(template, network.connect())
    with trio.fail_after(HOUR):
        async with running(station):
            await wait_state(station, StationState.BOOTED)
    authorization = csms.stations[station.station_id].authorization
    assert authorization is not None
    scheme, token = authorization.split(" ")
    assert scheme == "Basic"
    assert base64.b64decode(token) == b"cp-user:s3cret:x"


async def test_no_authorization_header_without_credentials(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    station = make_station(shipped_template(), network.connect())
    with trio.fail_after(HOUR):
        async with running(station):
            await wait_state(station, StationState.BOOTED)
    assert csms.stations[station.station_id].authorization is None
