"""Every CSMS-initiated OCPP 1.6 request the station handles, with each of its response statuses,
over real sockets: the embedded CSMS listens on 127.0.0.1, the station connects with the real
TCP + trio-websocket `default_connect()`, on the real clock.

One table, one row per (action, status): the setup goes through the station API or the CSMS,
the request is sent by `EmbeddedCsms.call`, the answer compared, and the effect checked where it
is cheap (a connector status, a later message at the CSMS). Nothing sleeps: every wait is on an
event of the CSMS (`wait_until`) or of the station. The in-memory, MockClock tests of each
handler (tests/test_h_*.py, test_transactions.py, test_reservations.py, test_smart_charging.py)
check timings and edge cases; this module checks that the same matrix holds on the wire.
"""

from __future__ import annotations

import collections
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial
from typing import Any, Literal
from unittest.mock import ANY

import attrs
import h11
import pytest
import trio
from memlink import make_station, record_calls, running, shipped_template

from evsim_trio._resources import data_dir
from evsim_trio.config import CommandsSupport, ConfigurationKey, FirmwareUpgrade, StationTemplate
from evsim_trio.csms import EmbeddedCsms, StationRecord
from evsim_trio.ocpp import (
    NotImplementedOcppError,
    NotSupportedError,
    OccurenceConstraintViolation,
    OcppError,
    v16,
)
from evsim_trio.station import Station, default_connect, utc_now
from evsim_trio.station._clock import format_timestamp
from evsim_trio.station._handlers import REGISTRY

DEADLINE = 10.0  # seconds of real time, per test
Payload = dict[str, Any]
Calls = list[tuple[float, str, Payload]]
FIRMWARE_LOCATION = "https://firmware.example.com/ac22/fw.bin"  # not loopback: simulated


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib honours proxy variables; the loopback diagnostics uploads must not use one."""
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


# -- the rig: embedded CSMS on 127.0.0.1, one station over real sockets -----------------------
@attrs.define
class Rig:
    """A booted station and its CSMS; `notes` carries what a setup made for the request."""

    csms: EmbeddedCsms
    station: Station
    calls: Calls
    nursery: trio.Nursery
    notes: dict[str, Any] = attrs.field(factory=dict)
    before: collections.Counter[str] = attrs.field(factory=collections.Counter)

    @property
    def record(self) -> StationRecord:
        """The CSMS's record of the station."""
        return self.csms.stations[self.station.station_id]

    async def call(self, action: str, payload: Payload) -> Payload:
        """A CALL from the CSMS to the station; the CALLRESULT payload."""
        return await self.csms.call(self.station.station_id, action, payload)

    def sent(self, action: str) -> list[Payload]:
        """Payloads of every `action` CALL the station sent, in order."""
        return [p for _, a, p in self.calls if a == action]

    async def wait_sent(self, action: str, count: int) -> list[Payload]:
        """Wait until the station sent `count` `action` CALLs in all; their payloads."""
        await self.csms.wait_until(lambda: len(self.sent(action)) >= count)
        return self.sent(action)

    async def wait_new(self, action: str) -> Payload:
        """Wait for one more `action` CALL than before the request; the latest payload."""
        await self.csms.wait_until(lambda: self.record.received[action] > self.before[action])
        return self.record.last_payload[action]

    async def wait_station(self, predicate: Callable[[], bool]) -> None:
        """Wait until `predicate()` holds, re-checked on every change the station reports."""
        changed = trio.Event()

        def notify(_station: Station) -> None:
            nonlocal changed
            changed.set()
            changed = trio.Event()

        self.station.on_change = notify
        while not predicate():
            await changed.wait()

    async def wait_notified(self, connector_id: int, status: str) -> None:
        """Wait until the CSMS was told `status` for the connector."""
        await self.csms.wait_until(lambda: self.record.connector_status.get(connector_id) == status)


@asynccontextmanager
async def on_the_wire(template: StationTemplate, *, validate: bool = True) -> AsyncIterator[Rig]:
    """The embedded CSMS on 127.0.0.1 port 0 and a booted station connected to it over TCP.

    With `validate`, the CSMS must have seen no invalid frame or payload when the block ends.
    """
    csms = EmbeddedCsms(heartbeat_interval=600, validate=validate)
    calls = record_calls(csms)
    async with trio.open_nursery() as nursery:
        await nursery.start(csms.serve, "127.0.0.1", 0)
        station = make_station(template, default_connect(), url=csms.url)
        station.configuration.set("WebSocketPingInterval", "0")
        async with running(station, csms):
            yield Rig(csms, station, calls, nursery)
        nursery.cancel_scope.cancel()


