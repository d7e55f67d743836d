"""The independent ocpp-library CSMS peer: it answers valid traffic and reports what is not.

A hand-written fake station (raw JSON frames over trio-websocket) stands in for ours, so these
tests prove that the peer's "zero violations" means something.
"""

from __future__ import annotations

import datetime
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio_websocket
from ocpp_lib_peer import OcppLibCsms, PeerError, open_ocpp_lib_csms

pytestmark = pytest.mark.integration

VALID_BOOT = {"chargePointVendor": "Evsim", "chargePointModel": "Fake-1"}


def now() -> str:
    """An OCPP timestamp."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeStation:
    """A minimal station: sends hand-written frames, reads the raw replies."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)

    async def send_frame(self, frame: Any) -> None:
        """Send one JSON frame as text."""
        await self.ws.send_message(json.dumps(frame))

    async def receive_frame(self) -> Any:
        """The next frame from the CSMS, decoded."""
        return json.loads(await self.ws.get_message())

    async def call(self, action: str, payload: Any) -> list[Any]:
        """Send a CALL and return the CSMS's reply frame (CALLRESULT or CALLERROR)."""
        unique_id = str(next(self._ids))
        await self.send_frame([2, unique_id, action, payload])
        reply: list[Any] = await self.receive_frame()
        assert reply[1] == unique_id
        return reply


@asynccontextmanager
async def fake_station(csms: OcppLibCsms, station_id: str) -> AsyncIterator[FakeStation]:
    """Connect a fake station to the peer as ``/ocpp/<station_id>``."""
    async with trio_websocket.open_websocket_url(
        f"{csms.url}/ocpp/{station_id}", subprotocols=["ocpp1.6"]
    ) as ws:
        yield FakeStation(ws)


def violations_of(csms: OcppLibCsms, station: str) -> list[str]:
    """The details of one station's violations."""
    return [v["detail"] for v in csms.violations if v["station"] == station]


async def test_valid_boot_notification_is_accepted_without_violations() -> None:
    with trio.fail_after(30):
        async with open_ocpp_lib_csms("--heartbeat-interval", "10") as csms:
            async with fake_station(csms, "CS-OK") as station:
                reply = await station.call("BootNotification", VALID_BOOT)
                await csms.wait_until(lambda: csms.stations() == {"CS-OK"})
            assert reply[0] == 3
            assert reply[2]["status"] == "Accepted"
            assert reply[2]["interval"] == 10
            assert csms.received("BootNotification", "CS-OK")[0]["payload"] == VALID_BOOT
            csms.assert_no_violations()
        assert csms.process.returncode == 0
        assert csms.events[0]["event"] == "listening"
        assert csms.events[-1] == {"event": "stopped"}


async def test_invalid_boot_notification_is_answered_with_callerror_and_reported() -> None:
    too_long_vendor = {**VALID_BOOT, "chargePointVendor": "V" * 21}
    with trio.fail_after(30):
        async with open_ocpp_lib_csms() as csms:
            async with fake_station(csms, "CS-BAD") as station:
                reply = await station.call("BootNotification", too_long_vendor)
                await csms.wait_until(lambda: len(csms.violations) == 1)
            assert reply[0] == 4
            (violation,) = csms.violations
            assert violation["station"] == "CS-BAD"
            assert violation["action"] == "BootNotification"
            assert "too long" in violation["detail"]
            assert violation["errors"] == [f"chargePointVendor: '{'V' * 21}' is too long"]
            assert csms.stations() == set()


async def test_every_station_initiated_action_gets_a_valid_answer() -> None:
    stamp = now()
    calls: list[tuple[str, dict[str, Any]]] = [
        ("BootNotification", VALID_BOOT),
        ("Heartbeat", {}),
        ("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"}),
        ("Authorize", {"idTag": "TAG1"}),
        (
            "StartTransaction",
            {"connectorId": 1, "idTag": "TAG1", "meterStart": 0, "timestamp": stamp},
        ),
        (
            "StartTransaction",
            {"connectorId": 2, "idTag": "TAG2", "meterStart": 5, "timestamp": stamp},
        ),
        (
            "MeterValues",
            {
                "connectorId": 1,
                "meterValue": [{"timestamp": stamp, "sampledValue": [{"value": "12.5"}]}],
            },
        ),
        ("DataTransfer", {"vendorId": "evsim", "messageId": "hello", "data": "x"}),
        ("DiagnosticsStatusNotification", {"status": "Idle"}),
        ("FirmwareStatusNotification", {"status": "Idle"}),
        ("SecurityEventNotification", {"type": "StartupOfTheDevice", "timestamp": stamp}),
        ("SignCertificate", {"csr": "-----BEGIN CERTIFICATE REQUEST-----"}),
        ("LogStatusNotification", {"status": "Idle", "requestId": 1}),
        ("SignedFirmwareStatusNotification", {"status": "Idle"}),
    ]
    with trio.fail_after(30):
        async with open_ocpp_lib_csms() as csms, fake_station(csms, "CS-ALL") as station:
            replies: dict[str, list[dict[str, Any]]] = {}
            for action, payload in calls:
                reply = await station.call(action, payload)
                assert reply[0] == 3, reply
                replies.setdefault(action, []).append(reply[2])
            first, second = (r["transactionId"] for r in replies["StartTransaction"])
            assert first != second
            reply = await station.call(
                "StopTransaction",
                {"transactionId": first, "idTag": "TAG1", "meterStop": 10, "timestamp": stamp},
            )
            assert reply[0] == 3
            assert reply[2] == {"idTagInfo": {"status": "Accepted"}}
            await csms.wait_until(lambda: len(csms.responses) == len(calls) + 1)
            assert {m["action"] for m in csms.messages} == {a for a, _ in calls} | {
                "StopTransaction"
            }
            csms.assert_no_violations()


