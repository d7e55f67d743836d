"""The UI procedures against a running fleet and its embedded CSMS, over WebSocket and HTTP.

Every procedure test runs twice, over the SRPC WebSocket protocol and over its HTTP twin
(`transport` parameter), and checks the effect on the stations or the CSMS, not only the
response. Bad input over WebSocket, the refresh push and a request burst follow; the frame
checks themselves are tested sans-I/O at the end.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio_websocket
from uiclient import Json, Ui, open_ui, open_ws

from evsim_trio.csms import EmbeddedCsms
from evsim_trio.station import StationState, WsState
from evsim_trio.ui import (
    MAX_PAYLOAD_BYTES,
    PayloadValidator,
    RequestError,
    TokenBucket,
    parse_frame,
)

pytestmark = pytest.mark.integration

Rpc = Callable[..., Awaitable[Json]]
UUID = "0b9f4c52-6f1e-4a57-9a3c-2f1d2e8c9a10"


@pytest.fixture
async def ui(tmp_path: Path) -> AsyncIterator[Ui]:
    async with open_ui(tmp_path) as running:
        yield running


@pytest.fixture(params=["websocket", "http"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def rpc_over(ui: Ui, transport: str) -> AsyncIterator[Rpc]:
    """A `call(procedure, payload)` over the transport; HTTP status must match the outcome."""
    if transport == "http":

        async def call(procedure: str, payload: Json | None = None) -> Json:
            response = await ui.post(procedure, payload)
            body: Json = response.json()
            assert response.status == (200 if body["status"] == "success" else 400), body
            return body

        yield call
    else:
        async with open_ws(ui.url) as client:
            yield client.request


@pytest.fixture
async def rpc(ui: Ui, transport: str) -> AsyncIterator[Rpc]:
    async with rpc_over(ui, transport) as call:
        yield call


def received(ui: Ui, action: str) -> int:
    return sum(record.received[action] for record in ui.csms.stations.values())


# -- fleet procedures ------------------------------------------------------------------------


async def test_simulator_state_counts_stations_per_template(ui: Ui, rpc: Rpc) -> None:
    with trio.fail_after(10):
        response = await rpc("simulatorState")
    assert response["status"] == "success"
    state = response["state"]
    assert state["started"] is True
    assert state["templateStatistics"]["ac-1phase"] == {
        "configured": 2,
        "added": 2,
        "started": 2,
        "indexes": [1, 2],
    }


async def test_stop_simulator_stops_every_station_and_start_boots_them_again(
    ui: Ui, rpc: Rpc
) -> None:
    with trio.fail_after(20):
        assert (await rpc("stopSimulator"))["status"] == "success"
        assert all(s.state is StationState.STOPPED for s in ui.stations)
        await ui.wait_csms(lambda: not any(r.connected for r in ui.csms.stations.values()))
        assert (await rpc("simulatorState"))["state"]["started"] is False
        assert (await rpc("startSimulator"))["status"] == "success"
        await ui.wait_csms(lambda: all(r.boot_count == 2 for r in ui.csms.stations.values()))
        assert (await rpc("simulatorState"))["state"]["started"] is True


async def test_list_templates_names_site_and_shipped_templates(ui: Ui, rpc: Rpc) -> None:
    with trio.fail_after(10):
        response = await rpc("listTemplates")
    assert response["status"] == "success"
    assert {"ac-1phase", "ac-3phase-2conn", "dc-fast"} <= set(response["templates"])


async def test_list_charging_stations_has_the_fields_ui_clients_read(ui: Ui, rpc: Rpc) -> None:
    with trio.fail_after(10):
        response = await rpc("listChargingStations")
    assert response["status"] == "success"
    stations = response["chargingStations"]
    assert [s["stationInfo"]["hashId"] for s in stations] == ui.hash_ids()
    data = stations[0]
    station = ui.stations[0]
    assert data["started"] is True
    assert data["wsState"] == 1
    assert data["supervisionUrl"] == station.supervision_url
    assert isinstance(data["timestamp"], int)
    assert data["bootNotificationResponse"]["status"] == "Accepted"
    info = data["stationInfo"]
    assert info["chargingStationId"] == station.station_id == "AC7-00001"
    assert info["templateName"] == "ac-1phase"
    assert info["templateIndex"] == 1
    assert info["chargePointVendor"] == "evsim-trio"
    assert info["chargePointModel"] == "AC7-1C"
    assert info["firmwareVersion"] == "2.0.1"
    assert info["ocppVersion"] == "1.6"
    assert info["chargePointSerialNumber"] == station.identity.charge_point_serial_number
    assert info["chargeBoxSerialNumber"] == station.identity.charge_box_serial_number
    assert info["maximumPower"] == 7400
    [connector] = data["connectors"]
    assert connector["connectorId"] == 1
    assert connector["connectorStatus"] == {
        "availability": "Operative",
        "bootStatus": "Available",
        "status": "Available",
        "errorCode": "NoError",
        "transactionStarted": False,
        "transactionId": None,
        "transactionIdTag": None,
        "energyActiveImportRegisterValue": 0.0,
        "transactionEnergyActiveImportRegisterValue": 0.0,
        "locked": False,
        "powerActiveImport": 0.0,
        "socPercent": connector["connectorStatus"]["socPercent"],
    }
    keys = {k["key"]: k for k in data["ocppConfiguration"]["configurationKey"]}
    assert keys["HeartbeatInterval"]["value"] == station.configuration.get("HeartbeatInterval")
    atg = data["automaticTransactionGenerator"]
    assert atg["automaticTransactionGenerator"]["enable"] is False
    assert atg["automaticTransactionGeneratorStatuses"][0]["connectorId"] == 1
    assert atg["automaticTransactionGeneratorStatuses"][0]["start"] is False
    json.dumps(response)  # all of it is JSON


async def test_add_charging_stations_continues_the_indexes_and_boots_them(ui: Ui, rpc: Rpc) -> None:
    with trio.fail_after(15):
        response = await rpc(
            "addChargingStations", {"template": "ac-1phase", "numberOfStations": 2}
        )
        assert response["status"] == "success", response
        assert response["chargingStationIds"] == ["AC7-00003", "AC7-00004"]
        assert len(ui.stations) == 4
        await ui.wait_csms(
            lambda: all(
                ui.csms.stations.get(sid) is not None
                and ui.csms.stations[sid].registration == "Accepted"
                for sid in ("AC7-00003", "AC7-00004")
            )
        )
        listed = await rpc("listChargingStations")
    assert set(response["hashIdsSucceeded"]) <= {
        s["stationInfo"]["hashId"] for s in listed["chargingStations"]
    }


async def test_add_charging_stations_from_an_unknown_template_fails(ui: Ui, rpc: Rpc) -> None:
    with trio.fail_after(10):
        response = await rpc("addChargingStations", {"template": "nope", "numberOfStations": 1})
    assert response["status"] == "failure"
    assert "nope" in response["error"]
    assert len(ui.stations) == 2


async def test_add_charging_stations_without_auto_start_leaves_them_stopped(
    ui: Ui, rpc: Rpc
) -> None:
    with trio.fail_after(10):
        response = await rpc(
            "addChargingStations",
            {"template": "dc-fast", "numberOfStations": 1, "options": {"autoStart": False}},
        )
        assert response["status"] == "success", response
        [added] = [s for s in ui.stations if s.hash_id in response["hashIdsSucceeded"]]
        assert added.started is False
        started = await rpc("startChargingStation", {"hashIds": [added.hash_id]})
        assert started["status"] == "success"
        await ui.wait_csms(
            lambda: (
                getattr(ui.csms.stations.get(added.station_id), "registration", None) == "Accepted"
            )
        )


async def test_add_charging_stations_with_options(ui: Ui, rpc: Rpc) -> None:
    with trio.fail_after(15):
        response = await rpc(
            "addChargingStations",
            {
                "template": "ac-3phase-2conn.toml",
                "numberOfStations": 1,
                "options": {
                    "baseName": "UI",
                    "supervisionUrls": [ui.csms.url + "/site-b"],
                    "ocppStrictCompliance": True,
                    "persistentConfiguration": False,
                },
            },
        )
        assert response["status"] == "success", response
        assert response["chargingStationIds"] == ["UI-00001"]
        [added] = [s for s in ui.stations if s.station_id == "UI-00001"]
        assert added.supervision_url == ui.csms.url + "/site-b"
        assert added.template.ocpp_strict_compliance is True
        assert added.template.ocpp_persistent_configuration is False
        assert added.template.station_info_persistent_configuration is False
        await ui.wait_csms(
            lambda: getattr(ui.csms.stations.get("UI-00001"), "registration", None) == "Accepted"
        )
        again = await rpc(
            "addChargingStations",
            {"template": "ac-3phase-2conn", "numberOfStations": 1, "options": {"baseName": "UI"}},
        )
    assert again["chargingStationIds"] == ["UI-00002"]


async def test_delete_charging_stations_stops_and_removes_them(ui: Ui, rpc: Rpc) -> None:
    doomed = ui.stations[0]
    with trio.fail_after(10):
        response = await rpc("deleteChargingStations", {"hashIds": [doomed.hash_id]})
        assert response == {"status": "success", "hashIdsSucceeded": [doomed.hash_id]}
        await ui.wait_csms(lambda: not ui.csms.stations[doomed.station_id].connected)
        listed = await rpc("listChargingStations")
    assert doomed not in ui.stations
    assert [s["stationInfo"]["hashId"] for s in listed["chargingStations"]] == ui.hash_ids()


async def test_set_supervision_url_takes_effect_at_the_next_connection(ui: Ui, rpc: Rpc) -> None:
    other = EmbeddedCsms()
    station = ui.stations[0]
    with trio.fail_after(15):
        await ui.nursery.start(other.serve, "127.0.0.1", 0)
        hash_ids = {"hashIds": [station.hash_id]}
        response = await rpc("setSupervisionUrl", {**hash_ids, "url": other.url})
        assert response["status"] == "success"
        assert station.supervision_url == other.url
        assert station.station_id not in other.stations  # not before the next connection
        assert (await rpc("closeConnection", hash_ids))["status"] == "success"
        await ui.wait_csms(lambda: not ui.csms.stations[station.station_id].connected)
        assert (await rpc("openConnection", hash_ids))["status"] == "success"
        await other.wait_until(
            lambda: getattr(other.stations.get(station.station_id), "connected", False)
        )


async def test_change_configuration_sets_the_key_or_names_the_refusal(ui: Ui, rpc: Rpc) -> None:
    with trio.fail_after(10):
        response = await rpc(
            "changeConfiguration", {"key": "MeterValueSampleInterval", "value": "15"}
        )
        assert response["status"] == "success", response
        assert all(s.configuration.get("MeterValueSampleInterval") == "15" for s in ui.stations)
        refused = await rpc("changeConfiguration", {"key": "NoSuchKey", "value": "1"})
    assert refused["status"] == "failure"
    assert refused["hashIdsFailed"] == ui.hash_ids()
    assert "NotSupported" in refused["responsesFailed"][0]["errorMessage"]


async def test_performance_statistics_reports_each_station_link(ui: Ui, rpc: Rpc) -> None:
    with trio.fail_after(10):
        response = await rpc("performanceStatistics")
    assert response["status"] == "success"
    stats = {entry["hashId"]: entry for entry in response["performanceStatistics"]}
    assert set(stats) == set(ui.hash_ids())
    first = stats[ui.stations[0].hash_id]
    assert first["id"] == "AC7-00001"
    assert first["statisticsData"]["callsSent"] >= 2  # BootNotification, StatusNotification


# -- station life ----------------------------------------------------------------------------


async def test_stop_charging_station_closes_it_and_start_boots_it_again(ui: Ui, rpc: Rpc) -> None:
    station = ui.stations[1]
    record = ui.csms.stations[station.station_id]
    hash_ids = {"hashIds": [station.hash_id]}
    with trio.fail_after(15):
        assert (await rpc("stopChargingStation", hash_ids))["status"] == "success"
        assert station.state is StationState.STOPPED
        await ui.wait_csms(lambda: not record.connected)
        assert ui.stations[0].state is StationState.BOOTED  # the other one is untouched
        assert (await rpc("startChargingStation", hash_ids))["status"] == "success"
        await ui.wait_csms(lambda: record.connected and record.boot_count == 2)


async def test_close_connection_closes_the_socket_until_open_connection(ui: Ui, rpc: Rpc) -> None:
    station = ui.stations[0]
    record = ui.csms.stations[station.station_id]
    hash_ids = {"hashIds": [station.hash_id]}
    with trio.fail_after(15):
        assert (await rpc("closeConnection", hash_ids))["status"] == "success"
        await ui.wait_csms(lambda: not record.connected)
        await ui.wait_fleet(lambda: station.ws_state is WsState.CLOSED)
        listed = await rpc("listChargingStations")
        assert listed["chargingStations"][0]["wsState"] == 3
        assert listed["chargingStations"][0]["started"] is True
        assert record.connections == 1
        assert (await rpc("openConnection", hash_ids))["status"] == "success"
        await ui.wait_csms(lambda: record.connected and record.connections == 2)
        await ui.wait_fleet(lambda: station.ws_state is WsState.OPEN)


async def test_heartbeat_fails_on_a_closed_station_and_names_it(ui: Ui, rpc: Rpc) -> None:
    closed, online = ui.stations
    with trio.fail_after(15):
        await rpc("closeConnection", {"hashIds": [closed.hash_id]})
        await ui.wait_fleet(lambda: closed.ws_state is WsState.CLOSED)
        response = await rpc("heartbeat")
    assert response["status"] == "failure"
    assert response["hashIdsSucceeded"] == [online.hash_id]
    assert response["hashIdsFailed"] == [closed.hash_id]
    [failed] = response["responsesFailed"]
    assert failed["hashId"] == closed.hash_id
    assert "not connected" in failed["errorMessage"]


async def test_unknown_hash_ids_fail_naming_them_and_touch_nothing(ui: Ui, rpc: Rpc) -> None:
    before = received(ui, "Heartbeat")
    with trio.fail_after(10):
        response = await rpc("heartbeat", {"hashIds": [ui.hash_ids()[0], "feedbeef"]})
    assert response["status"] == "failure"
    assert response["hashIdsFailed"] == ["feedbeef"]
    assert "feedbeef" in response["error"]
    assert received(ui, "Heartbeat") == before


# -- charging --------------------------------------------------------------------------------


async def test_start_and_stop_the_automatic_transaction_generator(ui: Ui, rpc: Rpc) -> None:
    station = ui.stations[0]
    hash_ids = {"hashIds": [station.hash_id]}
    with trio.fail_after(10):
        started = await rpc("startAutomaticTransactionGenerator", hash_ids)
        assert started["status"] == "success", started
        assert station.atg.running == {1}
        listed = await rpc("listChargingStations")
        statuses = listed["chargingStations"][0]["automaticTransactionGenerator"][
            "automaticTransactionGeneratorStatuses"
        ]
        assert statuses[0]["start"] is True
        stopped = await rpc("stopAutomaticTransactionGenerator", {**hash_ids, "connectorIds": [1]})
        assert stopped["status"] == "success", stopped
        assert station.atg.running == frozenset()
        assert ui.stations[1].atg.running == frozenset()
        unknown = await rpc("startAutomaticTransactionGenerator", {"connectorIds": [9]})
    assert unknown["status"] == "failure"
    assert unknown["hashIdsFailed"] == ui.hash_ids()


async def test_lock_and_unlock_connector(ui: Ui, rpc: Rpc) -> None:
    with trio.fail_after(10):
        assert (await rpc("lockConnector", {"connectorId": 1}))["status"] == "success"
        assert all(s.connectors[1].locked for s in ui.stations)
        listed = await rpc("listChargingStations")
        assert listed["chargingStations"][0]["connectors"][0]["connectorStatus"]["locked"]
        assert (await rpc("unlockConnector", {"connectorId": 1}))["status"] == "success"
        assert not any(s.connectors[1].locked for s in ui.stations)
        missing = await rpc("lockConnector", {"connectorId": 7})
    assert missing["status"] == "failure"
    assert "no connector 7" in missing["responsesFailed"][0]["errorMessage"]


async def test_start_transaction_charges_and_stop_transaction_ends_it(ui: Ui, rpc: Rpc) -> None:
    station = ui.stations[0]
    record = ui.csms.stations[station.station_id]
    with trio.fail_after(15):
        response = await rpc(
            "startTransaction",
            {"hashIds": [station.hash_id], "connectorId": 1, "idTag": "TAG-0001"},
        )
        assert response["status"] == "success", response
        await ui.wait_csms(lambda: record.connector_status.get(1) == "Charging")
        assert len(record.transactions) == 1
        listed = await rpc("listChargingStations")
        status = listed["chargingStations"][0]["connectors"][0]["connectorStatus"]
        assert status["transactionStarted"] is True
        assert status["transactionIdTag"] == "TAG-0001"
        transaction_id = status["transactionId"]
        assert transaction_id in record.transactions
        stopped = await rpc("stopTransaction", {"transactionId": transaction_id})
        assert stopped == {"status": "success", "hashIdsSucceeded": [station.hash_id]}
        await ui.wait_csms(lambda: record.connector_status.get(1) == "Available")
        assert record.received["StopTransaction"] == 1
        assert record.transactions == {}
        again = await rpc("stopTransaction", {"transactionId": transaction_id})
    assert again["status"] == "failure"
    assert str(transaction_id) in again["error"]


async def test_start_transaction_with_a_rejected_id_tag_fails(ui: Ui, rpc: Rpc) -> None:
    station = ui.stations[0]
    with trio.fail_after(15):
        response = await rpc(
            "startTransaction", {"hashIds": [station.hash_id], "connectorId": 1, "idTag": "BAD-TAG"}
        )
    assert response["status"] == "failure"
    assert response["hashIdsFailed"] == [station.hash_id]
    assert station.connectors[1].transaction is None


async def test_authorize_reports_accepted_and_rejected_tags(ui: Ui, rpc: Rpc) -> None:
    with trio.fail_after(10):
        accepted = await rpc("authorize", {"idTag": "TAG-0002"})
        assert accepted == {"status": "success", "hashIdsSucceeded": ui.hash_ids()}
        assert received(ui, "Authorize") == 2
        rejected = await rpc("authorize", {"hashIds": ui.hash_ids()[:1], "idTag": "BAD-0001"})
    assert rejected["status"] == "failure"
    assert rejected["responsesFailed"][0]["commandResponse"] == {"idTagInfo": {"status": "Invalid"}}


# -- OCPP messages sent on request -----------------------------------------------------------


async def test_boot_notification_is_sent_and_its_answer_recorded(ui: Ui, rpc: Rpc) -> None:
    with trio.fail_after(10):
        response = await rpc("bootNotification")
    assert response["status"] == "success"
    assert all(r.boot_count == 2 for r in ui.csms.stations.values())
    assert all(s.registration == "Accepted" for s in ui.stations)


async def test_boot_notification_rejected_by_the_csms_is_a_failure(ui: Ui, rpc: Rpc) -> None:
    ui.csms.handlers["BootNotification"] = lambda record, payload: {
        "status": "Pending",
        "currentTime": "2026-01-01T00:00:00Z",
        "interval": 300,
    }
    with trio.fail_after(10):
        response = await rpc("bootNotification", {"hashIds": ui.hash_ids()[:1]})
    assert response["status"] == "failure"
    assert response["responsesFailed"][0]["commandResponse"]["status"] == "Pending"


async def test_heartbeat_reaches_the_csms_from_each_station(ui: Ui, rpc: Rpc) -> None:
    before = {sid: r.heartbeats for sid, r in ui.csms.stations.items()}
    with trio.fail_after(10):
        response = await rpc("heartbeat")
    assert response == {"status": "success", "hashIdsSucceeded": ui.hash_ids()}
    assert {sid: r.heartbeats for sid, r in ui.csms.stations.items()} == {
        sid: count + 1 for sid, count in before.items()
    }


async def test_heartbeat_for_some_hash_ids_only_reaches_those(ui: Ui, rpc: Rpc) -> None:
    first, second = ui.stations
    with trio.fail_after(10):
        response = await rpc("heartbeat", {"hashIds": [second.hash_id]})
    assert response == {"status": "success", "hashIdsSucceeded": [second.hash_id]}
    assert ui.csms.stations[first.station_id].heartbeats == 0
    assert ui.csms.stations[second.station_id].heartbeats == 1


async def test_status_notification_sets_and_sends_the_status(ui: Ui, rpc: Rpc) -> None:
    with trio.fail_after(10):
        response = await rpc(
            "statusNotification",
            {"connectorId": 1, "status": "Unavailable", "errorCode": "NoError"},
        )
    assert response["status"] == "success", response
    assert all(r.connector_status[1] == "Unavailable" for r in ui.csms.stations.values())
    assert all(s.connectors[1].status == "Unavailable" for s in ui.stations)


async def test_meter_values_are_sent_for_the_connector(ui: Ui, rpc: Rpc) -> None:
    with trio.fail_after(10):
        response = await rpc("meterValues", {"connectorId": 1})
    assert response["status"] == "success", response
    assert received(ui, "MeterValues") == 2
    assert ui.csms.violations == []


async def test_data_transfer_reports_the_csms_answer(ui: Ui, rpc: Rpc) -> None:
    with trio.fail_after(10):
        response = await rpc("dataTransfer", {"messageId": "ping", "data": "hello"})
        assert response["status"] == "success", response
        assert received(ui, "DataTransfer") == 2
        record = ui.csms.stations[ui.stations[0].station_id]
        assert record.last_payload["DataTransfer"] == {
            "vendorId": "evsim-trio",
            "messageId": "ping",
            "data": "hello",
        }
        ui.csms.handlers["DataTransfer"] = lambda record, payload: {"status": "UnknownVendorId"}
        refused = await rpc("dataTransfer", {"vendorId": "acme"})
    assert refused["status"] == "failure"
    assert refused["responsesFailed"][0]["commandResponse"] == {"status": "UnknownVendorId"}


@pytest.mark.parametrize(
    ("procedure", "action", "status"),
    [
        ("diagnosticsStatusNotification", "DiagnosticsStatusNotification", "Uploading"),
        ("firmwareStatusNotification", "FirmwareStatusNotification", "Downloading"),
    ],
)
async def test_status_notifications_of_firmware_and_diagnostics_reach_the_csms(
    ui: Ui, rpc: Rpc, procedure: str, action: str, status: str
) -> None:
    with trio.fail_after(10):
        response = await rpc(procedure, {"status": status})
    assert response["status"] == "success", response
    assert received(ui, action) == 2
    record = ui.csms.stations[ui.stations[0].station_id]
    assert record.last_payload[action] == {"status": status}


# -- WebSocket specifics: bad input never drops the connection -------------------------------


BAD_FRAMES = [
    pytest.param("not json", None, "not valid JSON", id="not-json"),
    pytest.param('{"a": 1}', None, "JSON array", id="not-an-array"),
    pytest.param(f'["{UUID}", "heartbeat"]', UUID, "array of 2", id="arity-2"),
    pytest.param(f'["{UUID}", "heartbeat", {{}}, 1]', UUID, "array of 4", id="arity-4"),
    pytest.param("[]", None, "array of 0", id="empty-array"),
    pytest.param('["abc", "heartbeat", {}]', "abc", "UUID", id="id-not-a-uuid"),
    pytest.param('[42, "heartbeat", {}]', None, "UUID", id="id-not-a-string"),
    pytest.param(f'["{UUID}", 7, {{}}]', UUID, "procedure name", id="procedure-not-a-string"),
    pytest.param(f'["{UUID}", "noSuchThing", {{}}]', UUID, "unknown procedure", id="unknown"),
    pytest.param(f'["{UUID}", "heartbeat", []]', UUID, "JSON object", id="payload-array"),
    pytest.param(
        f'["{UUID}", "startTransaction", {{"connectorId": "one", "idTag": "T"}}]',
        UUID,
        "invalid payload",
        id="payload-type",
    ),
    pytest.param(
        f'["{UUID}", "startTransaction", {{"connectorId": 1}}]',
        UUID,
        "idTag",
        id="payload-missing-field",
    ),
    pytest.param(
        f'["{UUID}", "heartbeat", {{"hashIds": "all"}}]', UUID, "invalid payload", id="hashids"
    ),
]


@pytest.mark.parametrize(("frame", "echoed", "error"), BAD_FRAMES)
async def test_bad_frames_get_a_failure_and_the_connection_stays(
    ui: Ui, frame: str, echoed: str | None, error: str
) -> None:
    with trio.fail_after(10):
        async with open_ws(ui.url) as client:
            await client.ws.send_message(frame)
            request_id, payload = await client.frame()
            assert request_id == echoed
            assert payload["status"] == "failure"
            assert error in payload["error"]
            assert (await client.request("simulatorState"))["status"] == "success"


async def test_a_binary_frame_with_a_valid_request_is_served(ui: Ui) -> None:
    with trio.fail_after(10):
        async with open_ws(ui.url) as client:
            await client.ws.send_message(json.dumps([UUID, "simulatorState", {}]).encode())
            request_id, payload = await client.frame()
    assert request_id == UUID
    assert payload["status"] == "success"


async def test_a_request_over_1_mib_is_refused_and_the_connection_stays(ui: Ui) -> None:
    big = json.dumps([UUID, "dataTransfer", {"data": "x" * (MAX_PAYLOAD_BYTES + 10)}])
    with trio.fail_after(10):
        async with open_ws(ui.url) as client:
            await client.ws.send_message(big)
            request_id, payload = await client.frame()
            assert request_id is None
            assert payload["status"] == "failure"
            assert "larger than" in payload["error"]
            assert (await client.request("simulatorState"))["status"] == "success"
    assert received(ui, "DataTransfer") == 0


async def test_a_frame_over_the_websocket_limit_closes_with_1009(ui: Ui) -> None:
    with trio.fail_after(10):
        async with open_ws(ui.url) as client:
            await client.ws.send_message("x" * (4 * MAX_PAYLOAD_BYTES))
            with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                await client.ws.get_message()
        assert closed.value.reason.code == 1009
        async with open_ws(ui.url) as other:  # the server is still up
            assert (await other.request("simulatorState"))["status"] == "success"


async def test_a_client_without_the_ui_subprotocol_is_rejected(ui: Ui) -> None:
    with trio.fail_after(10):
        with pytest.raises(trio_websocket.ConnectionRejected) as rejected:
            async with open_ws(ui.url, subprotocols=["ocpp1.6"]):
                pass
        assert rejected.value.status_code == 400
        async with open_ws(ui.url, subprotocols=["other", "ui0.0.1"]) as client:
            assert client.ws.subprotocol == "ui0.0.1"


async def test_a_burst_of_1000_requests_is_served_or_rate_limited(ui: Ui) -> None:
    with trio.fail_after(30):
        async with open_ws(ui.url) as client, open_ws(ui.url) as bystander:
            sent = [await client.send("simulatorState") for _ in range(1000)]
            answers = [await client.response(request_id) for request_id in sent]
            statuses = [a["status"] for a in answers]
            served = statuses.count("success")
            limited = [a for a in answers if a["status"] == "failure"]
            assert served + len(limited) == 1000
            assert served >= 100
            assert all(a["error"] == "rate limited: slow down" for a in limited)
            # The other client is not affected, and the server is up.
            assert (await bystander.request("heartbeat"))["status"] == "success"


async def test_clients_get_a_refresh_push_when_station_data_changes(ui: Ui) -> None:
    with trio.fail_after(10):
        async with open_ws(ui.url) as watcher, open_ws(ui.url) as actor:
            response = await actor.request("lockConnector", {"connectorId": 1})
            assert response["status"] == "success"
            await watcher.wait_refresh()
            await actor.wait_refresh()


async def test_a_burst_of_changes_makes_few_refresh_pushes(ui: Ui) -> None:
    with trio.fail_after(10):
        async with open_ws(ui.url) as watcher:
            began = trio.current_time()
            for _ in range(20):
                await watcher.request("lockConnector", {"connectorId": 1})
                await watcher.request("unlockConnector", {"connectorId": 1})
            await watcher.wait_refresh()
            elapsed = trio.current_time() - began
    # 40 changes: at most one push per REFRESH_MIN_INTERVAL (0.5 s), not one per change.
    assert 1 <= watcher.refreshes <= elapsed / 0.5 + 1


# -- the frame checks, sans-I/O --------------------------------------------------------------


def test_parse_frame_accepts_a_request_and_canonicalizes_aliases() -> None:
    validator = PayloadValidator()
    request = parse_frame(f'["{UUID}", "Heartbeat", {{"hashIds": ["ab"]}}]', validator)
    assert request.uuid == UUID
    assert request.procedure == "heartbeat"
    assert request.payload == {"hashIds": ["ab"]}


def test_every_procedure_has_a_schema_and_an_implementation() -> None:
    from evsim_trio.simulator._commands import PROCEDURES

    assert PayloadValidator().procedures == set(PROCEDURES)
    assert len(PROCEDURES) == 28


def test_a_failed_check_carries_its_response_frame() -> None:
    with pytest.raises(RequestError) as failed:
        parse_frame(f'["{UUID}", "heartbeat", 3]', PayloadValidator())
    assert json.loads(failed.value.frame()) == [
        UUID,
        {"status": "failure", "error": "heartbeat: payload must be a JSON object, got a number"},
    ]


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(capacity=3, rate=2.0, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.4) is False  # 0.8 token
    assert bucket.take(0.5) is True  # 1.0 token
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]
