"""The main Core and Smart Charging requests against a CSMS we did not write (issue 3).

Two simulated stations talk over real WebSockets to the independent CSMS built on the PyPI
``ocpp`` library (tests/peers/ocpp_lib_csms.py), which validates every frame both ways and
reports each violation. The test drives the CSMS-initiated calls through the peer's control
channel (`OcppLibCsms.call`) and waits for the station messages the peer prints. It runs on
the real clock: MeterValueSampleInterval is changed to 1 s and the template's reset_time is 1 s.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import tomli_w
import trio
import trio_websocket
from ocpp_lib_peer import CallFailed, OcppLibCsms, PeerError, open_ocpp_lib_csms

from evsim_trio._resources import data_dir
from evsim_trio.config import load_site
from evsim_trio.simulator import Simulator

pytestmark = pytest.mark.integration

TEMPLATES = data_dir("station_templates")
ID_TAG = "TAG-0001"
LIMIT_A = 16.0
# 16 A on 3 x 230 V, plus the template's 5 % power fluctuation and rounding.
LIMIT_W = LIMIT_A * 230 * 3 * 1.05 + 1

Payload = dict[str, Any]


def write_template(tmp_path: Path) -> Path:
    """The shipped two-connector AC template, with `reset_time = 1`, in tmp_path."""
    shipped = TEMPLATES / "ac-3phase-2conn.toml"
    data = tomllib.loads(shipped.read_text())
    data["reset_time"] = 1
    data["authorization_file"] = (shipped.parent / data["authorization_file"]).as_posix()
    path = tmp_path / "ac-3phase-2conn-fast-reset.toml"
    path.write_text(tomli_w.dumps(data))
    return path


def write_site(tmp_path: Path, url: str, template: Path, count: int) -> Path:
    """A site config in tmp_path (as tests/test_integration.py writes them): no embedded CSMS."""
    path = tmp_path / "site.toml"
    path.write_text(
        f'[simulator]\nseed = 7\nstate_dir = "{(tmp_path / "state").as_posix()}"\n'
        f"[ui_server]\nenabled = false\n"
        f'[csms]\nenabled = false\n[supervision]\nurls = ["{url}"]\n'
        f'[[stations]]\ntemplate = "{template.as_posix()}"\ncount = {count}\n'
    )
    return path


async def next_message(
    peer: OcppLibCsms,
    station: str,
    action: str,
    *,
    since: int,
    where: Callable[[Payload], bool] = lambda payload: True,
) -> Payload:
    """The first CALL of `action` from `station` among the peer's messages from index `since`."""

    def found() -> list[Payload]:
        return [
            m
            for m in peer.messages[since:]
            if m["station"] == station and m["action"] == action and where(m["payload"])
        ]

    await peer.wait_until(lambda: bool(found()))
    return found()[0]


async def answer_to(peer: OcppLibCsms, message: Payload) -> Payload:
    """The CALLRESULT payload the peer sent for a station's CALL."""

    def found() -> list[Payload]:
        return [
            r
            for r in peer.responses
            if r["station"] == message["station"] and r["unique_id"] == message["unique_id"]
        ]

    await peer.wait_until(lambda: bool(found()))
    payload: Payload = found()[0]["payload"]
    return payload


def sampled(message: Payload, measurand: str) -> list[Payload]:
    """The sampled values of one measurand in a MeterValues payload."""
    return [
        value
        for reading in message["payload"]["meterValue"]
        for value in reading["sampledValue"]
        if value.get("measurand", "Energy.Active.Import.Register") == measurand
    ]


