"""Firmware Management, Local Auth List Management and Reservation against a CSMS we did not write.

One scenario per profile (issue 5): a station run by a `Simulator` talks over a real WebSocket
to the independent CSMS built on the PyPI ``ocpp`` library (tests/peers/ocpp_lib_csms.py),
which validates every frame both ways and reports each violation. Each test drives the
CSMS-initiated calls through the peer's control channel (`OcppLibCsms.call`) and waits for the
station messages the peer prints. They run on the real clock; the template copies in tmp_path
make the firmware update and the reboot instant.
"""

from __future__ import annotations

import tomllib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import h11
import pytest
import tomli_w
import trio
from ocpp_lib_peer import OcppLibCsms, open_ocpp_lib_csms

from evsim_trio._resources import data_dir
from evsim_trio.config import load_site
from evsim_trio.simulator import Simulator
from evsim_trio.station import Station
from evsim_trio.station._clock import format_timestamp, parse_timestamp, utc_now

pytestmark = pytest.mark.integration

TEMPLATES = data_dir("station_templates")
DEADLINE = 15  # seconds, per scenario (each takes a few)
RESERVED_TAG = "TAG-0001"
OTHER_TAG = "TAG-0002"

Payload = dict[str, Any]


# -- set-up ----------------------------------------------------------------------------------------
def write_template(tmp_path: Path, **overrides: Any) -> Path:
    """The shipped two-connector AC template with `overrides` (top-level keys), in tmp_path."""
    shipped = TEMPLATES / "ac-3phase-2conn.toml"
    data = tomllib.loads(shipped.read_text())
    data.update(overrides)
    data["authorization_file"] = (shipped.parent / data["authorization_file"]).as_posix()
    path = tmp_path / "ac-3phase-2conn-interop.toml"
    path.write_text(tomli_w.dumps(data))
    return path


def write_site(tmp_path: Path, url: str, template: Path) -> Path:
    """A site config in tmp_path with one station of `template`, no embedded CSMS."""
    path = tmp_path / "site.toml"
    path.write_text(
        f'[simulator]\nseed = 7\nstate_dir = "{(tmp_path / "state").as_posix()}"\n'
        f"[ui_server]\nenabled = false\n"
        f'[csms]\nenabled = false\n[supervision]\nurls = ["{url}"]\n'
        f'[[stations]]\ntemplate = "{template.as_posix()}"\ncount = 1\n'
    )
    return path


@attrs.define
class Interop:
    """One running station, the peer it talks to, and the simulator running it."""

    peer: OcppLibCsms
    simulator: Simulator
    station_object: Station

    @property
    def station(self) -> str:
        """The station id."""
        return self.station_object.station_id

    async def call(self, action: str, payload: Payload) -> Payload:
        """A CSMS-initiated CALL to the station; its CALLRESULT payload."""
        return await self.peer.call(self.station, action, payload)

    def mark(self) -> int:
        """The index of the next message the peer will receive (for `since=`)."""
        return len(self.peer.messages)

    def sent(self, action: str, *, since: int = 0) -> list[Payload]:
        """The station's CALLs of `action` the peer received from index `since` on."""
        return [
            m
            for m in self.peer.messages[since:]
            if m["station"] == self.station and m["action"] == action
        ]

    async def next_message(
        self, action: str, *, since: int, where: Callable[[Payload], bool] = lambda p: True
    ) -> Payload:
        """The first CALL of `action` from the station from index `since` whose payload fits."""

        def found() -> list[Payload]:
            return [m for m in self.sent(action, since=since) if where(m["payload"])]

        await self.peer.wait_until(lambda: bool(found()))
        return found()[0]

    async def answer_to(self, message: Payload) -> Payload:
        """The CALLRESULT payload the peer sent for one of the station's CALLs."""

        def found() -> list[Payload]:
            return [
                r
                for r in self.peer.responses
                if r["station"] == self.station and r["unique_id"] == message["unique_id"]
            ]

        await self.peer.wait_until(lambda: bool(found()))
        payload: Payload = found()[0]["payload"]
        return payload

    async def status(self, connector_id: int, status: str, *, since: int) -> Payload:
        """The first StatusNotification of `connector_id` with `status` from index `since`."""
        return await self.next_message(
            "StatusNotification",
            since=since,
            where=lambda p: p["connectorId"] == connector_id and p["status"] == status,
        )

    def assert_clean(self) -> None:
        """No violation, no CALLERROR either way, no refused control command, no timeout."""
        self.peer.assert_no_violations()
        assert self.peer.call_errors == []
        assert self.peer.control_errors == []
        counts = self.simulator.counts()
        assert counts.call_errors == counts.call_timeouts == 0


