"""GetDiagnostics uploads (HTTP PUT, FTP STOR), DiagnosticsStatusNotification and DataTransfer.

The station talks to the embedded CSMS over memory streams; the uploads go to small servers on
127.0.0.1 written here. Uploads run in worker threads, and MockClock would jump virtual time while
a thread works, so these tests run on the real clock: they never sleep, they wait on events.
"""

from __future__ import annotations

import logging
import posixpath
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial
from typing import Any

import attrs
import h11
import pytest
import trio
from memlink import MemoryNetwork, make_station, record_calls, shipped_template, wait_state

from evsim_trio.csms import EmbeddedCsms, StationRecord
from evsim_trio.station import NotConnected, Station, StationState, Transaction, utc_now
from evsim_trio.station._h_diagnostics import (
    DiagnosticsRequest,
    data_transfer,
    diagnostics_text,
    run_diagnostics_upload,
)

Calls = list[tuple[float, str, dict[str, Any]]]
DEADLINE = 10.0


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib honours proxy variables; loopback uploads must not go through one."""
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def csms_network(nursery: trio.Nursery) -> tuple[EmbeddedCsms, MemoryNetwork]:
    csms = EmbeddedCsms(heartbeat_interval=600)
    return csms, MemoryNetwork(nursery, csms.handle_request)


@asynccontextmanager
async def booted(network: MemoryNetwork) -> AsyncIterator[Station]:
    station = make_station(shipped_template(), network.connect())
    station.configuration.set("WebSocketPingInterval", "0")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(station.run)
        await wait_state(station, StationState.BOOTED)
        yield station
        station.stop()
        nursery.cancel_scope.cancel()


async def wait_station(station: Station, predicate: Callable[[], bool]) -> None:
    """Wait until `predicate()` holds, re-checked on every change the station reports."""
    changed = trio.Event()

    def notify(_station: Station) -> None:
        nonlocal changed
        changed.set()
        changed = trio.Event()

    station.on_change = notify
    while not predicate():
        await changed.wait()


def statuses(calls: Calls) -> list[str]:
    return [p["status"] for _, a, p in calls if a == "DiagnosticsStatusNotification"]


async def wait_statuses(csms: EmbeddedCsms, calls: Calls, count: int) -> list[str]:
    await csms.wait_until(lambda: len(statuses(calls)) >= count)
    return statuses(calls)


# -- upload servers --------------------------------------------------------------------------------
@attrs.define
class HttpServer:
    """Answers every request with `status`, after `hold` is set when there is one."""

    status: int = 200
    hold: trio.Event | None = None
    requests: list[tuple[str, str, bytes]] = attrs.field(factory=list)
    port: int = 0
    _arrived: trio.Event = attrs.field(factory=trio.Event)

    async def wait_requests(self, count: int) -> None:
        while len(self.requests) < count:
            await self._arrived.wait()

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
        self._arrived.set()
        self._arrived = trio.Event()
        if self.hold is not None:
            await self.hold.wait()
        response = h11.Response(status_code=self.status, headers=[("content-length", "0")])
        await stream.send_all(connection.send(response) + connection.send(h11.EndOfMessage()))
        await stream.aclose()

    async def serve(self, nursery: trio.Nursery) -> str:
        listeners = await nursery.start(partial(trio.serve_tcp, self.handle, 0, host="127.0.0.1"))
        self.port = listeners[0].socket.getsockname()[1]
        return f"http://127.0.0.1:{self.port}"


@attrs.define
class FtpServer:
    """Just enough FTP for ftplib's login, passive STOR and QUIT; keeps the files in memory."""

    files: dict[str, bytes] = attrs.field(factory=dict)
    logins: list[tuple[str, str]] = attrs.field(factory=list)
    commands: list[str] = attrs.field(factory=list)

    async def handle(self, stream: trio.SocketStream) -> None:
        buffer = b""
        user = cwd = "/"
        passive: trio.SocketListener | None = None

        async def reply(text: str) -> None:
            await stream.send_all(text.encode() + b"\r\n")

        await reply("220 test server")
        while True:
            while b"\r\n" not in buffer:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    return
                buffer += chunk
            line, buffer = buffer.split(b"\r\n", 1)
            verb, _, arg = line.decode().partition(" ")
            self.commands.append(verb)
            if verb == "USER":
                user = arg
                await reply("331 password please")
            elif verb == "PASS":
                self.logins.append((user, arg))
                await reply("230 logged in")
            elif verb == "TYPE":
                await reply("200 type set")
            elif verb == "CWD":
                cwd = posixpath.join(cwd, arg)
                await reply("250 ok")
            elif verb == "PASV":
                passive = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
                port = passive.socket.getsockname()[1]
                await reply(f"227 Entering Passive Mode (127,0,0,1,{port >> 8},{port & 255})")
            elif verb == "STOR" and passive is not None:
                await reply("150 send it")
                data = await passive.accept()
                received = b""
                while chunk := await data.receive_some(65536):
                    received += chunk
                await data.aclose()
                await passive.aclose()
                passive = None
                self.files[posixpath.join(cwd, arg)] = received
                await reply("226 stored")
            elif verb == "QUIT":
                await reply("221 bye")
                return
            else:
                await reply("502 not here")

    async def serve(self, nursery: trio.Nursery, credentials: str = "") -> str:
        listeners = await nursery.start(partial(trio.serve_tcp, self.handle, 0, host="127.0.0.1"))
        return f"ftp://{credentials}127.0.0.1:{listeners[0].socket.getsockname()[1]}"


