"""Schema validation: every shipped schema compiles, payloads map to the right CALLERROR code."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest

from evsim_trio._resources import data_dir
from evsim_trio.ocpp import (
    FormationViolation,
    NotImplementedOcppError,
    OccurenceConstraintViolation,
    OcppError,
    PropertyConstraintViolation,
    SchemaValidator,
    TypeConstraintViolation,
    get_validator,
    v16,
)

SCHEMA_DIR = data_dir("schemas") / "ocpp" / "1.6"
SCHEMA_FILES = sorted(path.name for path in SCHEMA_DIR.glob("*.json"))
NOW = "2024-05-01T12:00:00Z"


def test_all_78_schema_files_are_shipped() -> None:
    assert len(SCHEMA_FILES) == 78


@pytest.mark.parametrize("file_name", SCHEMA_FILES)
def test_schema_file_compiles_and_validates(file_name: str) -> None:
    stem = file_name.removesuffix(".json")
    is_response = stem.endswith("Response")
    action = stem.removesuffix("Response") if is_response else stem
    validator = SchemaValidator("1.6")  # fresh: this test compiles the file itself
    assert validator.knows(action)
    validate = validator.validate_response if is_response else validator.validate_request
    # {} is valid for some actions and lacks required fields for others; any other exception
    # (a schema that does not compile, a wrong error code) fails the test.
    with contextlib.suppress(OccurenceConstraintViolation):
        validate(action, {})
    with pytest.raises(TypeConstraintViolation, match="data must be object"):
        validate(action, [])  # type: ignore[arg-type]


def test_validator_actions_are_the_v16_action_sets() -> None:
    validator = get_validator()
    assert validator.version == "1.6"
    assert validator.actions() == v16.ALL_ACTIONS
    assert len(v16.ALL_ACTIONS) == 39
    both_ways = v16.CHARGE_POINT_INITIATED & v16.CENTRAL_SYSTEM_INITIATED
    assert both_ways == {"DataTransfer"}
    assert v16.SECURITY_ACTIONS <= v16.ALL_ACTIONS
    draft06 = {
        path.stem.removesuffix("Response")
        for path in SCHEMA_DIR.glob("*.json")
        if "draft-06" in path.read_text(encoding="utf-8")
    }
    assert draft06 == v16.SECURITY_ACTIONS


def test_get_validator_is_a_cached_singleton_per_version() -> None:
    assert get_validator("1.6") is get_validator()


def test_get_validator_rejects_a_version_without_schemas() -> None:
    with pytest.raises(ValueError, match=r"no OCPP schemas for version '9\.9'"):
        get_validator("9.9")


def test_validator_compiles_each_schema_once(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled: list[Any] = []
    real_compile: Callable[..., Any] = fastjsonschema.compile

    def counting_compile(schema: Any, **kwargs: Any) -> Any:
        compiled.append(schema["title"] if "title" in schema else schema["$id"])
        return real_compile(schema, **kwargs)

    monkeypatch.setattr(fastjsonschema, "compile", counting_compile)
    validator = SchemaValidator("1.6")
    for _ in range(3):
        validator.validate_request("Heartbeat", {})
        validator.validate_response("Heartbeat", {"currentTime": NOW})
    assert compiled == ["HeartbeatRequest", "HeartbeatResponse"]


@pytest.mark.parametrize("kind", ["request", "response"])
def test_unknown_action_is_not_implemented(kind: str) -> None:
    validator = get_validator()
    assert not validator.knows("Teleport")
    validate = validator.validate_request if kind == "request" else validator.validate_response
    with pytest.raises(NotImplementedOcppError, match="Teleport"):
        validate("Teleport", {})


_BOOT = {"chargePointVendor": "Acme", "chargePointModel": "Trio-22"}
_PROFILE: dict[str, Any] = {
    "connectorId": 1,
    "csChargingProfiles": {
        "chargingProfileId": 1,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7.3}],
        },
    },
}
_METER = {
    "connectorId": 1,
    "meterValue": [{"timestamp": NOW, "sampledValue": [{"value": "1200", "unit": "Wh"}]}],
}


def _with_limit(limit: Any) -> dict[str, Any]:
    profile: dict[str, Any] = json.loads(json.dumps(_PROFILE))
    profile["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] = limit
    return profile


@pytest.mark.parametrize(
    ("action", "kind", "payload"),
    [
        ("BootNotification", "request", _BOOT),
        ("BootNotification", "response",
         {"status": "Accepted", "currentTime": NOW, "interval": 60}),
        ("Authorize", "request", {"idTag": "A" * 20}),
        ("Authorize", "response", {"idTagInfo": {"status": "Accepted"}}),
        ("StartTransaction", "request",
         {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": NOW}),
        ("StartTransaction", "response", {"transactionId": 7, "idTagInfo": {"status": "Accepted"}}),
        ("MeterValues", "request", _METER),
        ("SetChargingProfile", "request", _PROFILE),
        ("SetChargingProfile", "request", _with_limit(16)),
        ("SignCertificate", "request", {"csr": "-----BEGIN CERTIFICATE REQUEST-----"}),
        ("Heartbeat", "request", {}),
    ],
)  # fmt: skip
def test_valid_payload_passes(action: str, kind: str, payload: dict[str, Any]) -> None:
    validator = get_validator()
    before = json.dumps(payload)
    if kind == "request":
        validator.validate_request(action, payload)
    else:
        validator.validate_response(action, payload)
    assert json.dumps(payload) == before  # validation never fills in defaults


@pytest.mark.parametrize(
    ("action", "kind", "payload", "error_class", "description"),
    [
        ("Authorize", "request", {"idTag": "A" * 21}, PropertyConstraintViolation,
         "data.idTag must be shorter than or equal to 20 characters"),
        ("Authorize", "request", {}, OccurenceConstraintViolation,
         "data must contain ['idTag'] properties"),
        ("Authorize", "request", {"idTag": 1}, TypeConstraintViolation,
         "data.idTag must be string"),
        ("Authorize", "request", {"idTag": "A", "pin": "1"}, FormationViolation,
         "data must not contain {'pin'} properties"),
        ("Authorize", "response", {"idTagInfo": {"status": "Maybe"}}, PropertyConstraintViolation,
         "data.idTagInfo.status must be one of"),
        ("BootNotification", "request", {**_BOOT, "chargePointModel": None},
         TypeConstraintViolation, "data.chargePointModel must be string"),
        ("BootNotification", "response", {"status": "Accepted", "interval": 60},
         OccurenceConstraintViolation, "data must contain"),
        ("StartTransaction", "request",
         {"connectorId": True, "idTag": "T", "meterStart": 0, "timestamp": NOW},
         TypeConstraintViolation, "data.connectorId must be integer"),
        ("StopTransaction", "request", {"transactionId": 1, "meterStop": 5, "timestamp": "now"},
         PropertyConstraintViolation, "data.timestamp must be date-time"),
        ("MeterValues", "request", {"connectorId": 1, "meterValue": []},
         OccurenceConstraintViolation, "data.meterValue must contain at least 1 items"),
        ("SetChargingProfile", "request", _with_limit(7.35), PropertyConstraintViolation,
         "data.csChargingProfiles.chargingSchedule.chargingSchedulePeriod[0].limit must be "
         "multiple of 0.1"),
        ("GetInstalledCertificateIds", "response",
         {"status": "Accepted", "certificateHashData": []}, OccurenceConstraintViolation,
         "data.certificateHashData must contain at least 1 items"),
        ("Heartbeat", "response", {"currentTime": 5}, TypeConstraintViolation,
         "data.currentTime must be string"),
    ],
)  # fmt: skip
def test_invalid_payload_raises_the_closest_error_code(
    action: str,
    kind: str,
    payload: dict[str, Any],
    error_class: type[OcppError],
    description: str,
) -> None:
    validator = get_validator()
    validate = validator.validate_request if kind == "request" else validator.validate_response
    with pytest.raises(OcppError) as info:
        validate(action, payload)
    assert type(info.value) is error_class
    assert info.value.description.startswith(description)


# Every keyword of the mapping table, on a schema made for it (the OCPP ones lack some).
_PROBE_SCHEMA = {
    "$schema": "http://json-schema.org/draft-06/schema#",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "integer": {"type": "integer"},
        "list": {"type": "array", "minItems": 1, "maxItems": 2},
        "color": {"type": "string", "enum": ["red"]},
        "fixed": {"const": 1},
        "short": {"type": "string", "maxLength": 2},
        "long": {"type": "string", "minLength": 2},
        "small": {"type": "number", "maximum": 10},
        "large": {"type": "number", "minimum": 10},
        "digits": {"type": "string", "pattern": "^[0-9]+$"},
        "uri": {"type": "string", "format": "uri"},
        "tenth": {"type": "number", "multipleOf": 0.1},
        "anything": {"not": {"type": "null"}},
    },
    "required": ["integer"],
}


@pytest.fixture
def probe_validator(tmp_path: Path) -> SchemaValidator:
    for name in ("Probe.json", "ProbeResponse.json"):
        (tmp_path / name).write_text(json.dumps(_PROBE_SCHEMA), encoding="utf-8")
    return SchemaValidator("probe", directory=tmp_path)


@pytest.mark.parametrize(
    ("payload", "error_class", "rule"),
    [
        ({"integer": "1"}, TypeConstraintViolation, "type"),
        ({}, OccurenceConstraintViolation, "required"),
        ({"integer": 1, "list": []}, OccurenceConstraintViolation, "minItems"),
        ({"integer": 1, "list": [1, 2, 3]}, OccurenceConstraintViolation, "maxItems"),
        ({"integer": 1, "color": "blue"}, PropertyConstraintViolation, "enum"),
        ({"integer": 1, "fixed": 2}, PropertyConstraintViolation, "const"),
        ({"integer": 1, "short": "abc"}, PropertyConstraintViolation, "maxLength"),
        ({"integer": 1, "long": "a"}, PropertyConstraintViolation, "minLength"),
        ({"integer": 1, "small": 11}, PropertyConstraintViolation, "maximum"),
        ({"integer": 1, "large": 9}, PropertyConstraintViolation, "minimum"),
        ({"integer": 1, "digits": "12a"}, PropertyConstraintViolation, "pattern"),
        ({"integer": 1, "uri": "not a uri"}, PropertyConstraintViolation, "format"),
        ({"integer": 1, "tenth": 0.25}, PropertyConstraintViolation, "multipleOf"),
        ({"integer": 1, "unexpected": 1}, FormationViolation, "additionalProperties"),
        ({"integer": 1, "anything": None}, FormationViolation, "not"),
    ],
)
def test_each_schema_keyword_maps_to_its_error_code(
    probe_validator: SchemaValidator,
    payload: dict[str, Any],
    error_class: type[OcppError],
    rule: str,
) -> None:
    assert probe_validator.knows("Probe")
    probe_validator.validate_request("Probe", {"integer": 1})
    with pytest.raises(OcppError) as info:
        probe_validator.validate_response("Probe", payload)
    assert type(info.value) is error_class, rule
    assert info.value.description.startswith("data")