@asynccontextmanager
async def interop(tmp_path: Path, **template_overrides: Any) -> AsyncIterator[Interop]:
    """A peer and one booted station on a template with `template_overrides`; checks on exit."""
    template = write_template(tmp_path, **template_overrides)
    async with open_ocpp_lib_csms() as peer:
        site = load_site(write_site(tmp_path, peer.url, template))
        async with trio.open_nursery() as nursery:
            simulator: Simulator = await nursery.start(Simulator(site).run)
            await simulator.wait_until(lambda counts: counts.booted == 1)
            (station,) = simulator.stations
            await peer.wait_until(lambda: peer.stations() == {station.station_id})
            running = Interop(peer, simulator, station)
            # Settled: the boot StatusNotification of every connector is in, so that none
            # reports a status the scenario has already set (e.g. Reserved) a second time.
            await peer.wait_until(
                lambda: (
                    {m["payload"]["connectorId"] for m in running.sent("StatusNotification")}
                    == set(station.connectors)
                )
            )
            yield running
            running.assert_clean()
            await simulator.shutdown()
    running.assert_clean()


def now_plus(seconds: float) -> str:
    """An OCPP timestamp `seconds` from now."""
    return format_timestamp(utc_now() + timedelta(seconds=seconds))


# -- an HTTP server on loopback: GET serves the firmware, PUT takes the diagnostics ------------
@attrs.define
class FileServer:
    """GET answers `firmware` (200); PUT stores the body under its path (200)."""

    firmware: bytes = b"\x7fEVSIM-FIRMWARE" * 4096
    requests: list[tuple[str, str]] = attrs.field(factory=list)
    uploads: dict[str, bytes] = attrs.field(factory=dict)

    async def handle(self, stream: trio.SocketStream) -> None:
        """Serve one request on `stream`, then close it."""
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
        self.requests.append((method, target))
        if method == "PUT":
            self.uploads[target] = body
        answer = self.firmware if method == "GET" else b""
        response = h11.Response(status_code=200, headers=[("content-length", str(len(answer)))])
        await stream.send_all(
            connection.send(response)
            + connection.send(h11.Data(data=answer))
            + connection.send(h11.EndOfMessage())
        )
        await stream.aclose()

    async def serve(self, nursery: trio.Nursery) -> str:
        """Listen on 127.0.0.1 (a free port) in `nursery`; the base URL."""
        listeners = await nursery.start(partial(trio.serve_tcp, self.handle, 0, host="127.0.0.1"))
        return f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"


