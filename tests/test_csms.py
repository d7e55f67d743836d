"""The embedded CSMS against minimal fake stations (trio-websocket client + OcppSession).

Socket tests use real sockets on 127.0.0.1 port 0; the timeout test uses an in-memory stream
under the autojump clock (MockClock must not be mixed with real sockets).
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import attrs
import pytest
import trio
import trio.lowlevel
import trio.testing
import trio_websocket

from evsim_trio.csms import EmbeddedCsms, StationNotConnected, StationRecord, station_id_from_path
from evsim_trio.ocpp import (
    Call,
    ErrorReceived,
    Event,
    IncomingCall,
    NotSupportedError,
    OcppError,
    OcppSession,
    ResultReceived,
    SecurityError,
    encode,
    get_validator,
)

TIMEOUT = 10

BOOT = {"chargePointVendor": "Acme", "chargePointModel": "Volt-1"}


@attrs.define
class FakeStation:
    """A station reduced to a WebSocket and an OCPP session that validates what it gets."""

    ws: trio_websocket.WebSocketConnection
    session: OcppSession = attrs.field(
        factory=lambda: OcppSession(validator=get_validator("1.6"), id_prefix="st-")
    )

    async def call(self, action: str, payload: dict[str, Any]) -> Event:
        """Send a CALL and return the session's event for the answer."""
        _, frame = self.session.prepare_call(action, payload)
        await self.ws.send_message(frame)
        return self.session.receive(await self.ws.get_message())

    async def result(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send a CALL and return its (schema-valid) CALLRESULT payload."""
        event = await self.call(action, payload)
        assert isinstance(event, ResultReceived), event
        return event.payload

    async def raw(self, frame: str) -> list[Any]:
        """Send any text frame and return the decoded answer frame."""
        await self.ws.send_message(frame)
        answer: list[Any] = json.loads(await self.ws.get_message())
        return answer

    async def answer_one(self, respond: Callable[[Call], str]) -> Call:
        """Receive one CALL from the CSMS and send `respond(call)` back."""
        event = self.session.receive(await self.ws.get_message())
        assert isinstance(event, IncomingCall), event
        await self.ws.send_message(respond(event.call))
        return event.call


@pytest.fixture
async def csms(nursery: trio.Nursery) -> EmbeddedCsms:
    server = EmbeddedCsms(heartbeat_interval=30, call_timeout=5)
    await nursery.start(server.serve, "127.0.0.1", 0)
    return server


@asynccontextmanager
async def open_station(
    csms: EmbeddedCsms,
    station_id: str = "CS-1",
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> AsyncIterator[FakeStation]:
    """Connect a fake station to `csms` over a real socket.

    The TCP stream is ours and closed on exit: a trio-websocket client never closes it by
    itself when the server ends the connection (a ResourceWarning under `-W error`).
    """
    assert csms.port is not None
    stream = await trio.open_tcp_stream("127.0.0.1", csms.port)
    async with stream, trio.open_nursery() as nursery:
        ws = await trio_websocket.wrap_client_stream(
            nursery,
            stream,
            f"127.0.0.1:{csms.port}",
            f"/ocpp/{station_id}",
            subprotocols=["ocpp1.6"],
            extra_headers=headers,
        )
        try:
            yield FakeStation(ws)
        finally:
            with trio.move_on_after(TIMEOUT, shield=True):
                await ws.aclose()
            nursery.cancel_scope.cancel()


async def rejected_status(
    csms: EmbeddedCsms, path: str = "/ocpp/CS-1", subprotocols: tuple[str, ...] = ("ocpp1.6",)
) -> int:
    """The HTTP status of a handshake that `csms` must reject."""
    assert csms.port is not None
    rejections: list[trio_websocket.ConnectionRejected] = []
    stream = await trio.open_tcp_stream("127.0.0.1", csms.port)
    async with stream:
        try:
            async with trio.open_nursery() as nursery:
                await trio_websocket.wrap_client_stream(
                    nursery, stream, "127.0.0.1", path, subprotocols=list(subprotocols)
                )
                nursery.cancel_scope.cancel()  # accepted: the assert below fails
        except* trio_websocket.ConnectionRejected as group:
            rejections.extend(cast(Any, group.exceptions))
    assert len(rejections) == 1, "the handshake was not rejected"
    status: int = rejections[0].status_code
    return status


async def serve_in_memory(
    nursery: trio.Nursery, csms: EmbeddedCsms, path: str
) -> trio_websocket.WebSocketConnection:
    """Connect a client WebSocket to `csms.handle_request` over an in-memory stream pair."""
    client, server = trio.testing.memory_stream_pair()

    async def serve_one() -> None:
        async with trio.open_nursery() as inner:
            request = await trio_websocket.wrap_server_stream(inner, server)
            await csms.handle_request(request)
            inner.cancel_scope.cancel()

    nursery.start_soon(serve_one)
    return await trio_websocket.wrap_client_stream(
        nursery, cast(Any, client), "csms.test", path, subprotocols=["ocpp1.6"]
    )


# -- default answers --------------------------------------------------------------------------


async def test_default_answers_are_valid_and_update_the_record(csms: EmbeddedCsms) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_station(csms) as station:
            boot = await station.result("BootNotification", BOOT)
            assert boot["status"] == "Accepted"
            assert boot["interval"] == 30
            assert boot["currentTime"].endswith("Z")
            assert (await station.result("Heartbeat", {}))["currentTime"].endswith("Z")
            status = {"connectorId": 1, "errorCode": "NoError", "status": "Preparing"}
            assert await station.result("StatusNotification", status) == {}
            authorize = await station.result("Authorize", {"idTag": "TAG-1"})
            assert authorize == {"idTagInfo": {"status": "Accepted"}}
            start = await station.result(
                "StartTransaction",
                {
                    "connectorId": 1,
                    "idTag": "TAG-1",
                    "meterStart": 0,
                    "timestamp": "2026-01-01T00:00:00Z",
                },
            )
            assert start["idTagInfo"] == {"status": "Accepted"}
            transaction_id = start["transactionId"]
            record = csms.stations["CS-1"]
            assert set(record.transactions) == {transaction_id}
            meter = {
                "connectorId": 1,
                "transactionId": transaction_id,
                "meterValue": [
                    {"timestamp": "2026-01-01T00:01:00Z", "sampledValue": [{"value": "120"}]}
                ],
            }
            assert await station.result("MeterValues", meter) == {}
            stop = await station.result(
                "StopTransaction",
                {
                    "transactionId": transaction_id,
                    "idTag": "TAG-1",
                    "meterStop": 120,
                    "timestamp": "2026-01-01T00:02:00Z",
                },
            )
            assert stop == {"idTagInfo": {"status": "Accepted"}}
            assert await station.result("DataTransfer", {"vendorId": "Acme"}) == {
                "status": "Accepted"
            }

    assert record.boot_count == 1
    assert record.last_boot == BOOT
    assert record.registration == "Accepted"
    assert record.heartbeats == 1
    assert record.connector_status == {1: "Preparing"}
    assert record.transactions == {}
    assert record.received["MeterValues"] == 1
    assert record.last_payload["MeterValues"] == meter
    assert csms.received["StartTransaction"] == 1
    assert sum(csms.received.values()) == 8
    assert csms.violations == []


async def test_id_tag_starting_with_bad_is_invalid(csms: EmbeddedCsms) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_station(csms) as station:
            authorize = await station.result("Authorize", {"idTag": "BAD-TAG"})
            assert authorize == {"idTagInfo": {"status": "Invalid"}}
            start = await station.result(
                "StartTransaction",
                {
                    "connectorId": 1,
                    "idTag": "BAD-1",
                    "meterStart": 0,
                    "timestamp": "2026-01-01T00:00:00Z",
                },
            )
            assert start["idTagInfo"] == {"status": "Invalid"}
            stop = await station.result(
                "StopTransaction",
                {
                    "transactionId": start["transactionId"],
                    "idTag": "BAD-1",
                    "meterStop": 0,
                    "timestamp": "2026-01-01T00:00:01Z",
                },
            )
            assert stop == {"idTagInfo": {"status": "Invalid"}}
            # Without an idTag there is no idTagInfo to give.
            assert (
                await station.result(
                    "StopTransaction",
                    {"transactionId": 99, "meterStop": 0, "timestamp": "2026-01-01T00:00:02Z"},
                )
                == {}
            )


async def test_transaction_ids_are_unique_and_increasing_across_stations(
    csms: EmbeddedCsms,
) -> None:
    start = {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "2026-01-01T00:00:00Z"}
    ids: list[int] = []
    with trio.fail_after(TIMEOUT):
        async with open_station(csms, "A") as a, open_station(csms, "B") as b:
            for station in (a, b, a, b, b, a):
                ids.append((await station.result("StartTransaction", start))["transactionId"])
    assert ids == sorted(set(ids))
    assert len(csms.stations["A"].transactions) == 3
    assert len(csms.stations["B"].transactions) == 3


# -- bad input from a station -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "payload", "code"),
    [
        ("BootNotification", {"chargePointVendor": "Acme"}, "OccurenceConstraintViolation"),
        (
            "StatusNotification",
            {"connectorId": 1, "errorCode": "NoError", "status": "Bogus"},
            "PropertyConstraintViolation",
        ),
        (
            "StatusNotification",
            {"connectorId": "1", "errorCode": "NoError", "status": "Available"},
            "TypeConstraintViolation",
        ),
    ],
)
async def test_invalid_payload_gets_callerror_and_connection_stays_open(
    csms: EmbeddedCsms, action: str, payload: dict[str, Any], code: str
) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_station(csms) as station:
            answer = await station.raw(encode(Call("bad-1", action, payload)))
            assert answer[:3] == [4, "bad-1", code]
            assert await station.result("Heartbeat", {})
    assert len(csms.violations) == 1
    assert csms.violations[0][0] == "CS-1"
    assert code in csms.violations[0][1]
    assert csms.stations["CS-1"].received[action] == 0
    assert csms.stations["CS-1"].connections == 1


async def test_non_json_frame_gets_callerror_and_connection_stays_open(
    csms: EmbeddedCsms,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_station(csms) as station:
            answer = await station.raw("this is not JSON")
            assert answer[:3] == [4, "-1", "FormationViolation"]
            answer = await station.raw('{"not": "an array"}')
            assert answer[:3] == [4, "-1", "ProtocolError"]
            assert await station.result("Heartbeat", {})
    assert [sid for sid, _ in csms.violations] == ["CS-1", "CS-1"]


async def test_unknown_action_gets_not_implemented(csms: EmbeddedCsms) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_station(csms) as station:
            answer = await station.raw(encode(Call("u-1", "MakeCoffee", {})))
            assert answer[:3] == [4, "u-1", "NotImplemented"]
            # An OCPP action the CSMS does not take from a station: NotSupported.
            answer = await station.raw(encode(Call("u-2", "ClearCache", {})))
            assert answer[:3] == [4, "u-2", "NotSupported"]
            assert await station.result("Heartbeat", {})


async def test_handler_errors_become_callerrors(csms: EmbeddedCsms) -> None:
    def security(record: StationRecord, payload: dict[str, Any]) -> dict[str, Any]:
        raise SecurityError("not you")

    def broken(record: StationRecord, payload: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("handler bug")

    async def slow_invalid(record: StationRecord, payload: dict[str, Any]) -> dict[str, Any]:
        await trio.lowlevel.checkpoint()
        return {"status": "Maybe"}

    csms.handlers["Authorize"] = security
    csms.handlers["Heartbeat"] = broken
    csms.handlers["DataTransfer"] = slow_invalid
    with trio.fail_after(TIMEOUT):
        async with open_station(csms) as station:
            event = await station.call("Authorize", {"idTag": "T"})
            assert isinstance(event, ErrorReceived)
            assert (event.error.error_code, event.error.error_description) == (
                "SecurityError",
                "not you",
            )
            event = await station.call("Heartbeat", {})
            assert isinstance(event, ErrorReceived)
            assert event.error.error_code == "InternalError"
            event = await station.call("DataTransfer", {"vendorId": "Acme"})
            assert isinstance(event, ErrorReceived)
            assert event.error.error_code == "InternalError"
            assert (
                await station.result(
                    "StatusNotification",
                    {"connectorId": 0, "errorCode": "NoError", "status": "Available"},
                )
                == {}
            )
    # Handler bugs are the CSMS's fault, not the station's.
    assert csms.violations == []


async def test_async_handler_answer_is_sent(csms: EmbeddedCsms) -> None:
    async def boot(record: StationRecord, payload: dict[str, Any]) -> dict[str, Any]:
        await trio.lowlevel.checkpoint()
        return {"status": "Pending", "interval": 7, "currentTime": "2026-01-01T00:00:00Z"}

    csms.handlers["BootNotification"] = boot
    with trio.fail_after(TIMEOUT):
        async with open_station(csms) as station:
            assert (await station.result("BootNotification", BOOT))["status"] == "Pending"
    assert csms.stations["CS-1"].registration == "Pending"


# -- CSMS-initiated calls ---------------------------------------------------------------------


async def test_call_returns_the_station_result(csms: EmbeddedCsms, nursery: trio.Nursery) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_station(csms) as station:
            await csms.wait_until(lambda: "CS-1" in csms.connected())
            received: list[Call] = []

            async def respond() -> None:
                received.append(
                    await station.answer_one(
                        lambda call: station.session.prepare_result(
                            call.unique_id, {"status": "Accepted"}
                        )
                    )
                )

            nursery.start_soon(respond)
            result = await csms.call("CS-1", "Reset", {"type": "Soft"})
            assert result == {"status": "Accepted"}
            assert received[0].action == "Reset"
            assert received[0].payload == {"type": "Soft"}


async def test_call_error_raises_the_ocpp_error_subclass(
    csms: EmbeddedCsms, nursery: trio.Nursery
) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_station(csms) as station:
            await csms.wait_until(lambda: "CS-1" in csms.connected())
            nursery.start_soon(
                station.answer_one,
                lambda call: station.session.prepare_error(
                    call.unique_id, NotSupportedError("disabled", {"why": "config"})
                ),
            )
            with pytest.raises(NotSupportedError) as info:
                await csms.call("CS-1", "ClearCache", {})
            assert info.value.description == "disabled"
            assert info.value.details == {"why": "config"}


async def test_invalid_call_result_raises_and_is_a_violation(
    csms: EmbeddedCsms, nursery: trio.Nursery
) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_station(csms) as station:
            await csms.wait_until(lambda: "CS-1" in csms.connected())
            # A station that does not validate its own answers.
            sloppy = FakeStation(station.ws, OcppSession(validator=None))
            nursery.start_soon(
                sloppy.answer_one,
                lambda call: sloppy.session.prepare_result(call.unique_id, {"status": "Sure"}),
            )
            with pytest.raises(OcppError) as info:
                await csms.call("CS-1", "ClearCache", {})
            assert info.value.code == "PropertyConstraintViolation"
    assert len(csms.violations) == 1


async def test_call_to_unknown_station_raises_key_error(csms: EmbeddedCsms) -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(KeyError):
        await csms.call("nobody", "ClearCache", {})


async def test_call_times_out_and_next_call_works(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    csms = EmbeddedCsms(call_timeout=30)
    with trio.fail_after(3600):
        ws = await serve_in_memory(nursery, csms, "/ocpp/MEM-1")
        station = FakeStation(ws)
        await csms.wait_until(lambda: "MEM-1" in csms.connected())
        started = trio.current_time()
        with pytest.raises(trio.TooSlowError):
            await csms.call("MEM-1", "ClearCache", {})
        assert trio.current_time() - started == 30
        # The late answer is ignored; the next call gets its own answer.
        late = station.session.receive(await ws.get_message())
        assert isinstance(late, IncomingCall)
        await ws.send_message(
            station.session.prepare_result(late.call.unique_id, {"status": "Accepted"})
        )
        nursery.start_soon(
            station.answer_one,
            lambda call: station.session.prepare_result(call.unique_id, {"status": "Rejected"}),
        )
        assert await csms.call("MEM-1", "ClearCache", {}) == {"status": "Rejected"}
        assert csms.violations == []


async def test_call_fails_when_the_station_drops_the_connection(
    csms: EmbeddedCsms, nursery: trio.Nursery
) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_station(csms) as station:
            await csms.wait_until(lambda: "CS-1" in csms.connected())

            async def hang_up() -> None:
                await station.ws.get_message()
                await station.ws.aclose()

            nursery.start_soon(hang_up)
            with pytest.raises(StationNotConnected):
                await csms.call("CS-1", "ClearCache", {})


# -- connections ------------------------------------------------------------------------------


async def test_reconnect_with_same_id_replaces_the_old_connection(
    csms: EmbeddedCsms, nursery: trio.Nursery
) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_station(csms) as old:
            await old.result("BootNotification", BOOT)
            async with open_station(csms) as new:
                with pytest.raises(trio_websocket.ConnectionClosed):
                    await old.ws.get_message()
                record = csms.stations["CS-1"]
                await csms.wait_until(lambda: record.connections == 2)
                assert record.connected
                assert csms.connected() == ["CS-1"]
                nursery.start_soon(
                    new.answer_one,
                    lambda call: new.session.prepare_result(call.unique_id, {"status": "Accepted"}),
                )
                assert await csms.call("CS-1", "ClearCache", {}) == {"status": "Accepted"}
                assert await new.result("Heartbeat", {})
            await csms.wait_until(lambda: not record.connected)


async def test_not_accepting_rejects_with_503(csms: EmbeddedCsms) -> None:
    csms.accepting = False
    with trio.fail_after(TIMEOUT):
        assert await rejected_status(csms) == 503
    assert csms.stations == {}


async def test_path_without_station_id_is_rejected_with_404(csms: EmbeddedCsms) -> None:
    with trio.fail_after(TIMEOUT):
        assert await rejected_status(csms, path="/") == 404
        assert await rejected_status(csms, path="//?x=1") == 404
    assert csms.stations == {}


async def test_wrong_subprotocol_is_rejected_with_400(csms: EmbeddedCsms) -> None:
    with trio.fail_after(TIMEOUT):
        assert await rejected_status(csms, subprotocols=("ocpp2.0.1",)) == 400
        assert await rejected_status(csms, subprotocols=()) == 400
    assert csms.stations == {}


async def test_accepts_ocpp16_among_other_subprotocols(csms: EmbeddedCsms) -> None:
    with trio.fail_after(TIMEOUT):
        async with trio_websocket.open_websocket_url(
            f"{csms.url}/CS-1", subprotocols=["ocpp2.0.1", "ocpp1.6"]
        ) as ws:
            assert ws.subprotocol == "ocpp1.6"


async def test_authorization_header_is_recorded(csms: EmbeddedCsms) -> None:
    header = "Basic Q1MtMTpzZWNyZXQ="
    with trio.fail_after(TIMEOUT):
        async with open_station(csms, headers=[(b"Authorization", header.encode())]) as station:
            await station.result("Heartbeat", {})
        async with open_station(csms, "CS-2") as station:
            await station.result("Heartbeat", {})
    assert csms.stations["CS-1"].authorization == header
    assert csms.stations["CS-2"].authorization is None


@pytest.mark.parametrize(
    ("path", "station_id"),
    [
        ("/ocpp/CS-1", "CS-1"),
        ("/CS-1", "CS-1"),
        ("/a/b/CS%201/", "CS 1"),
        ("/ocpp/CS-1?token=x", "CS-1"),
        ("/", ""),
        ("", ""),
    ],
)
def test_station_id_is_the_last_path_segment(path: str, station_id: str) -> None:
    assert station_id_from_path(path) == station_id


async def test_wait_until_wakes_on_a_message(csms: EmbeddedCsms, nursery: trio.Nursery) -> None:
    woke = trio.Event()

    async def wait_for_two_heartbeats() -> None:
        await csms.wait_until(
            lambda: "CS-1" in csms.stations and csms.stations["CS-1"].heartbeats >= 2
        )
        woke.set()

    with trio.fail_after(TIMEOUT):
        nursery.start_soon(wait_for_two_heartbeats)
        async with open_station(csms) as station:
            await station.result("Heartbeat", {})
            await trio.testing.wait_all_tasks_blocked()
            assert not woke.is_set()
            await station.result("Heartbeat", {})
            await woke.wait()


async def test_disconnect_closes_the_station_socket(csms: EmbeddedCsms) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_station(csms) as station:
            await station.result("Heartbeat", {})
            await csms.disconnect("CS-1")
            assert not csms.stations["CS-1"].connected
            assert csms.connected() == []
            with pytest.raises(trio_websocket.ConnectionClosed):
                await station.ws.get_message()
        with pytest.raises(KeyError):
            await csms.disconnect("CS-1")


async def test_serve_reports_a_taken_port_as_os_error(nursery: trio.Nursery) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with trio.fail_after(TIMEOUT), pytest.raises(OSError, match=f"127.0.0.1:{port}"):
            await nursery.start(EmbeddedCsms().serve, "127.0.0.1", port)


# -- run_csms ---------------------------------------------------------------------------------

_RUN = (
    "import sys; from evsim_trio.csms import run_csms; sys.exit(run_csms('127.0.0.1', {port}, 30))"
)


async def _read_line(stream: trio.abc.ReceiveStream, buffer: bytearray) -> bytes:
    while b"\n" not in buffer:
        chunk = await stream.receive_some()
        if not chunk:
            raise EOFError(bytes(buffer))
        buffer += chunk
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return line


async def test_run_csms_prints_the_url_and_exits_0_on_sigint() -> None:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-c", _RUN.format(port=0)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        buffer = bytearray()
        with trio.fail_after(30):
            line = (await _read_line(process.stdout, buffer)).decode()
        match = re.fullmatch(
            r"evsim-trio CSMS listening on (ws://127\.0\.0\.1:(\d+)) "
            r"\(stations connect to \1/<station id>\)",
            line,
        )
        assert match, line
        with trio.fail_after(TIMEOUT):
            async with trio_websocket.open_websocket_url(
                f"{match[1]}/CS-9", subprotocols=["ocpp1.6"]
            ) as ws:
                station = FakeStation(ws)
                await station.result("BootNotification", BOOT)
        process.send_signal(signal.SIGINT)
        with trio.fail_after(2):
            assert await process.wait() == 0
            summary = (await _read_line(process.stdout, buffer)).decode()
        assert summary.startswith("evsim-trio CSMS stopped: 1 stations seen")
        assert "1 calls received" in summary
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_run_csms_exits_1_when_the_port_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with trio.fail_after(30):
            result = await trio.run_process(
                [sys.executable, "-c", _RUN.format(port=port)],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr.decode()
    assert b"listening" not in result.stdout


async def test_station_vanishing_without_close_frame_is_disconnected(csms: EmbeddedCsms) -> None:
    assert csms.port is not None
    with trio.fail_after(TIMEOUT):
        stream = await trio.open_tcp_stream("127.0.0.1", csms.port)
        async with trio.open_nursery() as nursery:
            ws = await trio_websocket.wrap_client_stream(
                nursery, stream, "127.0.0.1", "/ocpp/GONE", subprotocols=["ocpp1.6"]
            )
            await FakeStation(ws).result("Heartbeat", {})
            await stream.aclose()  # no close frame: the TCP connection just ends
            nursery.cancel_scope.cancel()
        await csms.wait_until(lambda: not csms.stations["GONE"].connected)
    assert csms.connected() == []


async def test_without_validation_anything_goes_to_the_handlers(nursery: trio.Nursery) -> None:
    csms = EmbeddedCsms(validate=False)
    csms.handlers["MakeCoffee"] = lambda record, payload: {"cups": payload["cups"]}
    await nursery.start(csms.serve, "127.0.0.1", 0)
    with trio.fail_after(TIMEOUT):
        async with open_station(csms) as station:
            answer = await station.raw(encode(Call("c-1", "MakeCoffee", {"cups": 2})))
            assert answer == [3, "c-1", {"cups": 2}]
            status = {"connectorId": "one", "status": 5}
            answer = await station.raw(encode(Call("s-1", "StatusNotification", status)))
            assert answer == [3, "s-1", {}]
            # The default handler needs an idTag: its KeyError becomes an InternalError.
            answer = await station.raw(encode(Call("a-1", "Authorize", {})))
            assert answer[:3] == [4, "a-1", "InternalError"]
    assert csms.stations["CS-1"].connector_status == {}
    assert csms.violations == []


def test_the_csms_times_transaction_meter_values_age_and_gaps() -> None:
    import time
    from datetime import UTC, datetime

    from evsim_trio.csms import EmbeddedCsms

    csms = EmbeddedCsms()

    def meter_values(age: float) -> dict[str, Any]:
        sampled = datetime.fromtimestamp(time.time() - age, UTC)
        return {
            "connectorId": 1,
            "transactionId": 7,
            "meterValue": [
                {
                    "timestamp": sampled.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                    "sampledValue": [{"value": "1"}],
                }
            ],
        }

    csms.observe_meter_values("CS-1", meter_values(2.0))
    assert csms.meter_value_lag.count == 1
    assert csms.meter_value_gap.count == 0  # the first of its transaction
    csms.observe_meter_values("CS-1", meter_values(0.5))
    csms.observe_meter_values("CS-1", {"connectorId": 1, "meterValue": []})  # not a transaction's
    assert csms.meter_value_lag.count == 2
    assert csms.meter_value_gap.count == 1
    assert 1.9 < (csms.meter_value_lag.maximum) < 2.5
    assert 0.4 < (csms.meter_value_lag.minimum) < 1.0
    assert csms.meter_value_gap.maximum < 0.5  # the two arrived back to back