async def closed_port() -> int:
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


# -- GetDiagnostics over HTTP ----------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/upload/", "/upload/chosen-name.log"])
async def test_get_diagnostics_puts_the_file_over_http_and_notifies(
    nursery: trio.Nursery, csms_network: tuple[EmbeddedCsms, MemoryNetwork], path: str
) -> None:
    csms, network = csms_network
    calls = record_calls(csms)
    server = HttpServer()
    base = await server.serve(nursery)
    with trio.fail_after(DEADLINE):
        async with booted(network) as station:
            answer = await csms.call(
                station.station_id, "GetDiagnostics", {"location": base + path}
            )
            file_name = answer["fileName"]
            assert re.fullmatch(
                re.escape(station.station_id) + r"-diagnostics-\d{8}T\d{6}Z\.log", file_name
            )
            assert await wait_statuses(csms, calls, 2) == ["Uploading", "Uploaded"]
            await wait_station(station, lambda: station.diagnostics_status == "Idle")
    [(method, target, body)] = server.requests
    assert method == "PUT"
    assert target == (path + file_name if path.endswith("/") else path)
    text = body.decode()
    assert f"station: {station.station_id}" in text
    assert f"template: {station.identity.template_name}" in text
    for entry in station.configuration.visible_keys():
        assert f"{entry.key}={entry.value}" in text
    assert "[connectors]" in text
    assert "statistics: callsSent=" in text
    assert not csms.violations


async def test_upload_to_a_closed_port_fails_after_each_retry_logged(
    csms_network: tuple[EmbeddedCsms, MemoryNetwork], caplog: pytest.LogCaptureFixture
) -> None:
    csms, network = csms_network
    calls = record_calls(csms)
    location = f"http://127.0.0.1:{await closed_port()}/diag/"
    payload = {"location": location, "retries": 1, "retryInterval": 0}
    with trio.fail_after(DEADLINE), caplog.at_level(logging.WARNING):
        async with booted(network) as station:
            answer = await csms.call(station.station_id, "GetDiagnostics", payload)
            assert "fileName" in answer
            assert await wait_statuses(csms, calls, 2) == ["Uploading", "UploadFailed"]
            await wait_station(station, lambda: station.diagnostics_status == "Idle")
    failures = [r.getMessage() for r in caplog.records if "upload attempt" in r.getMessage()]
    assert len(failures) == 2
    assert "attempt 1/2" in failures[0]
    assert "attempt 2/2" in failures[1]


