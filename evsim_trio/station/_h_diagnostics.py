"""GetDiagnostics with a real upload (OCPP 1.6 §5.9), DiagnosticsStatusNotification (§4.4), and
the station-initiated DataTransfer (§4.3).

The handler answers at once with the name of the file it will upload; the upload follows in the
station's nursery: DiagnosticsStatusNotification Uploading, the file generated in memory and sent
to `location`, then Uploaded or UploadFailed, after which the status is Idle again (§4.4: Idle
is only ever *sent* in answer to a TriggerMessage). Readings where the specification is silent:

- `location` names "the directory" to upload to; one ending in "/" gets the file name appended,
  any other is taken as the complete target (so that a CSMS may choose the name). `http(s)://`
  uploads with an HTTP PUT, `ftp://[user[:password]@]host[:port]/path` with STOR in passive mode
  (anonymous without user). Any other scheme fails the upload (UploadFailed, not retried: it
  cannot succeed).
- `retries` counts the attempts *after* the first (absent: none); `retryInterval` (absent: 60 s)
  is waited between attempts. Every failed attempt is logged.
- `startTime`/`stopTime` bound the timestamped log section of the file; the station's current
  state (connectors, configuration) is always included.
- A GetDiagnostics received while an upload runs cancels that upload (it sends no further
  notification) and starts the new one, as OCPP 2.0.1 does for GetLog.
- Notifications are sent only while the station is online and registered; otherwise they are
  skipped (the status is still recorded, for a later TriggerMessage).

Blocking clients (urllib.request, ftplib) run in worker threads with a socket timeout; a thread
abandoned by a cancellation ends on that timeout.
"""

from __future__ import annotations

import contextlib
import ftplib
import functools
import http.client
import io
import logging
import posixpath
import urllib.error
import urllib.request
import weakref
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, quote, unquote, urlsplit

import attrs
import trio

from evsim_trio._names import camel
from evsim_trio.ocpp import TypeConstraintViolation
from evsim_trio.station._clock import format_timestamp, parse_timestamp, utc_now
from evsim_trio.station._handlers import handler

if TYPE_CHECKING:
    from evsim_trio.ocpp import Call
    from evsim_trio.station._station import Station

log = logging.getLogger(__name__)

Payload = dict[str, Any]

# Socket timeout of every blocking operation of an upload (connect, each read or write).
UPLOAD_TIMEOUT = 30.0
DEFAULT_RETRY_INTERVAL = 60
SCHEMES = ("http", "https", "ftp")

# Errors of one upload attempt: transport, protocol (HTTP status, FTP reply), bad URL parts.
UPLOAD_ERRORS: tuple[type[Exception], ...] = (
    OSError,  # includes urllib.error.URLError / HTTPError and socket timeouts
    EOFError,
    ftplib.Error,
    http.client.HTTPException,
    ValueError,  # e.g. a port out of range, a host name that does not encode
)

# The running upload of each station, cancelled by a newer GetDiagnostics.
_UPLOADS: weakref.WeakKeyDictionary[Station, trio.CancelScope] = weakref.WeakKeyDictionary()


class UnsupportedLocation(ValueError):
    """The location's scheme is not one the station can upload to."""


@attrs.frozen
class DiagnosticsRequest:
    """A GetDiagnostics request, read."""

    location: str
    retries: int = 0
    retry_interval: int = DEFAULT_RETRY_INTERVAL
    start_time: datetime | None = None
    stop_time: datetime | None = None

    @classmethod
    def from_payload(cls, payload: Payload) -> DiagnosticsRequest:
        """Read the request; TypeConstraintViolation for values of the wrong type."""
        try:
            return cls(
                location=str(payload["location"]),
                retries=max(0, int(payload.get("retries", 0))),
                retry_interval=max(0, int(payload.get("retryInterval", DEFAULT_RETRY_INTERVAL))),
                start_time=_time(payload.get("startTime")),
                stop_time=_time(payload.get("stopTime")),
            )
        except (TypeError, ValueError) as exc:
            raise TypeConstraintViolation(f"GetDiagnostics: {exc}") from exc


def _time(value: Any) -> datetime | None:
    return None if value is None else parse_timestamp(str(value))


def diagnostics_file_name(station_id: str, now: datetime) -> str:
    """`<station id>-diagnostics-<UTC yyyymmddThhmmssZ>.log`."""
    return f"{station_id}-diagnostics-{now.astimezone(UTC):%Y%m%dT%H%M%SZ}.log"