async def test_frames_the_library_would_only_log_are_reported() -> None:
    with trio.fail_after(30):
        async with open_ocpp_lib_csms() as csms, fake_station(csms, "CS-FRAMES") as station:
            await station.call("BootNotification", VALID_BOOT)
            await station.ws.send_message("this is not JSON")
            await station.send_frame({"not": "an array"})
            await station.send_frame([7, "1", "Heartbeat", {}])
            await station.send_frame([3, "no-such-call", {}])
            # The CSMS still answers the next good CALL: it did not choke on those.
            assert (await station.call("Heartbeat", {}))[0] == 3
            await csms.wait_until(lambda: len(csms.violations) == 4)
            details = violations_of(csms, "CS-FRAMES")
            assert "not valid JSON" in details[0]
            assert "not a non-empty JSON array" in details[1]
            assert "MessageTypeId 7" in details[2]
            assert "answers no outstanding CALL" in details[3]


async def test_timestamp_that_is_not_a_date_time_is_reported() -> None:
    # The library's own validators ignore "format": the peer makes them check it.
    status = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
    with trio.fail_after(30):
        async with open_ocpp_lib_csms() as csms, fake_station(csms, "CS-TIME") as station:
            await station.call("BootNotification", VALID_BOOT)
            good = await station.call("StatusNotification", {**status, "timestamp": now()})
            bad = await station.call("StatusNotification", {**status, "timestamp": "today"})
            await csms.wait_until(lambda: len(csms.violations) == 1)
        assert good[0] == 3
        assert bad[0] == 4
        assert csms.violations[0]["errors"] == ["timestamp: 'today' is not a 'date-time'"]


async def test_calls_before_an_accepted_boot_are_reported() -> None:
    with trio.fail_after(30):
        async with open_ocpp_lib_csms() as csms, fake_station(csms, "CS-EARLY") as station:
            assert (await station.call("Heartbeat", {}))[0] == 3
            await station.call("BootNotification", VALID_BOOT)
            await station.call("Heartbeat", {})
            await csms.wait_until(lambda: len(csms.responses) == 3)
            assert violations_of(csms, "CS-EARLY") == [
                "Heartbeat sent before a BootNotification was answered"
            ]


async def test_pending_boot_status_is_answered_and_spontaneous_calls_are_reported() -> None:
    with trio.fail_after(30):
        async with open_ocpp_lib_csms("--boot-status", "Pending") as csms:
            async with fake_station(csms, "CS-PENDING") as station:
                reply = await station.call("BootNotification", VALID_BOOT)
                await station.call("Heartbeat", {})
                await csms.wait_until(lambda: len(csms.violations) == 1)
            assert reply[2]["status"] == "Pending"
            assert csms.stations() == set()
            assert "while Pending" in csms.violations[0]["detail"]


async def test_message_asked_for_by_trigger_message_is_allowed_while_pending() -> None:
    with trio.fail_after(30):
        async with open_ocpp_lib_csms(
            "--boot-status", "Pending", "--trigger", "TriggerMessage"
        ) as csms:
            async with fake_station(csms, "CS-ASKED") as station:
                await station.call("BootNotification", VALID_BOOT)
                request = await station.receive_frame()
                assert request[2:] == ["TriggerMessage", {"requestedMessage": "Heartbeat"}]
                await station.send_frame([3, request[1], {"status": "Accepted"}])
                assert (await station.call("Heartbeat", {}))[0] == 3
                await csms.wait_until(lambda: len(csms.call_results) == 1)
            csms.assert_no_violations()


async def test_csms_initiated_or_unknown_action_from_a_station_is_reported() -> None:
    with trio.fail_after(30):
        async with open_ocpp_lib_csms() as csms, fake_station(csms, "CS-WRONG") as station:
            await station.call("BootNotification", VALID_BOOT)
            reset = await station.call("Reset", {"type": "Soft"})
            unknown = await station.call("MakeCoffee", {})
            await csms.wait_until(lambda: len(csms.violations) == 2)
        assert reset[2] == "NotImplemented"
        assert unknown[2] == "NotSupported"
        assert [v["action"] for v in csms.violations] == ["Reset", "MakeCoffee"]