async def run_scenario(peer: OcppLibCsms, station: str, connector_id: int) -> None:
    """Configuration, a remote transaction with a charging profile, triggers, reset."""
    call = partial(peer.call, station)

    # ChangeConfiguration: each status the station can give for these keys.
    change = "ChangeConfiguration"
    assert await call(change, {"key": "MeterValueSampleInterval", "value": "1"}) == {
        "status": "Accepted"
    }
    assert await call(change, {"key": "NoSuchKey", "value": "1"}) == {"status": "NotSupported"}
    assert await call(change, {"key": "NumberOfConnectors", "value": "3"}) == {"status": "Rejected"}

    # GetConfiguration: the change is visible, readonly flags and unknown keys reported.
    named = await call(
        "GetConfiguration", {"key": ["MeterValueSampleInterval", "NumberOfConnectors", "NoSuchKey"]}
    )
    assert named == {
        "configurationKey": [
            {"key": "MeterValueSampleInterval", "readonly": False, "value": "1"},
            {"key": "NumberOfConnectors", "readonly": True, "value": "2"},
        ],
        "unknownKey": ["NoSuchKey"],
    }
    everything = await call("GetConfiguration", {})
    keys = {entry["key"]: entry for entry in everything["configurationKey"]}
    assert keys["MeterValueSampleInterval"]["value"] == "1"
    assert "unknownKey" not in everything

    # RemoteStartTransaction -> StartTransaction -> MeterValues of that transaction.
    mark = len(peer.messages)
    remote_start = {"connectorId": connector_id, "idTag": ID_TAG}
    assert await call("RemoteStartTransaction", remote_start) == {"status": "Accepted"}
    start = await next_message(peer, station, "StartTransaction", since=mark)
    assert start["payload"]["connectorId"] == connector_id
    assert start["payload"]["idTag"] == ID_TAG
    transaction_id = (await answer_to(peer, start))["transactionId"]
    periodic = await next_message(
        peer,
        station,
        "MeterValues",
        since=mark,
        where=lambda p: p.get("transactionId") == transaction_id,
    )
    assert periodic["payload"]["connectorId"] == connector_id
    assert sampled(periodic, "Energy.Active.Import.Register")

    # SetChargingProfile: a 16 A TxProfile for that transaction.
    profile = {
        "connectorId": connector_id,
        "csChargingProfiles": {
            "chargingProfileId": 100 + connector_id,
            "transactionId": transaction_id,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": {
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": LIMIT_A}],
            },
        },
    }
    assert await call("SetChargingProfile", profile) == {"status": "Accepted"}

    # TriggerMessage: each one Accepted, and the message it asks for arrives.
    mark = len(peer.messages)
    trigger = {"requestedMessage": "StatusNotification", "connectorId": connector_id}
    assert await call("TriggerMessage", trigger) == {"status": "Accepted"}
    status = await next_message(peer, station, "StatusNotification", since=mark)
    assert status["payload"]["connectorId"] == connector_id
    assert status["payload"]["status"] == "Charging"

    mark = len(peer.messages)
    assert await call("TriggerMessage", {"requestedMessage": "Heartbeat"}) == {"status": "Accepted"}
    await next_message(peer, station, "Heartbeat", since=mark)

    mark = len(peer.messages)
    trigger = {"requestedMessage": "MeterValues", "connectorId": connector_id}
    assert await call("TriggerMessage", trigger) == {"status": "Accepted"}
    triggered = await next_message(
        peer,
        station,
        "MeterValues",
        since=mark,
        where=lambda p: any(
            v.get("context") == "Trigger" for r in p["meterValue"] for v in r["sampledValue"]
        ),
    )
    assert triggered["payload"]["transactionId"] == transaction_id
    # The profile's limit applies to the simulated power at once.
    (power,) = (v for v in sampled(triggered, "Power.Active.Import") if "phase" not in v)
    assert 0 < float(power["value"]) <= LIMIT_W

    # RemoteStopTransaction -> StopTransaction with reason Remote -> Available again.
    mark = len(peer.messages)
    assert await call("RemoteStopTransaction", {"transactionId": transaction_id}) == {
        "status": "Accepted"
    }
    stop = await next_message(peer, station, "StopTransaction", since=mark)
    assert stop["payload"]["transactionId"] == transaction_id
    assert stop["payload"]["reason"] == "Remote"
    assert stop["payload"]["meterStop"] >= start["payload"]["meterStart"]
    await next_message(
        peer,
        station,
        "StatusNotification",
        since=mark,
        where=lambda p: p["connectorId"] == connector_id and p["status"] == "Available",
    )

    # Reset Soft -> the connection closes -> a new BootNotification, Accepted.
    mark = len(peer.messages)
    assert await call("Reset", {"type": "Soft"}) == {"status": "Accepted"}
    boot = await next_message(peer, station, "BootNotification", since=mark)
    assert (await answer_to(peer, boot))["status"] == "Accepted"
    assert any(
        e["event"] == "disconnected" and e["station"] == station
        for e in peer.events[peer.events.index(start) :]
    )
    # The station is back: it answers again on its new connection.
    assert await call("TriggerMessage", {"requestedMessage": "Heartbeat"}) == {"status": "Accepted"}


async def test_main_requests_against_the_ocpp_library_csms_give_no_violation(
    tmp_path: Path,
) -> None:
    template = write_template(tmp_path)
    with trio.fail_after(20):
        async with open_ocpp_lib_csms() as peer:
            site = load_site(write_site(tmp_path, peer.url, template, count=2))
            async with trio.open_nursery() as nursery:
                simulator: Simulator = await nursery.start(Simulator(site).run)
                await simulator.wait_until(lambda counts: counts.booted == 2)
                stations = [s.station_id for s in simulator.stations]
                await peer.wait_until(lambda: peer.stations() == set(stations))
                async with trio.open_nursery() as scenarios:
                    # Station 1 charges on connector 1, station 2 on connector 2, at once.
                    for connector_id, station in enumerate(stations, start=1):
                        scenarios.start_soon(run_scenario, peer, station, connector_id)
                await simulator.shutdown()
    assert peer.violations == []
    assert peer.call_errors == []
    assert peer.control_errors == []
    for station in stations:
        assert len(peer.received("StartTransaction", station)) == 1
        assert len(peer.received("StopTransaction", station)) == 1
        assert len(peer.received("BootNotification", station)) == 2
    counts = simulator.counts()
    assert counts.call_errors == counts.call_timeouts == 0