# -- the table ---------------------------------------------------------------------------------
Step = Callable[[Rig], Awaitable[None]]
Check = Callable[[Rig, Payload], Awaitable[None]]
Edit = Callable[[StationTemplate], StationTemplate]


@attrs.frozen
class Case:
    """One request, its expected answer (a payload, or the OcppError of a CALLERROR)."""

    action: str
    payload: Payload | Callable[[Rig], Payload]
    expected: Payload | type[OcppError]
    setup: Step | None = None
    check: Check | None = None
    template: Edit | None = None
    validate: bool = True  # False: neither the CSMS nor the station validates payloads


def case(case_id: str, payload: Any, expected: Any, **kwargs: Any) -> Any:
    """A row of the table, `pytest.param(Case(...), id=case_id)`: the id starts with the action."""
    action = case_id.split("-", 1)[0]
    return pytest.param(Case(action, payload, expected, **kwargs), id=case_id)


def template_for(case: Case) -> StationTemplate:
    template = shipped_template()
    return case.template(template) if case.template is not None else template


# -- setups and template edits -------------------------------------------------------------
async def transaction_on_1(rig: Rig) -> None:
    assert await rig.station.start_transaction(1, "TAG-2")
    tx = rig.station.connectors[1].transaction
    assert tx is not None
    rig.notes["transaction_id"] = tx.transaction_id


async def inoperative_1(rig: Rig) -> None:
    answer = await rig.call("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})
    assert answer == {"status": "Accepted"}
    await rig.wait_notified(1, "Unavailable")


async def reserved_1(rig: Rig) -> None:
    assert await rig.call("ReserveNow", reservation(1, 1)) == {"status": "Accepted"}
    await rig.wait_notified(1, "Reserved")


async def cached_tag(rig: Rig) -> None:
    rig.station.auth_cache["TAG-1"] = {"status": "Accepted"}


def _cannot_clear() -> bool:
    return False


async def cache_that_cannot_be_cleared(rig: Rig) -> None:
    # Injected: the simulated cache can always be emptied (see tests/test_h_config.py).
    rig.station.clear_authorization_cache = _cannot_clear  # type: ignore[method-assign,assignment]


async def list_version_5(rig: Rig) -> None:
    request = {"listVersion": 5, "updateType": "Full", "localAuthorizationList": [entry("A")]}
    assert await rig.call("SendLocalList", request) == {"status": "Accepted"}


async def send_local_list_max_1(rig: Rig) -> None:
    rig.station.configuration.set("SendLocalListMaxLength", "1")


async def local_list_disabled(rig: Rig) -> None:
    request = {"key": "LocalAuthListEnabled", "value": "false"}
    assert await rig.call("ChangeConfiguration", request) == {"status": "Accepted"}


async def max_keys_1(rig: Rig) -> None:
    rig.station.configuration.set("GetConfigurationMaxKeys", "1")


async def profile_on_1(rig: Rig) -> None:
    request = {"connectorId": 1, "csChargingProfiles": charging_profile()}
    assert await rig.call("SetChargingProfile", request) == {"status": "Accepted"}


async def closed_port_location(rig: Rig) -> None:
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    rig.notes["location"] = f"http://127.0.0.1:{port}/diagnostics/"


async def upload_server(rig: Rig) -> None:
    server = UploadServer()
    listeners = await rig.nursery.start(partial(trio.serve_tcp, server.handle, 0, host="127.0.0.1"))
    rig.notes["server"] = server
    rig.notes["location"] = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}/logs/"


def reboot_required_key(template: StationTemplate) -> StationTemplate:
    key = ConfigurationKey("ConnectionTimeOut", "60", reboot=True)
    return attrs.evolve(template, configuration=(*template.configuration, key))


def faulted_connector_1(template: StationTemplate) -> StationTemplate:
    connectors = dict(template.connectors)
    connectors[1] = attrs.evolve(connectors[1], boot_status="Faulted")
    return attrs.evolve(template, connectors=connectors)


def instant_reset(template: StationTemplate) -> StationTemplate:
    return attrs.evolve(template, reset_time=0)