async def test_server_error_is_retried_retries_times_then_upload_failed(
    nursery: trio.Nursery, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    calls = record_calls(csms)
    server = HttpServer(status=500)
    base = await server.serve(nursery)
    payload = {"location": base + "/", "retries": 2, "retryInterval": 0}
    with trio.fail_after(DEADLINE):
        async with booted(network) as station:
            await csms.call(station.station_id, "GetDiagnostics", payload)
            assert await wait_statuses(csms, calls, 2) == ["Uploading", "UploadFailed"]
    assert len(server.requests) == 3


async def test_unsupported_scheme_fails_at_once_without_retrying(
    csms_network: tuple[EmbeddedCsms, MemoryNetwork],
) -> None:
    csms, network = csms_network
    calls = record_calls(csms)
    # Retrying would wait 60 s, past the deadline: an impossible upload is not retried.
    payload = {"location": "sftp://127.0.0.1/diag/", "retries": 3, "retryInterval": 60}
    with trio.fail_after(DEADLINE):
        async with booted(network) as station:
            answer = await csms.call(station.station_id, "GetDiagnostics", payload)
            assert answer["fileName"].endswith(".log")
            assert await wait_statuses(csms, calls, 2) == ["Uploading", "UploadFailed"]
    assert not csms.violations


async def test_trigger_message_during_an_upload_reports_uploading(
    nursery: trio.Nursery, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    calls = record_calls(csms)
    server = HttpServer(hold=trio.Event())
    base = await server.serve(nursery)
    trigger = {"requestedMessage": "DiagnosticsStatusNotification"}
    with trio.fail_after(DEADLINE):
        async with booted(network) as station:
            await csms.call(station.station_id, "GetDiagnostics", {"location": base + "/"})
            await server.wait_requests(1)
            assert station.diagnostics_status == "Uploading"
            answer = await csms.call(station.station_id, "TriggerMessage", trigger)
            assert answer == {"status": "Accepted"}
            assert await wait_statuses(csms, calls, 2) == ["Uploading", "Uploading"]
            assert server.hold is not None
            server.hold.set()
            assert await wait_statuses(csms, calls, 3) == ["Uploading", "Uploading", "Uploaded"]
            await wait_station(station, lambda: station.diagnostics_status == "Idle")
            await csms.call(station.station_id, "TriggerMessage", trigger)
            assert (await wait_statuses(csms, calls, 4))[-1] == "Idle"


async def test_a_new_get_diagnostics_replaces_the_running_upload(
    nursery: trio.Nursery, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    calls = record_calls(csms)
    server = HttpServer(hold=trio.Event())
    base = await server.serve(nursery)
    with trio.fail_after(DEADLINE):
        async with booted(network) as station:
            await csms.call(station.station_id, "GetDiagnostics", {"location": base + "/first"})
            await server.wait_requests(1)
            await csms.call(station.station_id, "GetDiagnostics", {"location": base + "/second"})
            await server.wait_requests(2)
            assert server.hold is not None
            server.hold.set()
            # The first upload was cancelled: it reports nothing after its Uploading.
            assert await wait_statuses(csms, calls, 3) == ["Uploading", "Uploading", "Uploaded"]
            await wait_station(station, lambda: station.diagnostics_status == "Idle")
    assert [target for _, target, _ in server.requests] == ["/first", "/second"]


# -- GetDiagnostics over FTP -----------------------------------------------------------------------
async def test_get_diagnostics_stores_the_file_over_ftp_with_credentials(
    nursery: trio.Nursery, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    calls = record_calls(csms)
    server = FtpServer()
    base = await server.serve(nursery, "diag:s%40cret@")
    with trio.fail_after(DEADLINE):
        async with booted(network) as station:
            answer = await csms.call(
                station.station_id, "GetDiagnostics", {"location": base + "/uploads/"}
            )
            assert await wait_statuses(csms, calls, 2) == ["Uploading", "Uploaded"]
    assert server.logins == [("diag", "s@cret")]
    stored = f"/uploads/{answer['fileName']}"
    assert list(server.files) == [stored]
    assert f"station: {station.station_id}" in server.files[stored].decode()
    assert server.commands[-1] == "QUIT"


async def test_ftp_upload_to_a_closed_port_fails(
    csms_network: tuple[EmbeddedCsms, MemoryNetwork],
) -> None:
    csms, network = csms_network
    calls = record_calls(csms)
    location = f"ftp://127.0.0.1:{await closed_port()}/"
    with trio.fail_after(DEADLINE):
        async with booted(network) as station:
            await csms.call(station.station_id, "GetDiagnostics", {"location": location})
            assert await wait_statuses(csms, calls, 2) == ["Uploading", "UploadFailed"]


# -- offline, file content -------------------------------------------------------------------------
async def test_offline_station_uploads_without_notifications(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    network = MemoryNetwork(nursery, EmbeddedCsms().handle_request)
    station = make_station(shipped_template(), network.connect())  # never started
    seen: list[str] = []
    station.on_change = lambda s: seen.append(s.diagnostics_status)
    server = HttpServer()
    base = await server.serve(nursery)
    with trio.fail_after(DEADLINE), caplog.at_level(logging.INFO):
        await run_diagnostics_upload(station, DiagnosticsRequest(base + "/"), "offline.log")
    assert [target for _, target, _ in server.requests] == ["/offline.log"]
    assert seen == ["Uploading", "Uploaded", "Idle"]
    assert station.diagnostics_status == "Idle"
    assert sum("not sent" in r.getMessage() for r in caplog.records) == 2
    assert network.attempts == []


async def test_diagnostics_text_keeps_log_lines_inside_the_requested_period(
    nursery: trio.Nursery,
) -> None:
    network = MemoryNetwork(nursery, EmbeddedCsms().handle_request)  # never used
    station = make_station(shipped_template(), network.connect())
    now = utc_now()
    started = now - timedelta(hours=2)
    station.connectors[1].transaction = Transaction(
        local_id=1,
        connector_id=1,
        id_tag="TAG-9",
        meter_start=0,
        start_timestamp=started.isoformat(),
        transaction_id=42,
    )
    full = diagnostics_text(station, now=now)
    assert "transaction 42 started for TAG-9" in full
    assert f"firmwareVersion: {station.template.firmware_version or ''}" in full
    for entry in station.configuration.visible_keys():
        assert f"{entry.key}={entry.value}" in full
    later = diagnostics_text(station, start_time=now - timedelta(hours=1), now=now)
    assert "transaction 42 started" not in later
    assert "statistics:" in later
    earlier = diagnostics_text(station, stop_time=now - timedelta(hours=1), now=now)
    assert "transaction 42 started" in earlier
    assert "statistics:" not in earlier
    # The current state is reported whatever the period.
    assert "transactionId=42 idTag=TAG-9" in earlier
    assert "transactionId=42 idTag=TAG-9" in later


# -- DataTransfer from the station -----------------------------------------------------------------
async def test_data_transfer_returns_the_csms_answer(
    csms_network: tuple[EmbeddedCsms, MemoryNetwork],
) -> None:
    csms, network = csms_network
    calls = record_calls(csms)
    with trio.fail_after(DEADLINE):
        async with booted(network) as station:
            answer = await data_transfer(station, "evsim", "hello", "some data")
            assert answer == {"status": "Accepted"}

            def unknown(record: StationRecord, payload: dict[str, Any]) -> dict[str, Any]:
                return {"status": "UnknownVendorId"}

            csms.handlers["DataTransfer"] = unknown
            assert await data_transfer(station, "other") == {"status": "UnknownVendorId"}
    sent = [p for _, a, p in calls if a == "DataTransfer"]
    assert sent == [{"vendorId": "evsim", "messageId": "hello", "data": "some data"}]
    assert not csms.violations


async def test_data_transfer_offline_raises_not_connected(nursery: trio.Nursery) -> None:
    network = MemoryNetwork(nursery, EmbeddedCsms().handle_request)
    station = make_station(shipped_template(), network.connect())
    with trio.fail_after(DEADLINE), pytest.raises(NotConnected):
        await data_transfer(station, "evsim")