# -- Firmware Management ---------------------------------------------------------------------------
async def test_firmware_management_against_the_ocpp_library_csms_gives_no_violation(
    tmp_path: Path,
) -> None:
    overrides = {
        "reset_time": 0,
        "firmware_upgrade": {"download_duration": 0, "install_duration": 0},
    }
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as servers:
            server = FileServer()
            base = await server.serve(servers)
            async with interop(tmp_path, **overrides) as run:
                (first_boot,) = run.sent("BootNotification")
                assert first_boot["payload"]["firmwareVersion"] == "1.4.2"

                # UpdateFirmware from loopback, now: really downloaded, installed, rebooted.
                mark = run.mark()
                update = {"location": f"{base}/firmware/ac22.bin", "retrieveDate": now_plus(0)}
                assert await run.call("UpdateFirmware", update) == {}
                boot = await run.next_message("BootNotification", since=mark)
                assert (await run.answer_to(boot))["status"] == "Accepted"
                statuses = [m["payload"]["status"] for m in run.sent("FirmwareStatusNotification")]
                assert statuses == ["Downloading", "Downloaded", "Installing", "Installed"]
                assert boot["payload"]["firmwareVersion"] == "1.4.3"
                assert ("GET", "/firmware/ac22.bin") in server.requests
                # The reboot closed the connection after Installed, before the new boot.
                installed = run.sent("FirmwareStatusNotification", since=mark)[-1]
                between = run.peer.events[
                    run.peer.events.index(installed) : run.peer.events.index(boot)
                ]
                assert any(
                    e["event"] == "disconnected" and e["station"] == run.station for e in between
                )

                # TriggerMessage FirmwareStatusNotification: Idle once the update is over.
                mark = run.mark()
                trigger = {"requestedMessage": "FirmwareStatusNotification"}
                assert await run.call("TriggerMessage", trigger) == {"status": "Accepted"}
                idle = await run.next_message("FirmwareStatusNotification", since=mark)
                assert idle["payload"] == {"status": "Idle"}

                # GetDiagnostics to an HTTP PUT server: Uploading, Uploaded, the file is there.
                mark = run.mark()
                answer = await run.call("GetDiagnostics", {"location": f"{base}/diagnostics/"})
                file_name = answer["fileName"]
                assert file_name.startswith(f"{run.station}-diagnostics-")
                uploaded = await run.next_message(
                    "DiagnosticsStatusNotification",
                    since=mark,
                    where=lambda p: p["status"] != "Uploading",
                )
                statuses = [
                    m["payload"]["status"]
                    for m in run.sent("DiagnosticsStatusNotification", since=mark)
                ]
                assert statuses == ["Uploading", "Uploaded"]
                diagnostics = server.uploads[f"/diagnostics/{file_name}"].decode()
                assert f"station: {run.station}" in diagnostics
                assert "firmwareVersion: 1.4.3" in diagnostics

                # TriggerMessage DiagnosticsStatusNotification: Idle once the upload is over.
                # The peer may send the trigger before its answer to Uploaded, and the station
                # is Idle only once it has that answer: wait for both.
                await run.answer_to(uploaded)
                await run.simulator.wait_until(
                    lambda _: run.station_object.diagnostics_status == "Idle"
                )
                mark = run.mark()
                trigger = {"requestedMessage": "DiagnosticsStatusNotification"}
                assert await run.call("TriggerMessage", trigger) == {"status": "Accepted"}
                idle = await run.next_message("DiagnosticsStatusNotification", since=mark)
                assert idle["payload"] == {"status": "Idle"}
            servers.cancel_scope.cancel()
    assert len(run.sent("BootNotification")) == 2
    assert [method for method, _ in server.requests] == ["GET", "PUT"]


# -- Local Auth List Management --------------------------------------------------------------------
async def test_local_auth_list_management_against_the_ocpp_library_csms_gives_no_violation(
    tmp_path: Path,
) -> None:
    listed, added, dropped = "LOCAL-0001", "LOCAL-0002", "LOCAL-0003"
    accepted = {"status": "Accepted", "expiryDate": now_plus(3600)}
    # The template's default (true) sends Authorize on every remote start, whatever the keys:
    # only without it does LocalPreAuthorize decide for a remote start.
    with trio.fail_after(DEADLINE):
        async with interop(tmp_path, must_authorize_at_remote_start=False) as run:
            assert await run.call("GetLocalListVersion", {}) == {"listVersion": 0}

            full = {
                "listVersion": 1,
                "updateType": "Full",
                "localAuthorizationList": [
                    {"idTag": listed, "idTagInfo": accepted},
                    {"idTag": dropped, "idTagInfo": {"status": "Accepted"}},
                ],
            }
            assert await run.call("SendLocalList", full) == {"status": "Accepted"}
            assert await run.call("GetLocalListVersion", {}) == {"listVersion": 1}

            # Differential: one entry added, one removed (no idTagInfo).
            differential = {
                "listVersion": 2,
                "updateType": "Differential",
                "localAuthorizationList": [
                    {"idTag": added, "idTagInfo": {"status": "Accepted"}},
                    {"idTag": dropped},
                ],
            }
            assert await run.call("SendLocalList", differential) == {"status": "Accepted"}
            assert await run.call("GetLocalListVersion", {}) == {"listVersion": 2}
            # The same version again is not newer than the list's.
            assert await run.call("SendLocalList", differential) == {"status": "VersionMismatch"}
            assert await run.call("GetLocalListVersion", {}) == {"listVersion": 2}

            # LocalPreAuthorize: a listed idTag starts without asking the CSMS.
            change = {"key": "LocalPreAuthorize", "value": "true"}
            assert await run.call("ChangeConfiguration", change) == {"status": "Accepted"}
            mark = run.mark()
            remote_start = {"connectorId": 1, "idTag": listed}
            assert await run.call("RemoteStartTransaction", remote_start) == {"status": "Accepted"}
            start = await run.next_message("StartTransaction", since=mark)
            assert start["payload"]["idTag"] == listed
            assert start["payload"]["connectorId"] == 1
            transaction_id = (await run.answer_to(start))["transactionId"]
            await run.status(1, "Charging", since=mark)

            mark = run.mark()
            remote_stop = {"transactionId": transaction_id}
            assert await run.call("RemoteStopTransaction", remote_stop) == {"status": "Accepted"}
            stop = await run.next_message("StopTransaction", since=mark)
            assert stop["payload"]["transactionId"] == transaction_id
            assert stop["payload"]["reason"] == "Remote"
            await run.status(1, "Available", since=mark)
    assert run.sent("Authorize") == []
    assert len(run.sent("StartTransaction")) == len(run.sent("StopTransaction")) == 1