async def test_stop_transaction_with_unknown_id_is_reported() -> None:
    stop = {"transactionId": 4242, "meterStop": 10, "timestamp": now()}
    with trio.fail_after(30):
        async with open_ocpp_lib_csms() as csms, fake_station(csms, "CS-STOP") as station:
            await station.call("BootNotification", VALID_BOOT)
            assert (await station.call("StopTransaction", stop))[0] == 3
            await csms.wait_until(lambda: len(csms.violations) == 1)
            assert "4242" in csms.violations[0]["detail"]


async def test_trigger_sends_a_call_after_boot_and_reports_the_valid_result() -> None:
    with trio.fail_after(30):
        async with open_ocpp_lib_csms("--trigger", "GetConfiguration") as csms:
            async with fake_station(csms, "CS-TRIG") as station:
                await station.call("BootNotification", VALID_BOOT)
                request = await station.receive_frame()
                assert request[0] == 2
                assert request[2:] == ["GetConfiguration", {}]
                answer = {
                    "configurationKey": [
                        {"key": "HeartbeatInterval", "readonly": False, "value": "60"}
                    ]
                }
                await station.send_frame([3, request[1], answer])
                await csms.wait_until(lambda: len(csms.call_results) == 1)
            (result,) = csms.call_results
            assert result["station"] == "CS-TRIG"
            assert result["action"] == "GetConfiguration"
            assert result["payload"] == answer
            csms.assert_no_violations()


async def test_trigger_result_that_fails_the_schema_is_reported() -> None:
    with trio.fail_after(30):
        async with open_ocpp_lib_csms(
            "--trigger", 'ChangeConfiguration={"key": "K", "value": "1"}'
        ) as csms:
            async with fake_station(csms, "CS-TRIG-BAD") as station:
                await station.call("BootNotification", VALID_BOOT)
                request = await station.receive_frame()
                assert request[2:] == ["ChangeConfiguration", {"key": "K", "value": "1"}]
                await station.send_frame([3, request[1], {"status": "Maybe"}])
                await csms.wait_until(lambda: len(csms.call_errors) == 1)
            (violation,) = csms.violations
            assert violation["action"] == "ChangeConfiguration"
            assert violation["errors"] == [
                "status: 'Maybe' is not one of"
                " ['Accepted', 'Rejected', 'RebootRequired', 'NotSupported']"
            ]


async def test_callerror_from_the_station_is_reported() -> None:
    with trio.fail_after(30):
        async with open_ocpp_lib_csms("--trigger", "Reset") as csms:
            async with fake_station(csms, "CS-ERR") as station:
                await station.call("BootNotification", VALID_BOOT)
                request = await station.receive_frame()
                assert request[2] == "Reset"
                await station.send_frame([4, request[1], "FormatViolation", "nope", {}])
                await csms.wait_until(lambda: len(csms.call_errors) == 1)
            assert csms.call_errors[0]["error_code"] == "FormatViolation"
            details = violations_of(csms, "CS-ERR")
            # FormatViolation is the OCPP 2.0 spelling; 1.6 says FormationViolation.
            assert len(details) == 2
            assert "not an OCPP 1.6 code" in details[0]
            assert "with CALLERROR FormatViolation" in details[1]


async def test_handshake_without_the_ocpp16_subprotocol_is_reported() -> None:
    # By hand: trio-websocket 0.12.2 leaves its socket open when the handshake is rejected.
    with trio.fail_after(30):
        async with open_ocpp_lib_csms() as csms:
            assert csms.port is not None
            stream = await trio.open_tcp_stream("127.0.0.1", csms.port)
            async with stream:
                await stream.send_all(
                    b"GET /ocpp/CS-NOPROTO HTTP/1.1\r\n"
                    b"Host: 127.0.0.1\r\n"
                    b"Upgrade: websocket\r\n"
                    b"Connection: Upgrade\r\n"
                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    b"Sec-WebSocket-Version: 13\r\n\r\n"
                )
                status_line = (await stream.receive_some(4096)).split(b"\r\n")[0]
            assert status_line.startswith(b"HTTP/1.1 400")
            await csms.wait_until(lambda: len(csms.violations) == 1)
            assert csms.violations[0]["station"] == "CS-NOPROTO"
            assert "subprotocol" in csms.violations[0]["detail"]


async def test_invalid_trigger_payload_stops_the_peer_before_it_listens() -> None:
    with trio.fail_after(30), pytest.raises(PeerError):
        async with open_ocpp_lib_csms("--trigger", 'Reset={"type": "Sideways"}'):
            pass
