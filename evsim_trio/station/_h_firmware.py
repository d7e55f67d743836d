"""UpdateFirmware (OCPP 1.6 §5.19) and FirmwareStatusNotification (§4.5).

The handler answers at once (the response has no fields); the update follows in the station's
nursery: it waits until `retrieveDate`, then notifies Downloading, downloads, Downloaded,
Installing, Installed (or DownloadFailed / InstallationFailed), and reboots with the new firmware
version. The template's `[firmware_upgrade]` section sets the durations, an injected failure, the
version installed and whether the station reboots. Readings where the specification is silent:

- `retries` counts the download attempts *after* the first (absent: none); `retryInterval`
  (absent: 60 s) is waited between attempts. Downloading is notified once, before the first
  attempt; every failed attempt is logged; DownloadFailed follows the last one.
- An `http(s)://` location on the loopback interface (127.0.0.0/8, ::1, localhost) is really
  downloaded (GET, no proxy, the body read and discarded), taking as long as it takes; an HTTP
  error status or a transport error fails the attempt. Any other location is simulated: each
  attempt lasts `download_duration`. `failure = "download"` fails every attempt (after
  `download_duration`, nothing fetched); `failure = "install"` fails the installation.
- A transaction in progress delays the installation until no connector has one (the status stays
  Downloaded meanwhile). Installing lasts `install_duration`.
- On success the new `firmware_version` (`[firmware_upgrade] version`, else the running version
  with its last integer incremented: "1.4.2" -> "1.4.3") is set and persisted, Installed is
  notified, and, with `reset = true`, the station reboots (a Soft reset, once no transaction
  runs): its next BootNotification carries the new version.
- `station.firmware_status` follows the notifications and returns to Idle after Installed or a
  failure (§4.5: Idle is only ever *sent* in answer to a TriggerMessage).
- An UpdateFirmware received while an update runs cancels that update (it sends no further
  notification) and starts the new one. An update does not survive the station's stop or reset.
- Notifications are sent only while the station is online and registered; otherwise they are
  skipped (the status is still recorded, for a later TriggerMessage).
"""

from __future__ import annotations

import functools
import http.client
import ipaddress
import logging
import re
import urllib.error
import urllib.request
import weakref
from datetime import datetime
from typing import TYPE_CHECKING, Any, get_args
from urllib.parse import urlsplit

import attrs
import trio

from evsim_trio.config._ocpp16 import ChargePointStatus
from evsim_trio.ocpp import TypeConstraintViolation
from evsim_trio.station._clock import parse_timestamp, utc_now
from evsim_trio.station._handlers import handler

if TYPE_CHECKING:
    from evsim_trio.config._template import FirmwareUpgrade
    from evsim_trio.ocpp import Call
    from evsim_trio.station._connector import Connector
    from evsim_trio.station._station import Station

log = logging.getLogger(__name__)

Payload = dict[str, Any]

DEFAULT_RETRY_INTERVAL = 60
# Socket timeout of every blocking operation of a real download (connect, each read).
DOWNLOAD_TIMEOUT = 30.0
# BootNotification firmwareVersion is CiString50Type.
MAX_VERSION_LENGTH = 50


_STATUSES: frozenset[str] = frozenset(get_args(ChargePointStatus))
_LAST_INTEGER = re.compile(r"\d+(?=\D*$)")

# The running update of each station, cancelled by a newer UpdateFirmware.
_UPDATES: weakref.WeakKeyDictionary[Station, trio.CancelScope] = weakref.WeakKeyDictionary()


class InjectedFailure(Exception):
    """A download attempt failed because the template's `failure = "download"` says so."""


# Errors of one download attempt: injected, transport, HTTP status, bad URL parts.
DOWNLOAD_ERRORS: tuple[type[Exception], ...] = (
    InjectedFailure,
    OSError,  # includes urllib.error.URLError / HTTPError and socket timeouts
    http.client.HTTPException,
    ValueError,  # e.g. a port out of range
)


@attrs.frozen
class FirmwareRequest:
    """An UpdateFirmware request, read."""

    location: str
    retrieve_date: datetime
    retries: int = 0
    retry_interval: int = DEFAULT_RETRY_INTERVAL

    @classmethod
    def from_payload(cls, payload: Payload) -> FirmwareRequest:
        """Read the request; TypeConstraintViolation for values of the wrong type."""
        try:
            return cls(
                location=str(payload["location"]),
                retrieve_date=parse_timestamp(str(payload["retrieveDate"])),
                retries=max(0, int(payload.get("retries", 0))),
                retry_interval=max(0, int(payload.get("retryInterval", DEFAULT_RETRY_INTERVAL))),
            )
        except (TypeError, ValueError) as exc:
            raise TypeConstraintViolation(f"UpdateFirmware: {exc}") from exc


@handler("UpdateFirmware")
async def update_firmware(station: Station, call: Call) -> Payload:
    """1.6 §5.19: answer at once; download and install in the station's nursery."""
    request = FirmwareRequest.from_payload(call.payload)
    station.spawn(run_firmware_update, station, request)
    return {}


async def run_firmware_update(station: Station, request: FirmwareRequest) -> None:
    """Run one firmware update with its notifications; replaces a running update."""
    previous = _UPDATES.get(station)
    if previous is not None:
        log.info("%s: firmware update superseded by a new UpdateFirmware", station.label)
        previous.cancel()
        _set_status(station, "Idle")
    scope = trio.CancelScope()
    _UPDATES[station] = scope
    try:
        with scope:
            await _update_with_notifications(station, request)
    finally:
        if _UPDATES.get(station) is scope:
            del _UPDATES[station]
            # Ended by the station's stop or reset: nothing downloads or installs any more.
            _set_status(station, "Idle")