def instant_firmware(failure: Literal["none", "download", "install"] = "none") -> Edit:
    settings = FirmwareUpgrade(download_duration=0, install_duration=0, failure=failure)
    return lambda template: attrs.evolve(template, firmware_upgrade=settings, reset_time=0)


def unvalidated(template: StationTemplate) -> StationTemplate:
    return attrs.evolve(template, payload_schema_validation=False)


def clear_cache_disabled(template: StationTemplate) -> StationTemplate:
    # A table that is not empty enables only what it names: DataTransfer stays on.
    support = CommandsSupport(incoming_commands={"ClearCache": False, "DataTransfer": True})
    return attrs.evolve(template, commands_support=support)


# -- payload builders ----------------------------------------------------------------------
def entry(tag: str) -> Payload:
    return {"idTag": tag, "idTagInfo": {"status": "Accepted"}}


def reservation(reservation_id: int, connector_id: int) -> Payload:
    return {
        "connectorId": connector_id,
        "expiryDate": format_timestamp(utc_now() + timedelta(hours=1)),
        "idTag": "TAG-1",
        "reservationId": reservation_id,
    }


def reserve(connector_id: int) -> Callable[[Rig], Payload]:
    return lambda rig: reservation(7, connector_id)


def charging_profile(purpose: str = "TxDefaultProfile", limit: float = 16.0) -> Payload:
    return {
        "chargingProfileId": 1,
        "stackLevel": 0,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": "Relative",
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}],
        },
    }


def noted_transaction(rig: Rig) -> Payload:
    return {"transactionId": rig.notes["transaction_id"]}


def noted_location(rig: Rig) -> Payload:
    return {"location": rig.notes["location"]}


def firmware_now(rig: Rig) -> Payload:
    return {"location": FIRMWARE_LOCATION, "retrieveDate": format_timestamp(utc_now())}


# -- checks of the effect ----------------------------------------------------------------------
def notified(connector_id: int, status: str) -> Check:
    async def check(rig: Rig, answer: Payload) -> None:
        await rig.wait_notified(connector_id, status)
        assert rig.station.connectors[connector_id].status == status

    return check


async def all_unavailable(rig: Rig, answer: Payload) -> None:
    for connector_id in rig.station.connectors:
        await rig.wait_notified(connector_id, "Unavailable")


async def unavailable_after_the_transaction(rig: Rig, answer: Payload) -> None:
    connector = rig.station.connectors[1]
    assert connector.pending_availability == "Inoperative"
    assert connector.status == "Charging"
    assert await rig.station.stop_transaction(1)
    await rig.wait_notified(1, "Unavailable")
    assert connector.availability == "Inoperative"


async def nothing_changed(rig: Rig, answer: Payload) -> None:
    assert all(c.status == "Available" for c in rig.station.connectors.values())
    assert all(c.availability == "Operative" for c in rig.station.connectors.values())


def stored(key: str, value: str) -> Check:
    async def check(rig: Rig, answer: Payload) -> None:
        assert rig.station.configuration.get(key) == value

    return check


async def cache_empty(rig: Rig, answer: Payload) -> None:
    assert rig.station.auth_cache == {}


async def every_visible_key(rig: Rig, answer: Payload) -> None:
    keys = [entry["key"] for entry in answer["configurationKey"]]
    assert keys == [e.key for e in rig.station.configuration.visible_keys()]
    assert "unknownKey" not in answer


async def remote_start_on_1(rig: Rig, answer: Payload) -> None:
    [start] = await rig.wait_sent("StartTransaction", 1)
    assert (start["connectorId"], start["idTag"]) == (1, "TAG-1")
    await rig.station.connectors[1].wait_status("Charging")
    await rig.wait_notified(1, "Charging")


async def still_one_transaction(rig: Rig, answer: Payload) -> None:
    assert len(rig.sent("StartTransaction")) == 1
    assert rig.station.connectors[2].transaction is None


def stopped_with(reason: str) -> Check:
    async def check(rig: Rig, answer: Payload) -> None:
        [stop] = await rig.wait_sent("StopTransaction", 1)
        assert stop["reason"] == reason
        assert stop["transactionId"] == rig.notes["transaction_id"]
        await rig.wait_notified(1, "Available")

    return check


async def booted_again(rig: Rig, answer: Payload) -> None:
    await rig.csms.wait_until(lambda: rig.record.boot_count == 2 and rig.record.connected)
    assert rig.record.connections == 2  # a reset closes the socket and opens a new one