@handler("GetDiagnostics")
async def get_diagnostics(station: Station, call: Call) -> Payload:
    """1.6 §5.9: name the file at once; generate and upload it in the station's nursery."""
    request = DiagnosticsRequest.from_payload(call.payload)
    file_name = diagnostics_file_name(station.station_id, utc_now())
    station.spawn(run_diagnostics_upload, station, request, file_name)
    return {"fileName": file_name}


async def run_diagnostics_upload(
    station: Station, request: DiagnosticsRequest, file_name: str
) -> None:
    """Upload one diagnostics file with its notifications; replaces a running upload."""
    previous = _UPLOADS.get(station)
    if previous is not None:
        log.info("%s: diagnostics upload superseded by a new GetDiagnostics", station.label)
        previous.cancel()
    scope = trio.CancelScope()
    _UPLOADS[station] = scope
    try:
        with scope:
            await _upload_with_notifications(station, request, file_name)
    finally:
        if _UPLOADS.get(station) is scope:
            del _UPLOADS[station]
            if station.diagnostics_status != "Idle":
                # Ended by the station's stop or reset: nothing uploads any more.
                station.diagnostics_status = "Idle"
                station.changed()


async def _upload_with_notifications(
    station: Station, request: DiagnosticsRequest, file_name: str
) -> None:
    await notify_diagnostics_status(station, "Uploading")
    body = diagnostics_text(
        station, start_time=request.start_time, stop_time=request.stop_time
    ).encode()
    uploaded = await upload(station.label, request, file_name, body)
    await notify_diagnostics_status(station, "Uploaded" if uploaded else "UploadFailed")
    station.diagnostics_status = "Idle"
    station.changed()


async def notify_diagnostics_status(station: Station, status: str) -> None:
    """Record the diagnostics status and send DiagnosticsStatusNotification (§4.4) when online."""
    station.diagnostics_status = status
    station.changed()
    await station.send_notification("DiagnosticsStatusNotification", {"status": status})


async def upload(label: str, request: DiagnosticsRequest, file_name: str, body: bytes) -> bool:
    """Try the upload 1 + `retries` times, `retry_interval` apart; whether one attempt succeeded."""
    attempts = 1 + request.retries
    for attempt in range(1, attempts + 1):
        if attempt > 1:
            await trio.sleep(request.retry_interval)
        try:
            target = await trio.to_thread.run_sync(
                functools.partial(upload_sync, request.location, file_name, body, UPLOAD_TIMEOUT),
                abandon_on_cancel=True,
            )
        except UnsupportedLocation as exc:
            log.warning("%s: diagnostics upload impossible: %s", label, exc)
            return False
        except UPLOAD_ERRORS as exc:
            log.warning(
                "%s: diagnostics upload attempt %d/%d to %s failed: %s",
                label,
                attempt,
                attempts,
                _redacted(request.location),
                exc,
            )
        else:
            log.info("%s: diagnostics uploaded to %s (%d bytes)", label, target, len(body))
            return True
    return False


def upload_sync(location: str, file_name: str, body: bytes, timeout: float) -> str:
    """Upload `body` (blocking; run it in a thread); returns the target, password left out."""
    parts = urlsplit(location)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES or not parts.hostname:
        raise UnsupportedLocation(f"cannot upload to {_redacted(location)!r}")
    if scheme == "ftp":
        return _store_ftp(parts, file_name, body, timeout)
    url = location + quote(file_name) if location.endswith("/") else location
    request = urllib.request.Request(
        url, data=body, method="PUT", headers={"Content-Type": "text/plain; charset=utf-8"}
    )
    # The scheme is checked above (http or https): no file:// or custom openers here.
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the response (and its socket) open
        raise
    return _redacted(url)


def _store_ftp(parts: SplitResult, file_name: str, body: bytes, timeout: float) -> str:
    path = unquote(parts.path)
    directory, name = (path, file_name) if path.endswith("/") or not path else posixpath.split(path)
    # RFC 1738: the URL path is relative to the login directory.
    directory = directory.strip("/")
    with ftplib.FTP(timeout=timeout) as ftp:
        ftp.connect(parts.hostname or "", parts.port or ftplib.FTP_PORT)
        ftp.login(unquote(parts.username or "anonymous"), unquote(parts.password or ""))
        if directory:
            ftp.cwd(directory)
        ftp.storbinary(f"STOR {name}", io.BytesIO(body))
    return _redacted(parts._replace(path=posixpath.join("/", directory, name)).geturl())


