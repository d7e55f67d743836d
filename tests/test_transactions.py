"""Transactions, metering and Core profile handlers: MockClock, embedded CSMS in memory."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
import trio_websocket
from memlink import (
    MemoryNetwork,
    make_station,
    record_calls,
    running,
    shipped_template,
    wait_state,
    wait_station,
)

from evsim_trio.csms import EmbeddedCsms, StationRecord
from evsim_trio.ocpp import GenericError
from evsim_trio.station import Station, StationState, load_state

HOUR = 3600.0
Calls = list[tuple[float, str, dict[str, Any]]]


def actions(calls: Calls, *wanted: str) -> list[str]:
    return [action for _, action, _ in calls if not wanted or action in wanted]


def station_for(network: MemoryNetwork, *, index: int = 1, **overrides: Any) -> Station:
    station = make_station(shipped_template(**overrides), network.connect(), index=index)
    station.configuration.set("WebSocketPingInterval", "0")
    station.configuration.set("MeterValueSampleInterval", "60")
    return station


async def test_local_transaction_authorizes_meters_and_stops(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    calls = record_calls(csms)
    station = station_for(network)
    with trio.fail_after(10 * HOUR):
        async with running(station, csms):
            assert await station.start_transaction(1, "TAG-1")
            connector = station.connectors[1]
            assert connector.status == "Charging"
            tx = connector.transaction
            assert tx is not None
            assert tx.transaction_id is not None
            await trio.sleep(630)
            assert await station.stop_transaction(1)
            await csms.wait_until(
                lambda: csms.stations[station.station_id].received["StopTransaction"] == 1
            )
            assert connector.status == "Available"
    sequence = actions(
        calls, "Authorize", "StartTransaction", "StopTransaction", "StatusNotification"
    )
    # After the boot statuses: Preparing, Authorize, Start, Charging, Stop, Finishing, Available.
    tail = sequence[len(station.connectors) :]
    assert tail == [
        "StatusNotification",
        "Authorize",
        "StartTransaction",
        "StatusNotification",
        "StopTransaction",
        "StatusNotification",
        "StatusNotification",
    ]
    statuses = [p["status"] for _, a, p in calls if a == "StatusNotification"]
    statuses = statuses[len(station.connectors) :]
    assert statuses == ["Preparing", "Charging", "Finishing", "Available"]
    samples = [p for _, a, p in calls if a == "MeterValues"]
    assert len(samples) == 10  # every 60 s for 630 s
    start = next(p for _, a, p in calls if a == "StartTransaction")
    stop = next(p for _, a, p in calls if a == "StopTransaction")
    assert stop["transactionId"] == tx.transaction_id
    assert stop["reason"] == "Local"
    assert stop["meterStop"] > start["meterStart"]
    assert all(p["transactionId"] == tx.transaction_id for p in samples)
    # Energy grows between samples and ends at meterStop.
    energies = [
        float(v["value"])
        for p in samples
        for v in p["meterValue"][0]["sampledValue"]
        if v.get("measurand", "Energy.Active.Import.Register") == "Energy.Active.Import.Register"
    ]
    assert energies == sorted(energies)
    assert energies[-1] <= stop["meterStop"]
    assert not csms.violations


async def test_rejected_id_tag_starts_nothing(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    calls = record_calls(csms)
    station = station_for(network)
    with trio.fail_after(HOUR):
        async with running(station, csms):
            assert not await station.start_transaction(1, "BAD-TAG")
            assert station.connectors[1].transaction is None
            assert station.connectors[1].status == "Available"
    assert "StartTransaction" not in actions(calls)


async def test_start_transaction_answered_invalid_is_stopped_deauthorized(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    calls = record_calls(csms)
    counter = iter(range(100, 200))

    def start(record: StationRecord, payload: dict[str, Any]) -> dict[str, Any]:
        return {"transactionId": next(counter), "idTagInfo": {"status": "Blocked"}}

    csms.handlers["StartTransaction"] = start
    calls = record_calls(csms)
    station = station_for(network)
    with trio.fail_after(HOUR):
        async with running(station, csms):
            # Authorize accepts it (LocalPreAuthorize off), StartTransaction says Blocked.
            await station.start_transaction(1, "TAG-1")
            await csms.wait_until(
                lambda: csms.stations[station.station_id].received["StopTransaction"] == 1
            )
    stop = next(p for _, a, p in calls if a == "StopTransaction")
    assert stop["reason"] == "DeAuthorized"
    assert stop["transactionId"] == 100


async def test_remote_start_and_remote_stop(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    calls = record_calls(csms)
    station = station_for(network)
    sid = station.station_id
    with trio.fail_after(HOUR):
        async with running(station, csms):
            start = {"connectorId": 2, "idTag": "TAG-2"}
            answer = await csms.call(sid, "RemoteStartTransaction", start)
            assert answer == {"status": "Accepted"}
            await station.connectors[2].wait_status("Charging")
            tx = station.connectors[2].transaction
            assert tx is not None
            assert tx.transaction_id is not None
            assert await csms.call(sid, "RemoteStopTransaction", {"transactionId": 999999}) == {
                "status": "Rejected"
            }
            assert await csms.call(
                sid, "RemoteStopTransaction", {"transactionId": tx.transaction_id}
            ) == {"status": "Accepted"}
            await station.connectors[2].wait_status("Available")
            # A busy connector (now free) and an unknown one.
            assert (
                await csms.call(sid, "RemoteStartTransaction", {"connectorId": 9, "idTag": "T"})
            )["status"] == "Rejected"
    stop = next(p for _, a, p in calls if a == "StopTransaction")
    assert stop["reason"] == "Remote"
    assert "Authorize" in actions(calls)  # AuthorizeRemoteTxRequests defaults to true


async def test_unlock_connector_stops_the_transaction(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    calls = record_calls(csms)
    station = station_for(network)
    sid = station.station_id
    with trio.fail_after(HOUR):
        async with running(station, csms):
            await station.start_transaction(1, "TAG-1")
            assert await csms.call(sid, "UnlockConnector", {"connectorId": 1}) == {
                "status": "Unlocked"
            }
            await station.connectors[1].wait_status("Available")
            assert station.connectors[1].transaction is None
            assert await csms.call(sid, "UnlockConnector", {"connectorId": 7}) == {
                "status": "NotSupported"
            }
            await csms.wait_until(lambda: csms.stations[sid].received["StopTransaction"] == 1)
    stop = next(p for _, a, p in calls if a == "StopTransaction")
    assert stop["reason"] == "UnlockCommand"


@pytest.mark.parametrize(("kind", "reason"), [("Soft", "SoftReset"), ("Hard", "HardReset")])
async def test_reset_stops_transactions_and_boots_again_after_reset_time(
    autojump_clock: trio.testing.MockClock,
    csms_network: tuple[EmbeddedCsms, MemoryNetwork],
    kind: str,
    reason: str,
) -> None:
    csms, network = csms_network
    calls = record_calls(csms)
    station = station_for(network, reset_time=45)
    sid = station.station_id
    with trio.fail_after(HOUR):
        async with running(station, csms):
            await station.start_transaction(1, "TAG-1")
            assert await csms.call(sid, "Reset", {"type": kind}) == {"status": "Accepted"}
            await csms.wait_until(lambda: csms.stations[sid].boot_count == 2)
            await wait_state(station, StationState.BOOTED)
    boots = [t for t, a, _ in calls if a == "BootNotification"]
    stop_time, stop = next((t, p) for t, a, p in calls if a == "StopTransaction")
    assert stop["reason"] == reason
    assert boots[1] - stop_time == pytest.approx(45, abs=1.5)
    assert station.connectors[1].transaction is None


async def test_change_availability_accepted_or_scheduled(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    station = station_for(network)
    sid = station.station_id
    with trio.fail_after(HOUR):
        async with running(station, csms):
            await station.start_transaction(1, "TAG-1")
            answer = await csms.call(
                sid, "ChangeAvailability", {"connectorId": 2, "type": "Inoperative"}
            )
            assert answer == {"status": "Accepted"}
            await station.connectors[2].wait_status("Unavailable")
            answer = await csms.call(
                sid, "ChangeAvailability", {"connectorId": 1, "type": "Inoperative"}
            )
            assert answer == {"status": "Scheduled"}
            assert station.connectors[1].status == "Charging"
            await station.stop_transaction(1)
            assert station.connectors[1].status == "Unavailable"
            assert not await station.start_transaction(1, "TAG-1")
            answer = await csms.call(
                sid, "ChangeAvailability", {"connectorId": 0, "type": "Operative"}
            )
            assert answer == {"status": "Accepted"}
            await station.connectors[1].wait_status("Available")
            await station.connectors[2].wait_status("Available")
            assert (
                await csms.call(sid, "ChangeAvailability", {"connectorId": 5, "type": "Operative"})
            )["status"] == "Rejected"
            await csms.wait_until(lambda: csms.stations[sid].connector_status.get(1) == "Available")


@pytest.mark.parametrize(
    "requested",
    [
        "BootNotification",
        "Heartbeat",
        "StatusNotification",
        "MeterValues",
        "DiagnosticsStatusNotification",
        "FirmwareStatusNotification",
    ],
)
async def test_trigger_message_sends_the_requested_message(
    autojump_clock: trio.testing.MockClock,
    csms_network: tuple[EmbeddedCsms, MemoryNetwork],
    requested: str,
) -> None:
    csms, network = csms_network
    station = station_for(network)
    sid = station.station_id
    with trio.fail_after(HOUR):
        async with running(station, csms):
            await trio.sleep(1)
            before = csms.stations[sid].received[requested]
            payload: dict[str, Any] = {"requestedMessage": requested}
            if requested in ("StatusNotification", "MeterValues"):
                payload["connectorId"] = 1
            assert await csms.call(sid, "TriggerMessage", payload) == {"status": "Accepted"}
            await csms.wait_until(lambda: csms.stations[sid].received[requested] == before + 1)
            bad = {"requestedMessage": requested, "connectorId": 9}
            assert (await csms.call(sid, "TriggerMessage", bad))["status"] == "Rejected"


async def test_offline_queue_delivers_every_transaction_message_once_in_order(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    calls = record_calls(csms)
    # Per station and connector, in arrival order: (action, transaction id).
    flows: dict[tuple[str, int], list[tuple[str, int]]] = {}
    keys: dict[int, tuple[str, int]] = {}
    for action in ("StartTransaction", "MeterValues", "StopTransaction"):
        inner = csms.handlers[action]

        async def flow(
            record: StationRecord, payload: dict[str, Any], inner: Any = inner, action: str = action
        ) -> Any:
            answer = inner(record, payload)
            if hasattr(answer, "__await__"):
                answer = await answer
            if action == "StartTransaction":
                tx_id = answer["transactionId"]
                key = (record.station_id, payload["connectorId"])
                keys[tx_id] = key
            else:
                tx_id = payload.get("transactionId")
                key = keys[tx_id]  # StopTransaction names the transaction, not the connector
            flows.setdefault(key, []).append((action, tx_id))
            return answer

        csms.handlers[action] = flow
    stations = [station_for(network), station_for(network, index=2)]
    with trio.fail_after(10 * HOUR):
        async with trio.open_nursery() as nursery:
            for s in stations:
                nursery.start_soon(s.run)
            for s in stations:
                await wait_state(s, StationState.BOOTED)
            # 20 sessions: 2 stations x 2 connectors x 5 rounds, with a 10 min outage in the middle.
            for round_ in range(5):
                for s in stations:
                    for cid in (1, 2):
                        await s.start_transaction(cid, f"TAG-{cid}")
                if round_ == 2:
                    csms.accepting = False
                    for s in stations:
                        await csms.disconnect(s.station_id)
                    await trio.sleep(600)
                    csms.accepting = True
                await trio.sleep(300)
                for s in stations:
                    for cid in (1, 2):
                        await s.stop_transaction(cid)
            for s in stations:
                await csms.wait_until(lambda s=s: len(s.queue) == 0 and s.is_online())
            for s in stations:
                s.stop()
    starts = [p for _, a, p in calls if a == "StartTransaction"]
    stops = [p for _, a, p in calls if a == "StopTransaction"]
    assert len(starts) == 20
    assert len(stops) == 20
    # Exactly once: every transaction id stopped once; MeterValues carry known ids, in order per tx.
    assert len({p["transactionId"] for p in stops}) == 20
    meter_tx = [p.get("transactionId") for _, a, p in calls if a == "MeterValues"]
    assert None not in meter_tx
    assert set(meter_tx) <= {p["transactionId"] for p in stops}
    # In order per connector: Start, its MeterValues, its Stop; then the next transaction.
    assert len(flows) == 4
    for flow_ in flows.values():
        current = None
        for action, tx_id in flow_:
            if action == "StartTransaction":
                assert current is None
                current = tx_id
            else:
                assert tx_id == current
                if action == "StopTransaction":
                    current = None
        assert current is None
    assert not csms.violations


async def test_transaction_messages_are_retried_after_callerror(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    attempts: list[float] = []
    default_stop = csms.handlers["StopTransaction"]

    def flaky_stop(record: StationRecord, payload: dict[str, Any]) -> Any:
        attempts.append(trio.current_time())
        if len(attempts) < 3:
            raise GenericError("try again")
        return default_stop(record, payload)

    csms.handlers["StopTransaction"] = flaky_stop
    station = station_for(network)
    station.configuration.set("TransactionMessageRetryInterval", "20")
    with trio.fail_after(HOUR):
        async with running(station, csms):
            await station.start_transaction(1, "TAG-1")
            await station.stop_transaction(1)
            await csms.wait_until(lambda: len(attempts) == 3)
            await trio.sleep(1)
            assert len(station.queue) == 0
    # Waits of RetryInterval x attempts so far: 20 s, then 40 s.
    assert [b - a for a, b in itertools.pairwise(attempts)] == pytest.approx([20, 40], abs=0.01)


async def test_station_state_survives_a_restart(
    autojump_clock: trio.testing.MockClock,
    csms_network: tuple[EmbeddedCsms, MemoryNetwork],
    tmp_path: Path,
) -> None:
    csms, network = csms_network
    path = tmp_path / "station.toml"
    station = make_station(shipped_template(), network.connect(), state_path=path)
    with trio.fail_after(HOUR):
        async with running(station, csms):
            answer = await csms.call(
                station.station_id,
                "ChangeConfiguration",
                {"key": "MeterValueSampleInterval", "value": "30"},
            )
            assert answer == {"status": "Accepted"}
            await station.start_transaction(1, "TAG-1")
            await trio.sleep(120)
    state = load_state(path)
    assert state is not None
    again = make_station(shipped_template(), network.connect(), state_path=path, state=state)
    assert again.configuration.get("MeterValueSampleInterval") == "30"
    tx = again.connectors[1].transaction
    assert tx is not None
    assert tx.transaction_id is not None
    assert again.meters[1].energy_register_wh >= station.meters[1].energy_register_wh - 1
    with trio.fail_after(HOUR):
        async with running(again, csms):
            assert again.connectors[1].status == "Charging"
            await again.stop_transaction(1)
            await csms.wait_until(
                lambda: csms.stations[again.station_id].received["StopTransaction"] == 1
            )


@pytest.mark.parametrize(("must_authorize", "authorizes"), [(True, 2), (False, 1)])
async def test_must_authorize_at_remote_start_bypasses_local_pre_authorization(
    autojump_clock: trio.testing.MockClock,
    csms_network: tuple[EmbeddedCsms, MemoryNetwork],
    must_authorize: bool,
    authorizes: int,
) -> None:
    csms, network = csms_network
    calls = record_calls(csms)
    station = station_for(network, must_authorize_at_remote_start=must_authorize)
    station.configuration.set("LocalPreAuthorize", "true")
    sid = station.station_id
    with trio.fail_after(HOUR):
        async with running(station, csms):
            # A local start caches TAG-1 (Authorize #1); LocalPreAuthorize could then skip it.
            assert await station.start_transaction(1, "TAG-1")
            await station.stop_transaction(1)
            start = {"connectorId": 1, "idTag": "TAG-1"}
            assert await csms.call(sid, "RemoteStartTransaction", start) == {"status": "Accepted"}
            await station.connectors[1].wait_status("Charging")
    assert actions(calls, "Authorize") == ["Authorize"] * authorizes


def raw_csms(start_answers: list[str], log: list[tuple[float, str]]) -> Any:
    """A CSMS of a few lines answering StartTransaction from `start_answers` in turn:
    "invalid" (a payload that breaks the schema), "error" (a CALLERROR), "none" (no answer),
    "ok" (a valid answer)."""

    async def serve(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept(subprotocol="ocpp1.6")
        answers = iter(start_answers)
        while True:
            try:
                frame = json.loads(await ws.get_message())
            except trio_websocket.ConnectionClosed:
                return
            if frame[0] != 2:
                continue
            unique_id, action = frame[1], frame[2]
            log.append((trio.current_time(), action))
            now = "2026-01-01T00:00:00Z"
            reply: Any = [3, unique_id, {}]
            if action == "BootNotification":
                reply = [3, unique_id, {"status": "Accepted", "interval": 600, "currentTime": now}]
            elif action in ("Authorize", "StopTransaction"):
                reply = [3, unique_id, {"idTagInfo": {"status": "Accepted"}}]
            elif action == "Heartbeat":
                reply = [3, unique_id, {"currentTime": now}]
            elif action == "StartTransaction":
                kind = next(answers, "ok")
                if kind == "none":
                    continue
                if kind == "error":
                    reply = [4, unique_id, "InternalError", "try later", {}]
                elif kind == "invalid":
                    reply = [3, unique_id, {"transactionId": "seven"}]
                else:
                    reply = [
                        3,
                        unique_id,
                        {"transactionId": 7, "idTagInfo": {"status": "Accepted"}},
                    ]
            await ws.send_message(json.dumps(reply))

    return serve


@pytest.mark.parametrize(
    ("answers", "waits"),
    [
        (["invalid", "ok"], [20]),
        (["error", "invalid", "ok"], [20, 40]),
        # No answer: the call times out after call_timeout (30 s), then the retry waits 20 s.
        (["none", "ok"], [30 + 20]),
    ],
    ids=["invalid-payload", "callerror-then-invalid", "never-answered"],
)
async def test_bad_start_transaction_answers_are_retried_and_the_station_stays_up(
    autojump_clock: trio.testing.MockClock,
    nursery: trio.Nursery,
    answers: list[str],
    waits: list[float],
) -> None:
    log: list[tuple[float, str]] = []
    network = MemoryNetwork(nursery, raw_csms(answers, log))
    station = station_for(network, call_timeout=30.0)
    station.configuration.set("TransactionMessageRetryInterval", "20")
    station.configuration.set("MeterValueSampleInterval", "0")
    nursery.start_soon(station.run)
    with trio.fail_after(HOUR):
        await wait_state(station, StationState.BOOTED)
        assert await station.start_transaction(1, "TAG-1")
        tx = station.connectors[1].transaction
        assert tx is not None
        await wait_station(station, lambda: tx.transaction_id is not None)
        assert tx.transaction_id == 7
        assert await station.stop_transaction(1)
        await wait_station(station, lambda: len(station.queue) == 0)
    starts = [t for t, action in log if action == "StartTransaction"]
    assert len(starts) == len(answers)
    assert [b - a for a, b in itertools.pairwise(starts)] == pytest.approx(waits, abs=0.01)
    assert station.state is StationState.BOOTED  # up and connected all along
    assert len(network.attempts) == 1
    assert [a for _, a in log].count("StopTransaction") == 1
    station.stop()
