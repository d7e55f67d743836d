"""An independent OCPP-J 1.6 CSMS built on the PyPI ``ocpp`` library, used by tests as a peer.

Run it as a subprocess::

    python tests/peers/ocpp_lib_csms.py --port 0 [--heartbeat-interval 10]
        [--boot-status Accepted|Pending|Rejected] [--trigger ACTION[=JSON] ...]

It listens on 127.0.0.1 with the ``ocpp1.6`` subprotocol; the last path segment of the
connection URL is the station id. Every station-initiated 1.6 action gets a valid answer.

Standard output carries JSON lines only, each flushed at once:

- ``{"event": "listening", "port": N}`` first;
- ``{"event": "connected" | "disconnected", "station": id, ...}``;
- ``{"event": "message", "station": id, "action": ..., "unique_id": ..., "payload": ...}``
  for every CALL received;
- ``{"event": "response", "station": id, "action": ..., "unique_id": ..., "payload": ...}``
  for every CALLRESULT this CSMS sends;
- ``{"event": "violation", "station": id, "detail": "...", ...}`` for every invalid frame,
  schema violation or protocol error seen (one line each);
- ``{"event": "call_result" | "call_error", "station": id, "action": ..., ...}`` for the
  outcome of every CSMS-initiated call (asked for with ``--trigger`` or on the control
  channel): ``payload`` is the station's CALLRESULT; a ``call_error`` has ``error_code`` and
  ``description`` (``error_code`` null when there was no CALLERROR: no answer in time, the
  connection closed, or a CALLRESULT that fails the schema);
- ``{"event": "control_error", "ref": ..., "detail": "..."}`` for a control command that
  could not be carried out;
- ``{"event": "stopped"}`` last, on a clean shutdown (SIGTERM or SIGINT, exit status 0).

Control channel: standard input takes JSON lines, one command each::

    {"op": "call", "station": "CS-1", "action": "Reset", "payload": {"type": "Soft"}, "ref": "r1"}

sends that CALL on the station's current connection (after checking it is a valid
CSMS-initiated 1.6 request), and its ``call_result`` / ``call_error`` line carries the same
``ref``. End of input just ends the channel; the CSMS keeps serving.

How violations are found (ocpp 2.1.0 internals, checked at start-up):

- The library validates incoming CALL payloads (and the CALLRESULTs it sends) with
  jsonschema in ``ChargePoint._handle_call`` and answers a CALLERROR when that fails. Its
  cached ``Draft4Validator`` objects are replaced by ones with a format checker, since the
  library's own validators ignore ``"format": "date-time"``. Every CALLERROR the library
  sends goes through ``ChargePoint._send``, which is overridden to report it.
- The library only logs frames it cannot unpack (no CALLERROR) and accepts any CALLERROR
  shape, so ``route_message`` is overridden to check the OCPP-J framing first.
- ``ChargePoint.call`` validates the request before sending and the CALLRESULT it gets back;
  a failure there, a CALLERROR from the station or no answer is reported.
- Protocol rules this CSMS can see: no CALL but BootNotification before a boot was answered,
  none while Rejected, none while Pending unless asked for with TriggerMessage; no reused
  message ids on a connection; no StopTransaction for a transaction id never handed out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import decimal
import itertools
import json
import logging
import os
import re
import signal
import sys
import threading
import urllib.parse
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import jsonschema
import ocpp.messages
from ocpp.charge_point import (
    camel_to_snake_case,
    remove_nones,
    serialize_as_dict,
    snake_to_camel_case,
)
from ocpp.exceptions import OCPPError, UnknownCallErrorCodeError
from ocpp.messages import Call, CallResult, MessageType
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.datatypes import IdTagInfo
from ocpp.v16.enums import Action, AuthorizationStatus
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

LOG = logging.getLogger("ocpp_lib_csms")
OCPP_VERSION = "1.6"
SUBPROTOCOL = "ocpp1.6"
MAX_UNIQUE_ID_LENGTH = 36
SHUTDOWN_GRACE = 1.5  # seconds, twice at most: the test helper kills after 5 s

# OCPP-J 1.6 section 4.2.3 (with the spellings of the 1.6 errata: these are the 1.6 codes).
V16_ERROR_CODES = frozenset(
    {
        "NotImplemented",
        "NotSupported",
        "InternalError",
        "ProtocolError",
        "SecurityError",
        "FormationViolation",
        "PropertyConstraintViolation",
        "OccurenceConstraintViolation",
        "TypeConstraintViolation",
        "GenericError",
    }
)

STATION_INITIATED = frozenset(
    {
        "Authorize",
        "BootNotification",
        "DataTransfer",
        "DiagnosticsStatusNotification",
        "FirmwareStatusNotification",
        "Heartbeat",
        "MeterValues",
        "StartTransaction",
        "StatusNotification",
        "StopTransaction",
        "LogStatusNotification",
        "SecurityEventNotification",
        "SignCertificate",
        "SignedFirmwareStatusNotification",
    }
)

# The library parses these schemas (and payloads) with decimal.Decimal floats: keep that.
_DECIMAL_SCHEMAS = frozenset(
    {"SetChargingProfile", "RemoteStartTransaction", "GetCompositeScheduleResponse"}
)


def utc_now() -> str:
    """Return the current UTC time as an ISO 8601 string ending in ``Z``."""
    now = datetime.datetime.now(datetime.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def emit(event: str, **fields: Any) -> None:
    """Print one JSON event line on stdout and flush it."""
    sys.stdout.write(json.dumps({"event": event, **fields}, default=str) + "\n")
    sys.stdout.flush()


# --- strict schema validation --------------------------------------------------------------

FORMAT_CHECKER = jsonschema.FormatChecker(formats=())
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z", re.ASCII
)
_URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*\Z")


@FORMAT_CHECKER.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    """RFC 3339 date-time (what JSON schema's ``date-time`` format means)."""
    if not isinstance(value, str):
        return True
    if not _RFC3339.match(value):
        return False
    datetime.datetime.fromisoformat(value.upper())  # ranges: month 13, hour 25...
    return True


@FORMAT_CHECKER.checks("uri", raises=ValueError)
def _is_uri(value: object) -> bool:
    """An absolute URI: a scheme, and no white space."""
    if not isinstance(value, str):
        return True
    scheme = urllib.parse.urlsplit(value).scheme
    return bool(_URI_SCHEME.match(scheme)) and not any(c.isspace() for c in value)


# (message type id, action) -> the strict validator, for listing every error of a payload.
STRICT_VALIDATORS: dict[tuple[int, str], jsonschema.Draft4Validator] = {}


def install_strict_validators() -> None:
    """Make the library validate ``format`` too, by replacing its cached validators.

    ``ocpp.messages.get_validator`` caches one ``Draft4Validator`` per schema in
    ``ocpp.messages._validators`` under ``"<schema name>_<version>"``, built without a format
    checker. Pre-filling that cache with format-checking validators for every 1.6 schema makes
    every validation the library does (incoming CALLs, our CALLRESULTs, our CALLs, the
    CALLRESULTs we receive) strict. A self-test proves the hook took.
    """
    schema_dir = Path(ocpp.messages.__file__).resolve().parent / "v16" / "schemas"
    names = sorted(path.stem for path in schema_dir.glob("*.json"))
    if not names:
        raise RuntimeError(f"no OCPP 1.6 schemas in {schema_dir}")
    for name in names:
        if name.endswith("Response"):
            message_type, action = MessageType.CallResult, name.removesuffix("Response")
        else:
            message_type, action = MessageType.Call, name
        parse_float = decimal.Decimal if name in _DECIMAL_SCHEMAS else float
        base = ocpp.messages.get_validator(message_type, action, OCPP_VERSION, parse_float)
        strict = jsonschema.Draft4Validator(base.schema, format_checker=FORMAT_CHECKER)
        ocpp.messages._validators[f"{name}_{OCPP_VERSION}"] = strict
        STRICT_VALIDATORS[(message_type, action)] = strict
    _self_test()


def _self_test() -> None:
    """Fail at start-up if the library no longer validates the way this peer relies on."""
    good = {"connectorId": 1, "errorCode": "NoError", "status": "Available", "timestamp": utc_now()}
    ocpp.messages._validate_payload(Call("1", "StatusNotification", good), OCPP_VERSION)
    for bad in (
        {**good, "timestamp": "yesterday"},
        {**good, "status": "Sleeping"},
        {**good, "extra": 1},
    ):
        try:
            ocpp.messages._validate_payload(Call("1", "StatusNotification", bad), OCPP_VERSION)
        except OCPPError:
            continue
        raise RuntimeError(f"ocpp library accepted an invalid StatusNotification: {bad}")
    result = CallResult("1", {"currentTime": "now"}, action="Heartbeat")
    try:
        ocpp.messages._validate_payload(result, OCPP_VERSION)
    except OCPPError:
        return
    raise RuntimeError("ocpp library accepted an invalid HeartbeatResponse")


def schema_errors(message_type: int, action: str | None, payload: object) -> list[str]:
    """Every schema error of a payload, as ``"path: message"`` strings (empty if unknown)."""
    validator = STRICT_VALIDATORS.get((message_type, action)) if action else None
    if validator is None:
        return []
    name = f"{action}Response" if message_type == MessageType.CallResult else action
    if name in _DECIMAL_SCHEMAS:
        # Those schemas were parsed with Decimal (multipleOf 0.1): so must the payload be.
        payload = json.loads(json.dumps(payload, default=str), parse_float=decimal.Decimal)
    errors = sorted(validator.iter_errors(payload), key=lambda e: [str(p) for p in e.path])
    return [f"{'/'.join(str(p) for p in e.path) or '<payload>'}: {e.message}" for e in errors]


# --- CSMS-initiated calls (--trigger) ------------------------------------------------------


def _default_trigger_payloads() -> dict[str, dict[str, Any]]:
    """Valid example payloads for CSMS-initiated actions, for ``--trigger ACTION``."""
    in_an_hour = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    return {
        "CancelReservation": {"reservationId": 1},
        "ChangeAvailability": {"connectorId": 0, "type": "Operative"},
        "ChangeConfiguration": {"key": "HeartbeatInterval", "value": "60"},
        "ClearCache": {},
        "ClearChargingProfile": {},
        "DataTransfer": {"vendorId": "ocpp-lib-csms"},
        "ExtendedTriggerMessage": {"requestedMessage": "Heartbeat"},
        "GetCompositeSchedule": {"connectorId": 1, "duration": 60},
        "GetConfiguration": {},
        "GetDiagnostics": {"location": "ftp://127.0.0.1/diagnostics"},
        "GetInstalledCertificateIds": {"certificateType": "CentralSystemRootCertificate"},
        "GetLocalListVersion": {},
        "GetLog": {
            "logType": "DiagnosticsLog",
            "requestId": 1,
            "log": {"remoteLocation": "ftp://127.0.0.1/log"},
        },
        "RemoteStartTransaction": {"idTag": "OCPPLIB1", "connectorId": 1},
        "RemoteStopTransaction": {"transactionId": 1},
        "ReserveNow": {
            "connectorId": 1,
            "expiryDate": in_an_hour,
            "idTag": "OCPPLIB1",
            "reservationId": 1,
        },
        "Reset": {"type": "Soft"},
        "SendLocalList": {"listVersion": 1, "updateType": "Full", "localAuthorizationList": []},
        "SetChargingProfile": {
            "connectorId": 1,
            "csChargingProfiles": {
                "chargingProfileId": 1,
                "stackLevel": 0,
                "chargingProfilePurpose": "TxDefaultProfile",
                "chargingProfileKind": "Relative",
                "chargingSchedule": {
                    "chargingRateUnit": "A",
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}],
                },
            },
        },
        "TriggerMessage": {"requestedMessage": "Heartbeat"},
        "UnlockConnector": {"connectorId": 1},
        "UpdateFirmware": {"location": "ftp://127.0.0.1/firmware.bin", "retrieveDate": utc_now()},
    }


