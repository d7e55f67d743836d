import json
import trio
from pathlib import Path
import test_interop_scenario as t
from ocpp_lib_peer import open_ocpp_lib_csms, CallFailed
from evsim_trio.config import load_site
from evsim_trio.simulator import Simulator

CALLS = [
    ("TriggerMessage", {"requestedMessage": "BootNotification"}),
    ("TriggerMessage", {"requestedMessage": "DiagnosticsStatusNotification"}),
    ("TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"}),
    ("TriggerMessage", {"requestedMessage": "StatusNotification"}),
    ("TriggerMessage", {"requestedMessage": "MeterValues"}),
    ("TriggerMessage", {"requestedMessage": "MeterValues", "connectorId": 0}),
    ("TriggerMessage", {"requestedMessage": "StatusNotification", "connectorId": 5}),
    ("ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "1"}),
    ("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "abc"}),
    ("ChangeConfiguration", {"key": "MeterValuesSampledData", "value": "Energy.Active.Import.Register,SoC,Power.Offered,Current.Offered,Voltage,Frequency,Temperature,Power.Factor,Current.Import,Power.Active.Import,Energy.Active.Import.Interval"}),
    ("RemoteStartTransaction", {"idTag": "TAG-0002", "chargingProfile": {"chargingProfileId": 5, "stackLevel": 1, "chargingProfilePurpose": "TxProfile", "chargingProfileKind": "Relative", "chargingSchedule": {"chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7400.5}, {"startPeriod": 60, "limit": 3000.0, "numberPhases": 1}]}}}),
    ("GetCompositeSchedule", {"connectorId": 1, "duration": 3600}),
    ("GetCompositeSchedule", {"connectorId": 1, "duration": 3600, "chargingRateUnit": "A"}),
    ("GetCompositeSchedule", {"connectorId": 0, "duration": 600, "chargingRateUnit": "W"}),
    ("SetChargingProfile", {"connectorId": 0, "csChargingProfiles": {"chargingProfileId": 9, "stackLevel": 0, "chargingProfilePurpose": "ChargePointMaxProfile", "chargingProfileKind": "Absolute", "chargingSchedule": {"startSchedule": "2020-01-01T00:00:00Z", "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.3}]}}}),
    ("GetCompositeSchedule", {"connectorId": 1, "duration": 3600, "chargingRateUnit": "A"}),
    ("GetCompositeSchedule", {"connectorId": 0, "duration": 600, "chargingRateUnit": "W"}),
    ("TriggerMessage", {"requestedMessage": "MeterValues", "connectorId": 1}),
    ("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"}),
    ("ChangeAvailability", {"connectorId": 2, "type": "Inoperative"}),
    ("ChangeAvailability", {"connectorId": 2, "type": "Operative"}),
    ("DataTransfer", {"vendorId": "evsim-trio", "messageId": "x", "data": "y"}),
    ("DataTransfer", {"vendorId": "other"}),
    ("ClearCache", {}),
    ("GetConfiguration", {}),
    ("ClearChargingProfile", {"id": 9}),
    ("ClearChargingProfile", {}),
    ("UnlockConnector", {"connectorId": 1}),
    ("UnlockConnector", {"connectorId": 2}),
    ("RemoteStopTransaction", {"transactionId": 999}),
    ("GetLocalListVersion", {}),
    ("SendLocalList", {"listVersion": 3, "updateType": "Full", "localAuthorizationList": [{"idTag": "X1", "idTagInfo": {"status": "Accepted"}}]}),
    ("ReserveNow", {"connectorId": 2, "expiryDate": "2099-01-01T00:00:00Z", "idTag": "TAG-0003", "reservationId": 4}),
    ("CancelReservation", {"reservationId": 4}),
    ("GetDiagnostics", {"location": "ftp://127.0.0.1:1/diag"}),
    ("UpdateFirmware", {"location": "ftp://127.0.0.1:1/fw.bin", "retrieveDate": "2020-01-01T00:00:00Z"}),
    ("Reset", {"type": "Hard"}),
]

async def test_explore(tmp_path: Path) -> None:
    template = t.write_template(tmp_path)
    with trio.fail_after(60):
        async with open_ocpp_lib_csms() as peer:
            site = load_site(t.write_site(tmp_path, peer.url, template, count=1))
            async with trio.open_nursery() as nursery:
                sim = await nursery.start(Simulator(site).run)
                await sim.wait_until(lambda c: c.booted == 1)
                sid = sim.stations[0].station_id
                await peer.wait_until(lambda: peer.stations() == {sid})
                for action, payload in CALLS:
                    try:
                        r = await peer.call(sid, action, payload)
                        print("OK ", action, json.dumps(payload)[:80], "->", json.dumps(r)[:300])
                    except CallFailed as e:
                        print("ERR", action, json.dumps(payload)[:80], "->", e)
                    if action == "RemoteStartTransaction":
                        await trio.sleep(2.5)
                await trio.sleep(2)
                await sim.shutdown()
    print("VIOLATIONS")
    for v in peer.violations:
        print(json.dumps(v)[:1500])
    print("messages", [(m["action"], json.dumps(m["payload"])[:200]) for m in peer.messages if m["action"] in ("MeterValues", "DiagnosticsStatusNotification", "FirmwareStatusNotification", "StopTransaction")])
