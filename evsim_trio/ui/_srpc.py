"""SRPC `ui0.0.1` frames, sans-I/O: parse and check requests, encode responses.

A request is `[uuid, procedureName, payload]`, a response `[uuid, payload]`, the server push
`["refresh"]`. Every check happens here, before the simulator sees anything: the frame is JSON,
an array of three, its uuid a UUID string, its procedure one we have a schema for, its payload
valid against that schema. A failed check raises `RequestError`, which carries the failure
response to send back; the connection stays open.
"""

from __future__ import annotations

import json
import uuid as uuid_module
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs
import fastjsonschema

from evsim_trio._resources import data_dir

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "PROCEDURE_ALIASES",
    "PROTOCOL_VERSION",
    "REFRESH_FRAME",
    "SUBPROTOCOL",
    "PayloadValidator",
    "Request",
    "RequestError",
    "TokenBucket",
    "encode_response",
    "failure",
    "parse_frame",
]

PROTOCOL_VERSION: Final = "0.0.1"
SUBPROTOCOL: Final = f"ui{PROTOCOL_VERSION}"
MAX_PAYLOAD_BYTES: Final = 1024 * 1024
REFRESH_FRAME: Final = '["refresh"]'
# The longest request id we echo back in a failure response when it is not a valid UUID.
_MAX_ECHOED_ID = 100

PROCEDURE_ALIASES: Final[Mapping[str, str]] = {
    # Spellings of the reference README's examples; the reference itself uses camelCase.
    "Heartbeat": "heartbeat",
    "StatusNotification": "statusNotification",
}


def failure(error: str, **extra: Any) -> dict[str, Any]:
    """A failure response payload naming the problem."""
    return {"status": "failure", "error": error, **extra}


class RequestError(Exception):
    """A request failed a check; `response` is the failure payload to send back for `uuid`."""

    def __init__(self, error: str, *, uuid: str | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.uuid = uuid

    @property
    def response(self) -> dict[str, Any]:
        """The failure payload."""
        return failure(self.error)

    def frame(self) -> str:
        """The whole response frame: `[uuid or null, failure payload]`."""
        return encode_response(self.uuid, self.response)


@attrs.frozen
class Request:
    """A checked request: its id, its procedure (canonical spelling) and its payload."""

    uuid: str
    procedure: str
    payload: dict[str, Any]


class PayloadValidator:
    """The payload schemas of every procedure (`schemas/ui/<procedure>.json`), compiled once."""

    def __init__(self, directory: Path | None = None) -> None:
        directory = directory if directory is not None else data_dir("schemas") / "ui"
        self._validators: dict[str, Any] = {}
        for path in sorted(directory.glob("*.json")):
            schema = json.loads(path.read_text(encoding="utf-8"))
            self._validators[path.stem] = fastjsonschema.compile(schema)

    @property
    def procedures(self) -> frozenset[str]:
        """The procedures there is a schema for."""
        return frozenset(self._validators)

    def canonical(self, procedure: str) -> str:
        """The procedure's canonical name; raises RequestError when it is unknown."""
        name = PROCEDURE_ALIASES.get(procedure, procedure)
        if name not in self._validators:
            shown = procedure if len(procedure) <= 64 else procedure[:64] + "..."
            raise RequestError(f"unknown procedure {shown!r}")
        return name

    def validate(self, procedure: str, payload: Any) -> dict[str, Any]:
        """Check `payload` against the schema of (canonical) `procedure`; raises RequestError."""
        if not isinstance(payload, dict):
            raise RequestError(
                f"{procedure}: payload must be a JSON object, got {_json_type(payload)}"
            )
        try:
            self._validators[procedure](payload)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise RequestError(f"{procedure}: invalid payload: {exc.message}") from None
        return payload


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _echoable(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= _MAX_ECHOED_ID else None


def parse_frame(data: str | bytes, validator: PayloadValidator) -> Request:
    """Parse and check one request frame; raises RequestError with the response to send."""
    if _too_large(data):
        raise RequestError(f"request larger than {MAX_PAYLOAD_BYTES} bytes")
    try:
        message = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(f"request is not valid JSON: {exc}") from None
    if not isinstance(message, list):
        raise RequestError(f"request must be a JSON array, got {_json_type(message)}")
    request_id = _echoable(message[0]) if message else None
    if len(message) != 3:
        raise RequestError(
            f"request must be [uuid, procedureName, payload], got an array of {len(message)}",
            uuid=request_id,
        )
    raw_id, procedure, payload = message
    if request_id is None or not _is_uuid(request_id):
        raise RequestError(
            f"request id must be a UUID string, got {json.dumps(raw_id)[:_MAX_ECHOED_ID]}",
            uuid=request_id,
        )
    if not isinstance(procedure, str):
        raise RequestError(
            f"procedure name must be a string, got {_json_type(procedure)}", uuid=request_id
        )
    try:
        name = validator.canonical(procedure)
        checked = validator.validate(name, payload)
    except RequestError as exc:
        exc.uuid = request_id
        raise
    return Request(request_id, name, checked)


def _too_large(data: str | bytes) -> bool:
    if isinstance(data, bytes) or len(data) * 4 <= MAX_PAYLOAD_BYTES:
        return len(data) > MAX_PAYLOAD_BYTES
    # At most 4 UTF-8 bytes per character: only long texts need encoding to be measured.
    return len(data.encode("utf-8", "surrogatepass")) > MAX_PAYLOAD_BYTES


def _is_uuid(value: str) -> bool:
    try:
        uuid_module.UUID(value)
    except ValueError:
        return False
    return True


def encode_response(uuid: str | None, payload: Mapping[str, Any]) -> str:
    """A response frame `[uuid, payload]` as compact JSON text."""
    return json.dumps([uuid, payload], separators=(",", ":"), ensure_ascii=False)


class TokenBucket:
    """A token bucket rate limiter; time is passed in, so it is tested without a clock.

    Holds at most `capacity` tokens, refilled at `rate` tokens per second; each request takes one.
    """

    def __init__(self, capacity: float, rate: float, now: float) -> None:
        self.capacity = capacity
        self.rate = rate
        self._tokens = capacity
        self._stamp = now

    def take(self, now: float) -> bool:
        """Take a token if there is one; False means the request is over the rate."""
        elapsed = max(0.0, now - self._stamp)
        self._stamp = now
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