async def _update_with_notifications(station: Station, request: FirmwareRequest) -> None:
    settings = station.template.firmware_upgrade
    delay = (request.retrieve_date - utc_now()).total_seconds()
    if delay > 0:
        log.info("%s: firmware download in %.3f s", station.label, delay)
        await trio.sleep(delay)
    await notify_firmware_status(station, "Downloading")
    if not await download(station.label, request, settings):
        await notify_firmware_status(station, "DownloadFailed")
        _set_status(station, "Idle")
        return
    await notify_firmware_status(station, "Downloaded")
    await wait_no_transaction(station)
    await notify_firmware_status(station, "Installing")
    await trio.sleep(settings.install_duration)
    if settings.failure == "install":
        log.warning("%s: firmware installation failed (injected)", station.label)
        await notify_firmware_status(station, "InstallationFailed")
        _set_status(station, "Idle")
        return
    version = next_firmware_version(station.firmware_version, settings.version)
    log.info(
        "%s: firmware %s installed (was %s)",
        station.label,
        version,
        station.firmware_version or "-",
    )
    station.firmware_version = version
    station.persist()
    await notify_firmware_status(station, "Installed")
    _set_status(station, "Idle")
    if settings.reset:
        await wait_no_transaction(station)
        await station.reset("Soft")


def _set_status(station: Station, status: str) -> None:
    if station.firmware_status != status:
        station.firmware_status = status
        station.changed()


async def notify_firmware_status(station: Station, status: str) -> None:
    """Record the firmware status and send FirmwareStatusNotification (§4.5) when online."""
    station.firmware_status = status
    station.changed()
    await station.send_notification("FirmwareStatusNotification", {"status": status})


async def wait_no_transaction(station: Station) -> None:
    """Wait until no connector of the station has a transaction."""
    announced = False
    while True:
        busy = _busy_connector(station)
        if busy is None:
            return
        if not announced:
            announced = True
            log.info("%s: firmware installation waits for the transactions to end", station.label)
        # Every end of a transaction changes its connector's status (to Finishing).
        await busy.wait_status(*(_STATUSES - {busy.status}))


def _busy_connector(station: Station) -> Connector | None:
    for connector in station.connectors.values():
        if connector.transaction is not None:
            return connector
    return None


def next_firmware_version(running: str, configured: str = "") -> str:
    """The version an update installs: `configured`, else `running` with its last integer + 1.

    The integer keeps its width ("1.09" -> "1.10"); a version without digits gets ".1" appended
    ("" -> "1"). The result is at most 50 characters (BootNotification firmwareVersion).
    """
    if configured:
        return configured
    match = _LAST_INTEGER.search(running)
    if match is None:
        version = f"{running}.1" if running else "1"
    else:
        digits = match.group()
        bumped = str(int(digits) + 1).zfill(len(digits))
        version = running[: match.start()] + bumped + running[match.end() :]
    return version[-MAX_VERSION_LENGTH:]


# -- the download ----------------------------------------------------------------------------------
async def download(label: str, request: FirmwareRequest, settings: FirmwareUpgrade) -> bool:
    """Try the download 1 + `retries` times, `retry_interval` apart; whether one succeeded."""
    attempts = 1 + request.retries
    for attempt in range(1, attempts + 1):
        if attempt > 1:
            await trio.sleep(request.retry_interval)
        try:
            await _download_once(label, request.location, settings)
        except DOWNLOAD_ERRORS as exc:
            log.warning(
                "%s: firmware download attempt %d/%d from %s failed: %s",
                label,
                attempt,
                attempts,
                _redacted(request.location),
                exc,
            )
        else:
            return True
    return False


async def _download_once(label: str, location: str, settings: FirmwareUpgrade) -> None:
    if settings.failure == "download":
        await trio.sleep(settings.download_duration)
        raise InjectedFailure("download failure injected by the template")
    if is_loopback_http(location):
        size = await trio.to_thread.run_sync(
            functools.partial(fetch_sync, location, DOWNLOAD_TIMEOUT), abandon_on_cancel=True
        )
        log.info("%s: firmware downloaded from %s (%d bytes)", label, _redacted(location), size)
    else:
        await trio.sleep(settings.download_duration)
        log.info("%s: firmware download from %s simulated", label, _redacted(location))


def is_loopback_http(location: str) -> bool:
    """Whether `location` is an http(s) URL on the loopback interface (really downloaded)."""
    try:
        parts = urlsplit(location)
        host = parts.hostname
    except ValueError:
        return False
    if parts.scheme.lower() not in ("http", "https") or not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def fetch_sync(location: str, timeout: float) -> int:
    """GET `location` (blocking; run it in a thread), bypassing proxies; the body's size."""
    # Loopback only (checked by the caller): never through a proxy from the environment.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    size = 0
    try:
        with opener.open(location, timeout=timeout) as response:
            while chunk := response.read(65536):
                size += len(chunk)
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the response (and its socket) open
        raise
    return size


def _redacted(url: str) -> str:
    """`url` without its password, for logs."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        port = parts.port
    except ValueError:
        return url
    netloc = f"{parts.username}:***@{parts.hostname or ''}" + (f":{port}" if port else "")
    return parts._replace(netloc=netloc).geturl()