def parse_trigger(spec: str) -> tuple[str, dict[str, Any]]:
    """``ACTION`` (with an example payload) or ``ACTION={json payload}``, checked here."""
    action, sep, text = spec.partition("=")
    if sep:
        try:
            payload = json.loads(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{action}: payload is not JSON: {exc}") from exc
    else:
        check_action(action)
        defaults = _default_trigger_payloads()
        if action not in defaults:
            raise argparse.ArgumentTypeError(f"{action} needs a payload: {action}={{...}}")
        payload = defaults[action]
    try:
        check_call(action, payload)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return action, payload


def check_action(action: object) -> None:
    """Raise ValueError unless ``action`` is a CSMS-initiated OCPP 1.6 action."""
    if not isinstance(action, str):
        raise ValueError(f"action must be a string, not {action!r}")
    if action in STATION_INITIATED and action != "DataTransfer":
        raise ValueError(f"{action} is not a CSMS-initiated action")
    if not hasattr(call, action) or not isinstance(getattr(call, action), type):
        raise ValueError(f"unknown OCPP 1.6 action {action!r}")


def check_call(action: object, payload: object) -> None:
    """Raise ValueError unless the library would send exactly this valid CSMS-initiated CALL."""
    check_action(action)
    assert isinstance(action, str)
    if not isinstance(payload, dict):
        raise ValueError(f"{action}: payload must be a JSON object")
    errors = schema_errors(MessageType.Call, action, payload)
    if errors:
        raise ValueError(f"{action}: invalid payload: {'; '.join(errors)}")
    try:
        request = build_request(action, payload)
    except TypeError as exc:
        raise ValueError(f"{action}: the ocpp library cannot build the request: {exc}") from exc
    sent = snake_to_camel_case(remove_nones(serialize_as_dict(request)))
    if json.loads(json.dumps(sent, default=str)) != payload:
        raise ValueError(f"{action}: the ocpp library would send {sent} instead of {payload}")


def build_request(action: str, payload: dict[str, Any]) -> Any:
    """The library's request dataclass (``ocpp.v16.call.<Action>``) for a camelCase payload."""
    return getattr(call, action)(**camel_to_snake_case(payload))


# --- the CSMS ------------------------------------------------------------------------------


class Csms:
    """State shared by every connection of this CSMS process."""

    def __init__(
        self,
        *,
        heartbeat_interval: int,
        boot_status: str,
        triggers: list[tuple[str, dict[str, Any]]],
        response_timeout: float,
    ) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.boot_status = boot_status
        self.triggers = triggers
        self.response_timeout = response_timeout
        self.registration: dict[str, str] = {}  # station id -> last boot status answered
        self.triggered: dict[str, set[str]] = {}  # station id -> actions asked for by trigger
        self.transaction_ids = itertools.count(1)
        self.issued_transactions: set[int] = set()
        self.charge_points: dict[str, LibChargePoint] = {}  # station id -> its live connection

    def control(self, line: bytes) -> None:
        """Carry out one control command (a JSON line read from stdin).

        ``{"op": "call", "station": id, "action": ..., "payload": {...}, "ref": ...}`` sends
        that CALL on the station's current connection; its outcome is printed as
        ``call_result`` or ``call_error`` carrying the same ``ref``. A command that cannot be
        carried out (not JSON, unknown op, invalid call, station not connected) is answered
        with ``{"event": "control_error", "ref": ..., "detail": ...}``.
        """
        try:
            command = json.loads(line)
        except ValueError:
            emit("control_error", ref=None, detail=f"command is not JSON: {line[:300]!r}")
            return
        if not isinstance(command, dict):
            emit("control_error", ref=None, detail=f"command is not a JSON object: {command!r}")
            return
        ref = command.get("ref")
        try:
            detail = self._control(command, ref)
        except Exception as exc:
            LOG.exception("control command %r failed", command)
            detail = f"command failed: {exc!r}"
        if detail is not None:
            emit("control_error", ref=ref, detail=detail)

    def _control(self, command: dict[str, Any], ref: object) -> str | None:
        """Start the command; return why it cannot be carried out, or None."""
        op = command.get("op")
        if op != "call":
            return f"unknown op {op!r}"
        action, payload = command.get("action"), command.get("payload", {})
        try:
            check_call(action, payload)
        except ValueError as exc:
            return str(exc)
        station = command.get("station")
        charge_point = self.charge_points.get(station) if isinstance(station, str) else None
        if charge_point is None:
            return f"station {station!r} is not connected"
        assert isinstance(action, str)
        assert isinstance(payload, dict)
        charge_point.start_call(action, payload, ref)
        return None

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Report a handshake that does not offer ``ocpp1.6`` (websockets then answers 400)."""
        offered = [
            protocol.strip()
            for header in request.headers.get_all("Sec-WebSocket-Protocol")
            for protocol in header.split(",")
        ]
        if SUBPROTOCOL not in offered:
            emit(
                "violation",
                station=station_id_of(request.path),
                detail=f"WebSocket handshake does not offer subprotocol {SUBPROTOCOL}"
                f" (offered: {offered})",
            )
        return None

    async def handle(self, connection: ServerConnection) -> None:
        """Serve one station connection with a fresh library ChargePoint."""
        assert connection.request is not None
        station_id = station_id_of(connection.request.path)
        if not station_id:
            emit(
                "violation",
                station=station_id,
                detail=f"no station id in the URL path {connection.request.path!r}",
            )
            await connection.close(1008, "no station id in the URL path")
            return
        emit("connected", station=station_id, path=connection.request.path)
        charge_point = LibChargePoint(station_id, connection, self)
        self.charge_points[station_id] = charge_point
        try:
            await charge_point.start()
        except ConnectionClosed:
            pass
        finally:
            if self.charge_points.get(station_id) is charge_point:
                del self.charge_points[station_id]
            await charge_point.stop_tasks()
            emit(
                "disconnected",
                station=station_id,
                code=connection.close_code,
                reason=connection.close_reason,
            )


def station_id_of(path: str) -> str:
    """The last segment of a request path, percent-decoded."""
    return urllib.parse.unquote(urllib.parse.urlsplit(path).path.split("/")[-1])


class LibChargePoint(ChargePoint):
    """One station connection, handled by the ocpp library, with every anomaly reported."""

    def __init__(self, station_id: str, connection: ServerConnection, csms: Csms) -> None:
        super().__init__(station_id, connection, response_timeout=csms.response_timeout)
        self._csms = csms
        self._call_ids: set[str] = set()  # CALL ids the station used on this connection
        self._incoming: dict[str, tuple[str, Any]] = {}  # unanswered station CALLs
        self._outstanding: dict[str, str] = {}  # our CALL id -> action
        self._answers: dict[str, list[Any]] = {}  # our CALL id -> the station's reply frame
        self._tasks: set[asyncio.Task[None]] = set()
        self._triggers_started = False
        for action, handlers in self.route_map.items():
            if handlers.get("_skip_schema_validation", False):
                raise RuntimeError(f"schema validation is off for {action}")

    def violation(self, detail: str, **fields: Any) -> None:
        """Report one violation of this station."""
        LOG.warning("%s: violation: %s", self.id, detail)
        emit("violation", station=self.id, detail=detail, **fields)

    # --- hooks into the library ------------------------------------------------------------

    async def route_message(self, raw_msg: str | bytes) -> None:
        """Check the OCPP-J framing, then let the library route the frame."""
        if not self._check_frame(raw_msg):
            return
        try:
            await super().route_message(raw_msg)
        except ConnectionClosed:
            raise
        except Exception as exc:
            LOG.exception("%s: the ocpp library failed on %r", self.id, raw_msg)
            self.violation(f"the ocpp library could not process frame {raw_msg!r}: {exc!r}")

    async def _send(self, message: str) -> None:
        """Note our CALLs, report our CALLRESULTs, and report every CALLERROR we answer."""
        frame = json.loads(message)
        if frame[0] == MessageType.Call:
            self._outstanding[frame[1]] = frame[2]
        elif frame[0] in (MessageType.CallResult, MessageType.CallError):
            action, payload = self._incoming.pop(frame[1], (None, None))
            if frame[0] == MessageType.CallResult:
                emit(
                    "response",
                    station=self.id,
                    action=action,
                    unique_id=frame[1],
                    payload=frame[2],
                )
            else:
                _, unique_id, code, description, details = frame
                cause = details.get("cause") if isinstance(details, dict) else None
                if isinstance(cause, str):  # the library puts a multi-line jsonschema report here
                    cause = cause.splitlines()[0] if cause.strip() else None
                self.violation(
                    f"{action} CALL {unique_id!r} answered with CALLERROR {code}: {description}"
                    + (f" ({cause})" if cause else ""),
                    action=action,
                    unique_id=unique_id,
                    error_code=code,
                    errors=schema_errors(MessageType.Call, action, payload),
                )
        await super()._send(message)

    def _check_frame(self, raw: str | bytes) -> bool:
        """Report framing problems; return whether the library should see the frame."""
        if isinstance(raw, bytes):
            self.violation("binary WebSocket frame: OCPP-J uses text frames only")
            try:
                raw = raw.decode("utf-8")
            except UnicodeDecodeError:
                self.violation("binary frame is not UTF-8")
                return False
        try:
            frame = json.loads(raw)
        except ValueError:
            self.violation(f"frame is not valid JSON: {raw[:300]!r}")
            return False
        if not isinstance(frame, list) or not frame:
            self.violation(f"frame is not a non-empty JSON array: {raw[:300]!r}")
            return False
        type_id = frame[0]
        if type(type_id) is not int or type_id not in (2, 3, 4):
            self.violation(f"MessageTypeId {type_id!r} is not 2, 3 or 4: {raw[:300]!r}")
            return False
        unique_id = frame[1] if len(frame) > 1 else None
        if not isinstance(unique_id, str):
            self.violation(f"UniqueId {unique_id!r} is not a string: {raw[:300]!r}")
            return False
        if len(unique_id) > MAX_UNIQUE_ID_LENGTH:
            self.violation(f"UniqueId {unique_id!r} is longer than {MAX_UNIQUE_ID_LENGTH}")
        if type_id == MessageType.Call:
            return self._check_call(frame, raw)
        return self._check_answer(frame, raw)

    def _check_call(self, frame: list[Any], raw: str) -> bool:
        unique_id = frame[1]
        action = frame[2] if len(frame) > 2 else None
        payload = frame[3] if len(frame) > 3 else None
        if isinstance(action, str):
            emit(
                "message",
                station=self.id,
                action=action,
                unique_id=unique_id,
                payload=payload,
            )
        if len(frame) != 4 or not isinstance(action, str):
            self.violation(f"CALL is not [2, id, action, payload]: {raw[:300]!r}")
            return False
        if not isinstance(payload, dict):
            self.violation(f"{action} CALL payload is not a JSON object: {payload!r}")
        if unique_id in self._call_ids:
            self.violation(f"{action} CALL reuses message id {unique_id!r} on this connection")
        self._call_ids.add(unique_id)
        self._check_registration(action)
        self._incoming[unique_id] = (action, payload)
        return True

    def _check_answer(self, frame: list[Any], raw: str) -> bool:
        unique_id = frame[1]
        kind = "CALLRESULT" if frame[0] == MessageType.CallResult else "CALLERROR"
        action = self._outstanding.pop(unique_id, None)
        if action is None:
            self.violation(f"{kind} {unique_id!r} answers no outstanding CALL: {raw[:300]!r}")
            return False
        self._answers[unique_id] = frame
        if frame[0] == MessageType.CallResult:
            if len(frame) != 3 or not isinstance(frame[2], dict):
                self.violation(f"{action} CALLRESULT is not [3, id, {{payload}}]: {raw[:300]!r}")
            return True
        if len(frame) != 5:
            self.violation(
                f"{action} CALLERROR is not [4, id, code, description, {{details}}]: {raw!r}"
            )
            return True
        _, _, code, description, details = frame
        if code not in V16_ERROR_CODES:
            self.violation(f"{action} CALLERROR has error code {code!r}, not an OCPP 1.6 code")
        if not isinstance(description, str):
            self.violation(f"{action} CALLERROR description is not a string: {description!r}")
        if not isinstance(details, dict):
            self.violation(f"{action} CALLERROR details is not a JSON object: {details!r}")
        self.violation(
            f"station answered {action} CALL {unique_id!r} with CALLERROR {code}: {description}",
            action=action,
            unique_id=unique_id,
            error_code=code,
        )
        return True

    def _check_registration(self, action: str) -> None:
        if action == "BootNotification":
            return
        status = self._csms.registration.get(self.id)
        if status is None:
            self.violation(f"{action} sent before a BootNotification was answered")
        elif status == "Rejected":
            self.violation(f"{action} sent while the registration status is Rejected")
        elif status == "Pending" and action not in self._csms.triggered.get(self.id, set()):
            self.violation(f"{action} sent while Pending, without a TriggerMessage asking for it")

    # --- handlers for every station-initiated action ---------------------------------------

    @on(Action.boot_notification)
    def on_boot_notification(self, **kwargs: Any) -> call_result.BootNotification:
        """Answer with the configured registration status and heartbeat interval."""
        self._csms.registration[self.id] = self._csms.boot_status
        return call_result.BootNotification(
            current_time=utc_now(),
            interval=self._csms.heartbeat_interval,
            status=self._csms.boot_status,
        )

    @after(Action.boot_notification)
    def after_boot_notification(self, **kwargs: Any) -> None:
        """Start the ``--trigger`` calls once per connection, after the first boot."""
        if self._csms.triggers and not self._triggers_started:
            self._triggers_started = True
            self._spawn(self._run_triggers())

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run a task for this connection (cancelled when it closes)."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @on(Action.heartbeat)
    def on_heartbeat(self, **kwargs: Any) -> call_result.Heartbeat:
        """Answer with the current time."""
        return call_result.Heartbeat(current_time=utc_now())

    @on(Action.status_notification)
    def on_status_notification(self, **kwargs: Any) -> call_result.StatusNotification:
        """Acknowledge."""
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, **kwargs: Any) -> call_result.Authorize:
        """Accept every id tag."""
        return call_result.Authorize(id_tag_info=IdTagInfo(status=AuthorizationStatus.accepted))

    @on(Action.start_transaction)
    def on_start_transaction(self, **kwargs: Any) -> call_result.StartTransaction:
        """Accept, with a transaction id unique in this CSMS process."""
        transaction_id = next(self._csms.transaction_ids)
        self._csms.issued_transactions.add(transaction_id)
        return call_result.StartTransaction(
            transaction_id=transaction_id,
            id_tag_info=IdTagInfo(status=AuthorizationStatus.accepted),
        )

    @on(Action.stop_transaction)
    def on_stop_transaction(
        self, transaction_id: int, id_tag: str | None = None, **kwargs: Any
    ) -> call_result.StopTransaction:
        """Acknowledge; report a transaction id this CSMS never handed out."""
        if transaction_id not in self._csms.issued_transactions:
            self.violation(f"StopTransaction for transactionId {transaction_id} never issued")
        info = IdTagInfo(status=AuthorizationStatus.accepted) if id_tag is not None else None
        return call_result.StopTransaction(id_tag_info=info)

    @on(Action.meter_values)
    def on_meter_values(self, **kwargs: Any) -> call_result.MeterValues:
        """Acknowledge."""
        return call_result.MeterValues()

    @on(Action.data_transfer)
    def on_data_transfer(self, **kwargs: Any) -> call_result.DataTransfer:
        """Accept."""
        return call_result.DataTransfer(status="Accepted")

    @on(Action.diagnostics_status_notification)
    def on_diagnostics_status_notification(
        self, **kwargs: Any
    ) -> call_result.DiagnosticsStatusNotification:
        """Acknowledge."""
        return call_result.DiagnosticsStatusNotification()

    @on(Action.firmware_status_notification)
    def on_firmware_status_notification(
        self, **kwargs: Any
    ) -> call_result.FirmwareStatusNotification:
        """Acknowledge."""
        return call_result.FirmwareStatusNotification()

    @on(Action.security_event_notification)
    def on_security_event_notification(
        self, **kwargs: Any
    ) -> call_result.SecurityEventNotification:
        """Acknowledge."""
        return call_result.SecurityEventNotification()

    @on(Action.sign_certificate)
    def on_sign_certificate(self, **kwargs: Any) -> call_result.SignCertificate:
        """Accept."""
        return call_result.SignCertificate(status="Accepted")

    @on(Action.log_status_notification)
    def on_log_status_notification(self, **kwargs: Any) -> call_result.LogStatusNotification:
        """Acknowledge."""
        return call_result.LogStatusNotification()

    @on(Action.signed_firmware_status_notification)
    def on_signed_firmware_status_notification(
        self, **kwargs: Any
    ) -> call_result.SignedFirmwareStatusNotification:
        """Acknowledge."""
        return call_result.SignedFirmwareStatusNotification()

    # --- CSMS-initiated calls --------------------------------------------------------------

    async def _run_triggers(self) -> None:
        for action, payload in self._csms.triggers:
            await self._call_and_report(action, payload)

    def start_call(self, action: str, payload: dict[str, Any], ref: object) -> None:
        """Send a CALL asked for on the control channel; its outcome carries ``ref``."""
        self._spawn(self._call_and_report(action, payload, ref=ref))

    async def _call_and_report(
        self, action: str, payload: dict[str, Any], *, ref: object = None
    ) -> None:
        """Send one CSMS-initiated CALL; print ``call_result`` or ``call_error`` for it.

        Exactly one of the two is printed per call (with ``ref`` when the control channel
        asked for it), unless the call was cancelled before it was sent.
        """
        if action in ("TriggerMessage", "ExtendedTriggerMessage"):
            self._csms.triggered.setdefault(self.id, set()).add(payload["requestedMessage"])
        unique_id = str(uuid.uuid4())
        tag = {} if ref is None else {"ref": ref}

        def failed(error_code: object, description: object, **fields: Any) -> None:
            emit(
                "call_error",
                station=self.id,
                action=action,
                unique_id=unique_id,
                error_code=error_code,
                description=description,
                **fields,
                **tag,
            )

        def succeeded(result: object) -> None:
            emit(
                "call_result",
                station=self.id,
                action=action,
                unique_id=unique_id,
                payload=result,
                **tag,
            )

        try:
            await self.call(build_request(action, payload), suppress=False, unique_id=unique_id)
        except (OCPPError, UnknownCallErrorCodeError) as exc:
            answer = self._answers.get(unique_id)
            if answer is not None and answer[0] == MessageType.CallError:
                # Already reported as a violation when it arrived.
                failed(
                    answer[2] if len(answer) > 2 else None,
                    answer[3] if len(answer) > 3 else None,
                    details=answer[4] if len(answer) > 4 else None,
                )
            else:
                result = answer[2] if answer is not None and len(answer) > 2 else None
                self.violation(
                    f"{action} CALLRESULT {unique_id!r} fails the schema: {exc}",
                    action=action,
                    unique_id=unique_id,
                    errors=schema_errors(MessageType.CallResult, action, result),
                )
                failed(getattr(exc, "code", None), str(exc), payload=result)
        except TimeoutError:
            self.violation(
                f"no answer to {action} CALL {unique_id!r} within {self._response_timeout} s",
                action=action,
                unique_id=unique_id,
            )
            failed(None, f"no answer within {self._response_timeout} s")
        except ConnectionClosed:
            failed(None, "the connection closed before the answer")
        except asyncio.CancelledError:
            # The connection closed. The answer may have arrived just before: report it.
            answer = self._answers.get(unique_id)
            if answer is None:
                if unique_id in self._outstanding:
                    failed(None, "the connection closed before the answer")
            elif answer[0] == MessageType.CallError:
                failed(
                    answer[2] if len(answer) > 2 else None,
                    answer[3] if len(answer) > 3 else None,
                    details=answer[4] if len(answer) > 4 else None,
                )
            else:
                result = answer[2] if len(answer) > 2 else None
                errors = schema_errors(MessageType.CallResult, action, result)
                if errors:
                    self.violation(
                        f"{action} CALLRESULT {unique_id!r} fails the schema: {errors[0]}",
                        action=action,
                        unique_id=unique_id,
                        errors=errors,
                    )
                    failed(None, f"the CALLRESULT fails the schema: {errors[0]}", payload=result)
                else:
                    succeeded(result)
            raise
        except Exception as exc:
            # E.g. the library failing to build its result dataclass from the payload.
            LOG.exception("%s: %s call failed", self.id, action)
            self.violation(
                f"{action} CALLRESULT {unique_id!r} could not be processed: {exc!r}",
                action=action,
                unique_id=unique_id,
            )
            failed(None, f"the CALLRESULT could not be processed: {exc!r}")
        else:
            answer = self._answers.get(unique_id)
            succeeded(answer[2] if answer else None)
        finally:
            self._outstanding.pop(unique_id, None)
            self._answers.pop(unique_id, None)

    async def stop_tasks(self) -> None:
        """Cancel the trigger calls still running for this connection."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task


# --- entry point ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--heartbeat-interval", type=int, default=60)
    parser.add_argument(
        "--boot-status", choices=("Accepted", "Pending", "Rejected"), default="Accepted"
    )
    parser.add_argument(
        "--trigger",
        type=parse_trigger,
        nargs="+",
        action="extend",
        default=[],
        metavar="ACTION[=JSON]",
        help="CSMS-initiated calls to send, in order, after a station's first boot",
    )
    parser.add_argument("--response-timeout", type=float, default=30.0)
    parser.add_argument("--log-level", default="WARNING")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or SIGINT."""
    csms = Csms(
        heartbeat_interval=args.heartbeat_interval,
        boot_status=args.boot_status,
        triggers=args.trigger,
        response_timeout=args.response_timeout,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    control = loop.create_task(read_control(csms))
    server = await serve(
        csms.handle,
        args.host,
        args.port,
        subprotocols=[SUBPROTOCOL],
        process_request=csms.process_request,
    )
    try:
        port = next(iter(server.sockets)).getsockname()[1]
        emit("listening", port=port)
        await stop.wait()
        LOG.info("stopping")
    finally:
        control.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await control
        await shut_down(server)
    emit("stopped")
    return 0


async def read_control(csms: Csms) -> None:
    """Feed every line of stdin to ``csms.control``, until end of file.

    A daemon thread does the blocking reads (with ``os.read``, so that it holds no lock of
    ``sys.stdin`` at exit): stdin may be a pipe, a terminal, a file or ``/dev/null``.
    """
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[bytes] = asyncio.Queue()

    def reader() -> None:
        while True:
            try:
                chunk = os.read(0, 65536)
            except OSError:
                chunk = b""
            try:
                loop.call_soon_threadsafe(chunks.put_nowait, chunk)
            except RuntimeError:  # the loop is closed
                return
            if not chunk:
                return

    threading.Thread(target=reader, name="control", daemon=True).start()
    buffer = b""
    while chunk := await chunks.get():
        *lines, buffer = (buffer + chunk).split(b"\n")
        for line in lines:
            if line.strip():
                csms.control(line)
    if buffer.strip():
        csms.control(buffer)


async def shut_down(server: Server) -> None:
    """Close every connection (1001), but never wait long for clients that do not answer."""
    server.close()
    try:
        await asyncio.wait_for(server.wait_closed(), SHUTDOWN_GRACE)
    except TimeoutError:
        LOG.warning("connections still open %s s after closing: aborting them", SHUTDOWN_GRACE)
        for connection in list(server.all_connections):
            connection.transport.abort()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), SHUTDOWN_GRACE)


def main(argv: list[str] | None = None) -> int:
    """Start-up: logging to stderr, strict validators, then serve."""
    # Installed before parsing, since --trigger payloads are validated with them.
    install_strict_validators()
    args = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s ocpp_lib_csms %(levelname)s %(name)s: %(message)s",
    )
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