def _redacted(url: str) -> str:
    """`url` without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


# -- the diagnostics file -----------------------------------------------------------------------
def diagnostics_text(
    station: Station,
    *,
    start_time: datetime | None = None,
    stop_time: datetime | None = None,
    now: datetime | None = None,
) -> str:
    """The diagnostics file: identity, connectors, configuration, and a log of recent events.

    Only the log lines are timestamped; those outside [start_time, stop_time] are left out.
    """
    now = now or utc_now()
    template = station.template
    identity = station.identity
    lines = [
        "# evsim-trio diagnostics",
        f"station: {station.station_id}",
        f"hashId: {station.hash_id}",
        f"template: {identity.template_name}",
        f"vendor: {template.charge_point_vendor}",
        f"model: {template.charge_point_model}",
        f"chargePointSerialNumber: {identity.charge_point_serial_number}",
        f"chargeBoxSerialNumber: {identity.charge_box_serial_number}",
        f"firmwareVersion: {station.firmware_version or ''}",
        f"generated: {format_timestamp(now)}",
        "period: "
        + " .. ".join(format_timestamp(t) if t else "-" for t in (start_time, stop_time)),
        f"state: {station.state.value}",
        f"registration: {station.registration or '-'}",
        "",
        "[connectors]",
    ]
    for cid, connector in station.connectors.items():
        line = (
            f"{cid}: status={connector.status} errorCode={connector.error_code}"
            f" availability={connector.availability}"
        )
        meter = station.meters.get(cid)
        if meter is not None:
            line += f" energyRegisterWh={meter.energy_register_wh:.1f} powerW={meter.power_w:.1f}"
        tx = connector.transaction
        if tx is not None:
            line += f" transactionId={tx.transaction_id} idTag={tx.id_tag}"
        lines.append(line)
    lines += ["", "[configuration]"]
    lines += [
        f"{entry.key}={entry.value}" + (" (readonly)" if entry.readonly else "")
        for entry in station.configuration.visible_keys()
    ]
    lines += ["", "[log]"]
    lines += [
        f"{format_timestamp(when)} {text}"
        for when, text in sorted(_events(station, now), key=lambda event: event[0])
        if (start_time is None or when >= start_time) and (stop_time is None or when <= stop_time)
    ]
    return "\n".join(lines) + "\n"


def _events(station: Station, now: datetime) -> list[tuple[datetime, str]]:
    """The timestamped events the station keeps, and its counters as of `now`."""
    events: list[tuple[datetime, str]] = []

    def add(stamp: str | None, text: str) -> None:
        if stamp:
            with contextlib.suppress(ValueError):
                events.append((parse_timestamp(stamp), text))

    for cid, connector in station.connectors.items():
        tx = connector.transaction
        if tx is not None:
            add(
                tx.start_timestamp,
                f"connector {cid}: transaction {tx.transaction_id} started for {tx.id_tag}"
                f" (meterStart {tx.meter_start} Wh)",
            )
    for cid, status in station.atg.statuses.items():
        add(status.start_date, f"connector {cid}: ATG started")
        add(status.last_run_date, f"connector {cid}: ATG last run")
        add(status.stopped_date, f"connector {cid}: ATG stopped")
        events.append(
            (
                now,
                f"connector {cid}: ATG statistics: "
                + " ".join(f"{k}={v}" for k, v in status.snapshot().items()),
            )
        )
    stats = attrs.asdict(station.stats)
    events.append((now, "statistics: " + " ".join(f"{camel(k)}={v}" for k, v in stats.items())))
    return events


# -- DataTransfer from the station (§4.3) ------------------------------------------------------
async def data_transfer(
    station: Station, vendor_id: str, message_id: str | None = None, data: str | None = None
) -> Payload:
    """Send DataTransfer (1.6 §4.3) and return the CSMS's answer (`status`, maybe `data`).

    Raises the link's errors (NotConnected, CallTimeout) and the CSMS's CALLERROR as OcppError.
    """
    payload: Payload = {"vendorId": vendor_id}
    if message_id is not None:
        payload["messageId"] = message_id
    if data is not None:
        payload["data"] = data
    return await station.call("DataTransfer", payload)