async def soft_reset_stops_then_boots(rig: Rig, answer: Payload) -> None:
    await stopped_with("SoftReset")(rig, answer)
    await booted_again(rig, answer)


async def unlocked(rig: Rig, answer: Payload) -> None:
    assert not rig.station.connectors[1].locked


def triggered(action: str, expected: Payload | None = None) -> Check:
    async def check(rig: Rig, answer: Payload) -> None:
        payload = await rig.wait_new(action)
        if expected is not None:
            assert {k: payload.get(k) for k in expected} == expected

    return check


async def triggered_boot(rig: Rig, answer: Payload) -> None:
    await rig.csms.wait_until(lambda: rig.record.boot_count == 2)
    assert rig.record.connections == 1  # on the same connection


def diagnostics_notified(*statuses: str) -> Check:
    async def check(rig: Rig, answer: Payload) -> None:
        name = answer["fileName"]
        assert re.fullmatch(rf"{rig.station.station_id}-diagnostics-\d{{8}}T\d{{6}}Z\.log", name)
        sent = await rig.wait_sent("DiagnosticsStatusNotification", len(statuses))
        assert [p["status"] for p in sent] == list(statuses)
        server = rig.notes.get("server")
        if server is not None:
            [(method, target, body)] = server.requests
            assert (method, target) == ("PUT", f"/logs/{name}")
            assert body.startswith(b"# evsim-trio diagnostics")

    return check


def firmware_notified(*statuses: str, version: str | None = None) -> Check:
    async def check(rig: Rig, answer: Payload) -> None:
        sent = await rig.wait_sent("FirmwareStatusNotification", len(statuses))
        assert [p["status"] for p in sent] == list(statuses)
        if version is not None:
            # Installed, then a reboot: the new BootNotification carries the new version.
            await booted_again(rig, answer)
            assert rig.record.last_boot is not None
            assert rig.record.last_boot["firmwareVersion"] == version
        await rig.wait_station(lambda: rig.station.firmware_status == "Idle")

    return check


def list_version(version: int) -> Check:
    async def check(rig: Rig, answer: Payload) -> None:
        assert rig.station.local_list.version == version
        assert await rig.call("GetLocalListVersion", {}) == {"listVersion": version}

    return check


def not_reserved(status: str) -> Check:
    async def check(rig: Rig, answer: Payload) -> None:
        assert len(rig.station.reservations) == 0
        assert rig.station.connectors[1].status == status

    return check


async def profile_installed(rig: Rig, answer: Payload) -> None:
    assert [cid for cid, _ in rig.station.profiles.profiles()] == [1]


async def no_profile(rig: Rig, answer: Payload) -> None:
    assert list(rig.station.profiles.profiles()) == []