# --- the control channel the scenario relies on, against a hand-driven station -------------


@asynccontextmanager
async def fake_station(peer: OcppLibCsms, station: str) -> AsyncIterator[FakeStation]:
    """A hand-driven station connected to the peer and registered (BootNotification)."""
    async with trio_websocket.open_websocket_url(
        f"{peer.url}/ocpp/{station}", subprotocols=["ocpp1.6"]
    ) as ws:
        fake = FakeStation(ws)
        boot = {"chargePointVendor": "Evsim", "chargePointModel": "Fake-1"}
        await fake.send([2, "boot-1", "BootNotification", boot])
        assert (await fake.receive())[0] == 3
        yield fake


class FakeStation:
    """Raw frames over one WebSocket."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self.ws = ws

    async def send(self, frame: list[Any]) -> None:
        """Send one frame."""
        await self.ws.send_message(json.dumps(frame))

    async def receive(self) -> list[Any]:
        """The next frame from the peer."""
        frame: list[Any] = json.loads(await self.ws.get_message())
        return frame


async def test_control_call_returns_the_station_callresult() -> None:
    answer = {"configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "9"}]}
    with trio.fail_after(20):
        async with open_ocpp_lib_csms() as peer, fake_station(peer, "CS-CTL") as station:
            async with trio.open_nursery() as nursery:

                async def answer_it() -> None:
                    request = await station.receive()
                    assert request[2:] == ["GetConfiguration", {"key": ["HeartbeatInterval"]}]
                    await station.send([3, request[1], answer])

                nursery.start_soon(answer_it)
                result = await peer.call(
                    "CS-CTL", "GetConfiguration", {"key": ["HeartbeatInterval"]}
                )
            assert result == answer
            (outcome,) = peer.call_results
            assert outcome["station"] == "CS-CTL"
            assert outcome["action"] == "GetConfiguration"
            peer.assert_no_violations()


async def test_control_call_answered_with_callerror_raises_and_is_a_violation() -> None:
    with trio.fail_after(20):
        async with open_ocpp_lib_csms() as peer, fake_station(peer, "CS-ERR") as station:
            async with trio.open_nursery() as nursery:

                async def refuse_it() -> None:
                    request = await station.receive()
                    await station.send([4, request[1], "NotSupported", "no resets here", {}])

                nursery.start_soon(refuse_it)
                with pytest.raises(CallFailed) as failed:
                    await peer.call("CS-ERR", "Reset", {"type": "Hard"})
            assert failed.value.error_code == "NotSupported"
            assert failed.value.event["description"] == "no resets here"
            assert [v["action"] for v in peer.violations] == ["Reset"]


async def test_control_call_unanswered_when_the_station_disconnects_raises() -> None:
    with trio.fail_after(20):
        async with open_ocpp_lib_csms() as peer:
            async with trio.open_nursery() as nursery:

                async def hang_up() -> None:
                    async with fake_station(peer, "CS-GONE") as station:
                        await peer.wait_until(lambda: peer.stations() == {"CS-GONE"})
                        nursery.start_soon(call_it)
                        await station.receive()  # the CALL; leave without answering

                async def call_it() -> None:
                    with pytest.raises(CallFailed) as failed:
                        await peer.call("CS-GONE", "ClearCache", {})
                    assert failed.value.error_code is None

                nursery.start_soon(hang_up)
            peer.assert_no_violations()


async def test_control_call_answered_right_before_a_disconnect_returns_the_result() -> None:
    # A station answers Reset, then closes its socket at once: the answer still counts.
    with trio.fail_after(20):
        async with open_ocpp_lib_csms() as peer:
            async with trio.open_nursery() as nursery:

                async def answer_and_leave() -> None:
                    async with fake_station(peer, "CS-RESET") as station:
                        await peer.wait_until(lambda: peer.stations() == {"CS-RESET"})
                        nursery.start_soon(call_it)
                        request = await station.receive()
                        await station.send([3, request[1], {"status": "Accepted"}])

                async def call_it() -> None:
                    assert await peer.call("CS-RESET", "Reset", {"type": "Hard"}) == {
                        "status": "Accepted"
                    }

                nursery.start_soon(answer_and_leave)
            peer.assert_no_violations()


@pytest.mark.parametrize(
    ("station", "action", "payload", "detail"),
    [
        ("CS-NONE", "ClearCache", {}, "is not connected"),
        ("CS-BAD", "Reset", {"type": "Sideways"}, "invalid payload"),
        ("CS-BAD", "Heartbeat", {}, "not a CSMS-initiated action"),
    ],
)
async def test_control_call_the_peer_cannot_send_is_refused(
    station: str, action: str, payload: Payload, detail: str
) -> None:
    with trio.fail_after(20):
        async with open_ocpp_lib_csms() as peer, fake_station(peer, "CS-BAD"):
            with pytest.raises(PeerError, match=detail):
                await peer.call(station, action, payload)
            assert peer.call_results == peer.call_errors == peer.violations == []