# -- Reservation -----------------------------------------------------------------------------------
async def test_reservation_against_the_ocpp_library_csms_gives_no_violation(
    tmp_path: Path,
) -> None:
    with trio.fail_after(DEADLINE):
        async with interop(tmp_path) as run:
            # ReserveNow connector 1 -> Reserved.
            mark = run.mark()
            reserve = {
                "connectorId": 1,
                "expiryDate": now_plus(3600),
                "idTag": RESERVED_TAG,
                "reservationId": 1,
            }
            assert await run.call("ReserveNow", reserve) == {"status": "Accepted"}
            await run.status(1, "Reserved", since=mark)

            # Another idTag on a connector reserved without a parentIdTag: refused at once.
            refused = run.mark()
            other_start = {"connectorId": 1, "idTag": OTHER_TAG}
            assert await run.call("RemoteStartTransaction", other_start) == {"status": "Rejected"}
            # A later message of the station: the connector is still Reserved, nothing started
            # (no Preparing, no StartTransaction) in between.
            mark = run.mark()
            trigger = {"requestedMessage": "StatusNotification", "connectorId": 1}
            assert await run.call("TriggerMessage", trigger) == {"status": "Accepted"}
            triggered = await run.next_message(
                "StatusNotification", since=mark, where=lambda p: p["connectorId"] == 1
            )
            assert triggered["payload"]["status"] == "Reserved"
            assert [
                m["payload"]["status"]
                for m in run.sent("StatusNotification", since=refused)
                if m["payload"]["connectorId"] == 1
            ] == ["Reserved"]
            assert run.sent("StartTransaction", since=refused) == []

            # The reserved idTag: StartTransaction carries the reservationId.
            mark = run.mark()
            reserved_start = {"connectorId": 1, "idTag": RESERVED_TAG}
            assert await run.call("RemoteStartTransaction", reserved_start) == {
                "status": "Accepted"
            }
            start = await run.next_message("StartTransaction", since=mark)
            assert start["payload"]["idTag"] == RESERVED_TAG
            assert start["payload"]["connectorId"] == 1
            assert start["payload"]["reservationId"] == 1
            transaction_id = (await run.answer_to(start))["transactionId"]
            await run.status(1, "Charging", since=mark)
            mark = run.mark()
            remote_stop = {"transactionId": transaction_id}
            assert await run.call("RemoteStopTransaction", remote_stop) == {"status": "Accepted"}
            stop = await run.next_message("StopTransaction", since=mark)
            assert stop["payload"]["transactionId"] == transaction_id
            await run.status(1, "Available", since=mark)
            # The reservation was consumed: cancelling it now is Rejected.
            assert await run.call("CancelReservation", {"reservationId": 1}) == {
                "status": "Rejected"
            }

            # ReserveNow again, then CancelReservation -> Available.
            mark = run.mark()
            reserve = {**reserve, "reservationId": 2, "expiryDate": now_plus(3600)}
            assert await run.call("ReserveNow", reserve) == {"status": "Accepted"}
            await run.status(1, "Reserved", since=mark)
            mark = run.mark()
            assert await run.call("CancelReservation", {"reservationId": 2}) == {
                "status": "Accepted"
            }
            await run.status(1, "Available", since=mark)

            # A reservation expiring shortly: Available at its expiryDate.
            mark = run.mark()
            expiry = now_plus(2)
            reserve = {**reserve, "reservationId": 3, "expiryDate": expiry}
            assert await run.call("ReserveNow", reserve) == {"status": "Accepted"}
            await run.status(1, "Reserved", since=mark)
            mark = run.mark()
            available = await run.status(1, "Available", since=mark)
            assert utc_now() >= parse_timestamp(expiry)
            if "timestamp" in available["payload"]:
                assert parse_timestamp(available["payload"]["timestamp"]) >= parse_timestamp(expiry)
            assert await run.call("CancelReservation", {"reservationId": 3}) == {
                "status": "Rejected"
            }
    (start,) = run.sent("StartTransaction")
    assert start["payload"]["idTag"] == RESERVED_TAG