async def sixteen_amps(rig: Rig, answer: Payload) -> None:
    schedule = answer["chargingSchedule"]
    assert schedule["chargingRateUnit"] == "A"
    assert schedule["duration"] == 600
    assert schedule["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 16.0}]


NUMBER_OF_CONNECTORS = {"key": "NumberOfConnectors", "readonly": True, "value": "2"}
HEARTBEAT_INTERVAL = {"key": "HeartbeatInterval", "readonly": False, "value": "600"}
ACCEPTED = {"status": "Accepted"}
REJECTED = {"status": "Rejected"}
COMPOSITE = {"connectorId": 1, "duration": 600, "chargingRateUnit": "A"}

# The Security Whitepaper's CSMS-initiated requests, with valid payloads: NotSupported.
SECURITY_REQUESTS: dict[str, Payload] = {
    "CertificateSigned": {"certificateChain": "-----BEGIN CERTIFICATE-----"},
    "DeleteCertificate": {
        "certificateHashData": {
            "hashAlgorithm": "SHA256",
            "issuerNameHash": "ab",
            "issuerKeyHash": "cd",
            "serialNumber": "01",
        }
    },
    "ExtendedTriggerMessage": {"requestedMessage": "Heartbeat"},
    "GetInstalledCertificateIds": {"certificateType": "CentralSystemRootCertificate"},
    "GetLog": {
        "logType": "DiagnosticsLog",
        "requestId": 1,
        "log": {"remoteLocation": "https://logs.example.com/"},
    },
    "InstallCertificate": {
        "certificateType": "ManufacturerRootCertificate",
        "certificate": "-----BEGIN CERTIFICATE-----",
    },
    "SignedUpdateFirmware": {
        "requestId": 1,
        "firmware": {
            "location": FIRMWARE_LOCATION,
            "retrieveDateTime": "2030-01-01T00:00:00Z",
            "signingCertificate": "-----BEGIN CERTIFICATE-----",
            "signature": "c2ln",
        },
    },
}

CASES = [
    # ChangeAvailability (1.6 §5.2)
    case(
        "ChangeAvailability-Accepted",
        {"connectorId": 1, "type": "Inoperative"},
        ACCEPTED,
        check=notified(1, "Unavailable"),
    ),
    case(
        "ChangeAvailability-Accepted-connector-0",
        {"connectorId": 0, "type": "Inoperative"},
        ACCEPTED,
        check=all_unavailable,
    ),
    case(
        "ChangeAvailability-Scheduled",
        {"connectorId": 1, "type": "Inoperative"},
        {"status": "Scheduled"},
        setup=transaction_on_1,
        check=unavailable_after_the_transaction,
    ),
    case(
        "ChangeAvailability-Rejected",
        {"connectorId": 9, "type": "Inoperative"},
        REJECTED,
        check=nothing_changed,
    ),
    # ChangeConfiguration (§5.3)
    case(
        "ChangeConfiguration-Accepted",
        {"key": "HeartbeatInterval", "value": "300"},
        ACCEPTED,
        check=stored("HeartbeatInterval", "300"),
    ),
    case(
        "ChangeConfiguration-Rejected-readonly",
        {"key": "NumberOfConnectors", "value": "3"},
        REJECTED,
        check=stored("NumberOfConnectors", "2"),
    ),
    case(
        "ChangeConfiguration-Rejected-invalid-value",
        {"key": "HeartbeatInterval", "value": "often"},
        REJECTED,
        check=stored("HeartbeatInterval", "600"),
    ),
    case(
        "ChangeConfiguration-RebootRequired",
        {"key": "ConnectionTimeOut", "value": "45"},
        {"status": "RebootRequired"},
        template=reboot_required_key,
        check=stored("ConnectionTimeOut", "45"),
    ),
    case(
        "ChangeConfiguration-NotSupported",
        {"key": "NoSuchKey", "value": "1"},
        {"status": "NotSupported"},
    ),
    # ClearCache (§5.4)
    case("ClearCache-Accepted", {}, ACCEPTED, setup=cached_tag, check=cache_empty),
    case("ClearCache-Rejected", {}, REJECTED, setup=cache_that_cannot_be_cleared),
    case(
        "ClearCache-NotSupported-by-commands_support",
        {},
        NotSupportedError,
        template=clear_cache_disabled,
    ),
    # DataTransfer (§5.6)
    case("DataTransfer-Accepted", {"vendorId": "evsim-trio"}, ACCEPTED),
    case(
        "DataTransfer-UnknownVendorId",
        {"vendorId": "acme", "messageId": "Hello"},
        {"status": "UnknownVendorId"},
    ),
    case(
        "DataTransfer-UnknownMessageId",
        {"vendorId": "evsim-trio", "messageId": "Hello", "data": "x"},
        {"status": "UnknownMessageId"},
    ),
    # GetConfiguration (§5.8)
    case("GetConfiguration-all", {}, {"configurationKey": ANY}, check=every_visible_key),
    case(
        "GetConfiguration-known-keys",
        {"key": ["NumberOfConnectors", "HeartbeatInterval"]},
        {"configurationKey": [NUMBER_OF_CONNECTORS, HEARTBEAT_INTERVAL]},
    ),
    case(
        "GetConfiguration-unknownKey",
        {"key": ["NumberOfConnectors", "NoSuchKey"]},
        {"configurationKey": [NUMBER_OF_CONNECTORS], "unknownKey": ["NoSuchKey"]},
    ),
    case(
        "GetConfiguration-OccurenceConstraintViolation-over-max-keys",
        {"key": ["NumberOfConnectors", "HeartbeatInterval"]},
        OccurenceConstraintViolation,
        setup=max_keys_1,
    ),
    # RemoteStartTransaction (§5.11)
    case(
        "RemoteStartTransaction-Accepted",
        {"connectorId": 1, "idTag": "TAG-1"},
        ACCEPTED,
        check=remote_start_on_1,
    ),
    case(
        "RemoteStartTransaction-Rejected-occupied",
        {"connectorId": 1, "idTag": "TAG-1"},
        REJECTED,
        setup=transaction_on_1,
        check=still_one_transaction,
    ),
    case(
        "RemoteStartTransaction-Rejected-not-a-TxProfile",
        {"connectorId": 2, "idTag": "TAG-1", "chargingProfile": charging_profile()},
        REJECTED,
        check=no_profile,
    ),
    # RemoteStopTransaction (§5.12)
    case(
        "RemoteStopTransaction-Accepted",
        noted_transaction,
        ACCEPTED,
        setup=transaction_on_1,
        check=stopped_with("Remote"),
    ),
    case("RemoteStopTransaction-Rejected", {"transactionId": 424242}, REJECTED),
    # Reset (§5.14)
    case(
        "Reset-Accepted-Soft",
        {"type": "Soft"},
        ACCEPTED,
        template=instant_reset,
        setup=transaction_on_1,
        check=soft_reset_stops_then_boots,
    ),
    case(
        "Reset-Accepted-Hard",
        {"type": "Hard"},
        ACCEPTED,
        template=instant_reset,
        check=booted_again,
    ),
    # UnlockConnector (§5.18)
    case("UnlockConnector-Unlocked", {"connectorId": 1}, {"status": "Unlocked"}, check=unlocked),
    case(
        "UnlockConnector-Unlocked-stops-the-transaction",
        {"connectorId": 1},
        {"status": "Unlocked"},
        setup=transaction_on_1,
        check=stopped_with("UnlockCommand"),
    ),
    case(
        "UnlockConnector-NotSupported-connector-0", {"connectorId": 0}, {"status": "NotSupported"}
    ),
    case(
        "UnlockConnector-NotSupported-unknown-connector",
        {"connectorId": 9},
        {"status": "NotSupported"},
    ),
    # TriggerMessage (§5.17)
    case(
        "TriggerMessage-Accepted-BootNotification",
        {"requestedMessage": "BootNotification"},
        ACCEPTED,
        check=triggered_boot,
    ),
    case(
        "TriggerMessage-Accepted-Heartbeat",
        {"requestedMessage": "Heartbeat"},
        ACCEPTED,
        check=triggered("Heartbeat"),
    ),
    case(
        "TriggerMessage-Accepted-StatusNotification",
        {"requestedMessage": "StatusNotification", "connectorId": 2},
        ACCEPTED,
        check=triggered("StatusNotification", {"connectorId": 2, "status": "Available"}),
    ),
    case(
        "TriggerMessage-Accepted-MeterValues",
        {"requestedMessage": "MeterValues", "connectorId": 1},
        ACCEPTED,
        check=triggered("MeterValues", {"connectorId": 1}),
    ),
    case(
        "TriggerMessage-Accepted-DiagnosticsStatusNotification",
        {"requestedMessage": "DiagnosticsStatusNotification"},
        ACCEPTED,
        check=triggered("DiagnosticsStatusNotification", {"status": "Idle"}),
    ),
    case(
        "TriggerMessage-Accepted-FirmwareStatusNotification",
        {"requestedMessage": "FirmwareStatusNotification"},
        ACCEPTED,
        check=triggered("FirmwareStatusNotification", {"status": "Idle"}),
    ),
    case(
        "TriggerMessage-Rejected",
        {"requestedMessage": "StatusNotification", "connectorId": 9},
        REJECTED,
    ),
    # Only reachable when neither side validates: the schema's enum is exactly what is handled.
    case(
        "TriggerMessage-NotImplemented",
        {"requestedMessage": "SignChargePointCertificate"},
        {"status": "NotImplemented"},
        template=unvalidated,
        validate=False,
    ),
    # GetDiagnostics (§5.9) and the DiagnosticsStatusNotifications that follow
    case(
        "GetDiagnostics-fileName-Uploaded",
        noted_location,
        {"fileName": ANY},
        setup=upload_server,
        check=diagnostics_notified("Uploading", "Uploaded"),
    ),
    case(
        "GetDiagnostics-fileName-UploadFailed",
        noted_location,
        {"fileName": ANY},
        setup=closed_port_location,
        check=diagnostics_notified("Uploading", "UploadFailed"),
    ),
    # UpdateFirmware (§5.19) and the FirmwareStatusNotifications that follow
    case(
        "UpdateFirmware-Installed",
        firmware_now,
        {},
        template=instant_firmware(),
        check=firmware_notified(
            "Downloading", "Downloaded", "Installing", "Installed", version="1.4.3"
        ),
    ),
    case(
        "UpdateFirmware-DownloadFailed",
        firmware_now,
        {},
        template=instant_firmware("download"),
        check=firmware_notified("Downloading", "DownloadFailed"),
    ),
    case(
        "UpdateFirmware-InstallationFailed",
        firmware_now,
        {},
        template=instant_firmware("install"),
        check=firmware_notified("Downloading", "Downloaded", "Installing", "InstallationFailed"),
    ),
    # SendLocalList (§5.15)
    case(
        "SendLocalList-Accepted",
        {"listVersion": 3, "updateType": "Full", "localAuthorizationList": [entry("A")]},
        ACCEPTED,
        check=list_version(3),
    ),
    case(
        "SendLocalList-Failed",
        {
            "listVersion": 3,
            "updateType": "Full",
            "localAuthorizationList": [entry("A"), entry("B")],
        },
        {"status": "Failed"},
        setup=send_local_list_max_1,
        check=list_version(0),
    ),
    case(
        "SendLocalList-VersionMismatch",
        {"listVersion": 5, "updateType": "Differential", "localAuthorizationList": [entry("B")]},
        {"status": "VersionMismatch"},
        setup=list_version_5,
        check=list_version(5),
    ),
    case(
        "SendLocalList-NotSupported",
        {"listVersion": 3, "updateType": "Full", "localAuthorizationList": [entry("A")]},
        {"status": "NotSupported"},
        setup=local_list_disabled,
    ),
    # GetLocalListVersion (§5.10)
    case("GetLocalListVersion-0-empty", {}, {"listVersion": 0}),
    case("GetLocalListVersion-n", {}, {"listVersion": 5}, setup=list_version_5),
    case(
        "GetLocalListVersion-minus-1-disabled", {}, {"listVersion": -1}, setup=local_list_disabled
    ),
    # ReserveNow (§5.13)
    case("ReserveNow-Accepted", reserve(1), ACCEPTED, check=notified(1, "Reserved")),
    case(
        "ReserveNow-Faulted",
        reserve(1),
        {"status": "Faulted"},
        template=faulted_connector_1,
        check=not_reserved("Faulted"),
    ),
    case(
        "ReserveNow-Occupied",
        reserve(1),
        {"status": "Occupied"},
        setup=transaction_on_1,
        check=not_reserved("Charging"),
    ),
    case(
        "ReserveNow-Rejected-connector-0-unsupported",
        reserve(0),
        REJECTED,
        check=not_reserved("Available"),
    ),
    case(
        "ReserveNow-Unavailable",
        reserve(1),
        {"status": "Unavailable"},
        setup=inoperative_1,
        check=not_reserved("Unavailable"),
    ),
    # CancelReservation (§5.1)
    case(
        "CancelReservation-Accepted",
        {"reservationId": 1},
        ACCEPTED,
        setup=reserved_1,
        check=notified(1, "Available"),
    ),
    case("CancelReservation-Rejected", {"reservationId": 404}, REJECTED),
    # SetChargingProfile (§5.16)
    case(
        "SetChargingProfile-Accepted",
        {"connectorId": 1, "csChargingProfiles": charging_profile()},
        ACCEPTED,
        check=profile_installed,
    ),
    case(
        "SetChargingProfile-Rejected-max-profile-on-a-connector",
        {"connectorId": 1, "csChargingProfiles": charging_profile("ChargePointMaxProfile")},
        REJECTED,
        check=no_profile,
    ),
    case(
        "SetChargingProfile-Rejected-unknown-connector",
        {"connectorId": 9, "csChargingProfiles": charging_profile()},
        REJECTED,
        check=no_profile,
    ),
    # ClearChargingProfile (§5.5)
    case(
        "ClearChargingProfile-Accepted", {"id": 1}, ACCEPTED, setup=profile_on_1, check=no_profile
    ),
    case("ClearChargingProfile-Unknown", {"id": 1}, {"status": "Unknown"}),
    # GetCompositeSchedule (§5.7)
    case(
        "GetCompositeSchedule-Accepted",
        COMPOSITE,
        {"status": "Accepted", "connectorId": 1, "scheduleStart": ANY, "chargingSchedule": ANY},
        setup=profile_on_1,
        check=sixteen_amps,
    ),
    case("GetCompositeSchedule-Rejected-no-profile", COMPOSITE, REJECTED),
    case(
        "GetCompositeSchedule-Rejected-unknown-connector",
        {**COMPOSITE, "connectorId": 9},
        REJECTED,
        setup=profile_on_1,
    ),
    # An action that is no OCPP 1.6 action: CALLERROR NotImplemented. The embedded CSMS sends
    # it only when it does not validate its own requests.
    case("NoSuchAction-NotImplemented", {}, NotImplementedOcppError, validate=False),
    # The Security Whitepaper's requests: known 1.6 actions without a handler, NotSupported.
    *(
        case(f"{action}-NotSupported", payload, NotSupportedError)
        for action, payload in SECURITY_REQUESTS.items()
    ),
]


@pytest.mark.integration
@pytest.mark.parametrize("case", CASES)
async def test_csms_request_gets_its_status_over_real_sockets(case: Case) -> None:
    with trio.fail_after(DEADLINE):
        async with on_the_wire(template_for(case), validate=case.validate) as rig:
            if case.setup is not None:
                await case.setup(rig)
            rig.before = collections.Counter(rig.record.received)
            payload = case.payload(rig) if callable(case.payload) else case.payload
            if isinstance(case.expected, dict):
                answer = await rig.call(case.action, payload)
                assert answer == case.expected
                if case.check is not None:
                    await case.check(rig, answer)
            else:
                with pytest.raises(case.expected):
                    await rig.call(case.action, payload)
                # A CALLERROR leaves the connection up, and the station answering.
                assert rig.record.connected
                answer = await rig.call("DataTransfer", {"vendorId": "evsim-trio"})
                assert answer == ACCEPTED


# -- the table is complete ---------------------------------------------------------------------
# Statuses of the 1.6 response schemas that the station never answers, and why.
NEVER_ANSWERED = {
    ("DataTransfer", "Rejected"): "no vendor message is implemented: UnknownMessageId instead",
    ("Reset", "Rejected"): "a station always accepts a reset",
    ("UnlockConnector", "UnlockFailed"): "the simulated lock never fails",
    ("SetChargingProfile", "NotSupported"): (
        "smart charging is always there; commands_support answers a CALLERROR NotSupported"
    ),
}


def response_statuses(action: str) -> set[str]:
    """The `status` enum of the action's 1.6 response schema (empty when it has none)."""
    path = data_dir("schemas") / "ocpp" / "1.6" / f"{action}Response.json"
    schema = json.loads(path.read_text())
    status = schema.get("properties", {}).get("status")
    if status is None:
        return set()
    ref = status.get("$ref")
    if ref is not None:
        status = schema["definitions"][ref.rsplit("/", 1)[-1]]
    return set(status["enum"])


def covered() -> dict[str, set[str]]:
    """The statuses the table expects, by action (actions without a status field: empty)."""
    statuses: dict[str, set[str]] = {}
    for param in CASES:
        (row,) = param.values
        assert isinstance(row, Case)
        seen = statuses.setdefault(row.action, set())
        if isinstance(row.expected, dict) and "status" in row.expected:
            seen.add(row.expected["status"])
    return statuses


def test_the_table_has_every_handled_action_and_every_status_the_station_answers() -> None:
    statuses = covered()
    assert set(REGISTRY) <= set(statuses)
    assert set(SECURITY_REQUESTS) == v16.SECURITY_ACTIONS & v16.CENTRAL_SYSTEM_INITIATED
    for action in REGISTRY:
        missing = response_statuses(action) - statuses[action]
        assert missing == {s for a, s in NEVER_ANSWERED if a == action}, action


# -- a tiny HTTP server for the diagnostics upload ---------------------------------------------
@attrs.define
class UploadServer:
    """Answers every request 200 and keeps (method, target, body) of each."""

    requests: list[tuple[str, str, bytes]] = attrs.field(factory=list)

    async def handle(self, stream: trio.SocketStream) -> None:
        connection = h11.Connection(h11.SERVER)
        method = target = ""
        body = b""
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Request):
                method, target = event.method.decode(), event.target.decode()
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        self.requests.append((method, target, body))
        response = h11.Response(status_code=200, headers=[("content-length", "0")])
        await stream.send_all(connection.send(response) + connection.send(h11.EndOfMessage()))
        await stream.aclose()
