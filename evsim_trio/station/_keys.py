"""The OCPP 1.6 standard configuration keys: type, default, access, validation.

Source: OCPP 1.6 edition 2 (with errata), §9 "Standard Configuration Key Names & Values":
§9.1 Core Profile, §9.2 Local Auth List Management Profile, §9.3 Reservation Profile,
§9.4 Smart Charging Profile; plus the keys of the OCPP 1.6 Security Whitepaper (edition 2)
a simulated station can honestly report. Firmware Management and Remote Trigger define no key.

Columns:
- `readonly`: R in the spec. A template can make a key readonly (the spec leaves
  AuthorizeRemoteTxRequests to the charger) but cannot make a spec-R key writable.
- `reboot`: a change takes effect only after a reboot (ChangeConfiguration answers
  RebootRequired). No standard key needs one here; a template can flag any key.
- `default`: what a charger of this simulator ships with; None = set by the station
  (NumberOfConnectors, SupportedFeatureProfiles, ConnectorPhaseRotation and its MaxLength).
- `shipped`: reported by a station that does not name the key in its template. Optional keys
  for hardware a simulator does not have (a light, a 3-to-1 phase switch, certificates) are
  known, so that a template naming them gets them validated, but not shipped.
- `max_items_key`: the companion `*MaxLength` key bounding the number of items of a CSL.
- `acted_on`: whether the simulator acts on the key (issue 3, "standard configuration keys").

Security Whitepaper keys left out on purpose: AuthorizationKey (write-only, and taking it would
promise a password change on the next connection that the station does not make) and the
certificate store keys a template may still set as plain vendor strings.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from typing import get_args

import attrs

from evsim_trio.config._ocpp16 import Measurand
from evsim_trio.ocpp import v16

INT32_MAX = 2**31 - 1

MEASURANDS: tuple[str, ...] = get_args(Measurand)
"""OCPP 1.6 §7.31 Measurand values, the members of the meter value CSL keys."""

FEATURE_PROFILES: tuple[str, ...] = tuple(v16.FEATURE_PROFILES)
"""OCPP 1.6 §3 feature profile names, as SupportedFeatureProfiles lists them."""

PHASE_ROTATIONS: tuple[str, ...] = (
    "NotApplicable",
    "Unknown",
    "RST",
    "RTS",
    "SRT",
    "STR",
    "TRS",
    "TSR",
)
"""OCPP 1.6 §9.1.8 ConnectorPhaseRotation values (per connector: `<connectorId>.<rotation>`)."""

CHARGING_RATE_UNITS: tuple[str, ...] = ("Current", "Power")
"""OCPP 1.6 §9.4.2 ChargingScheduleAllowedChargingRateUnit members."""

PROFILE_ACTIONS: Mapping[str, frozenset[str]] = {
    profile: actions & v16.CENTRAL_SYSTEM_INITIATED
    for profile, actions in v16.FEATURE_PROFILES.items()
}
"""The CSMS-initiated actions of each feature profile (OCPP 1.6 §3, table "Feature Profiles")."""


def implemented_profiles(actions: Iterable[str]) -> tuple[str, ...]:
    """The feature profiles a station handling `actions` (CSMS-initiated) advertises.

    Core always (a 1.6 station is a Core station); another profile only when the station handles
    every one of its CSMS-initiated actions, so that SupportedFeatureProfiles lists exactly what
    works (a CSMS that sees FirmwareManagement may send UpdateFirmware).
    """
    handled = set(actions)
    return tuple(
        profile
        for profile in FEATURE_PROFILES
        if profile == "Core" or PROFILE_ACTIONS[profile] <= handled
    )


class KeyType(enum.Enum):
    """How a key's value is read and validated."""

    INTEGER = "integer"
    BOOLEAN = "boolean"
    STRING = "string"
    MEASURAND_LIST = "CSL of Measurand"
    PROFILE_LIST = "CSL of feature profiles"
    PHASE_ROTATION_LIST = "CSL of connector phase rotations"
    RATE_UNIT_LIST = "CSL of charging rate units"

    @property
    def is_list(self) -> bool:
        """Whether values are comma-separated lists."""
        return self not in (KeyType.INTEGER, KeyType.BOOLEAN, KeyType.STRING)


@attrs.frozen
class KeySpec:
    """One standard key of the table."""

    name: str
    section: str
    type: KeyType
    default: str | None
    profile: str = "Core"
    readonly: bool = False
    reboot: bool = False
    required: bool = True
    shipped: bool = True
    minimum: int = 0
    maximum: int = INT32_MAX
    max_items_key: str | None = None
    unit: str = ""
    acted_on: bool = False


_I = KeyType.INTEGER
_B = KeyType.BOOLEAN
_S = KeyType.STRING
_M = KeyType.MEASURAND_LIST
_PR = KeyType.PHASE_ROTATION_LIST
_PRL = "ConnectorPhaseRotationMaxLength"
_NM = str(len(MEASURANDS))  # a meter value CSL can name every measurand once
_LAL = "LocalAuthListManagement"
_SC = "SmartCharging"
_SEC = "Security"
_SWP = "Security Whitepaper"

# fmt: off
KEYS: tuple[KeySpec, ...] = (
    # §9.1 Core Profile
    KeySpec("AllowOfflineTxForUnknownId", "9.1.1", _B, "false", required=False, acted_on=True),
    KeySpec("AuthorizationCacheEnabled", "9.1.2", _B, "true", required=False, acted_on=True),
    KeySpec("AuthorizeRemoteTxRequests", "9.1.3", _B, "true", acted_on=True),
    KeySpec("BlinkRepeat", "9.1.4", _I, "3", required=False, shipped=False, unit="times"),
    KeySpec("ClockAlignedDataInterval", "9.1.5", _I, "0", unit="s", acted_on=True),
    KeySpec("ConnectionTimeOut", "9.1.6", _I, "60", unit="s", acted_on=True),
    KeySpec("ConnectorPhaseRotation", "9.1.7", _PR, None, max_items_key=_PRL, acted_on=True),
    KeySpec(_PRL, "9.1.8", _I, None, readonly=True, required=False),
    KeySpec("GetConfigurationMaxKeys", "9.1.9", _I, "50", readonly=True, minimum=1, acted_on=True),
    KeySpec("HeartbeatInterval", "9.1.10", _I, "60", unit="s", acted_on=True),
    KeySpec("LightIntensity", "9.1.11", _I, "100", required=False, shipped=False, maximum=100,
            unit="%"),
    KeySpec("LocalAuthorizeOffline", "9.1.12", _B, "true", acted_on=True),
    KeySpec("LocalPreAuthorize", "9.1.13", _B, "false", acted_on=True),
    KeySpec("MaxEnergyOnInvalidId", "9.1.14", _I, "0", required=False, shipped=False, unit="Wh"),
    KeySpec("MeterValuesAlignedData", "9.1.15", _M, "",
            max_items_key="MeterValuesAlignedDataMaxLength", acted_on=True),
    KeySpec("MeterValuesAlignedDataMaxLength", "9.1.16", _I, _NM, readonly=True, required=False),
    KeySpec("MeterValuesSampledData", "9.1.17", _M, "Energy.Active.Import.Register",
            max_items_key="MeterValuesSampledDataMaxLength", acted_on=True),
    KeySpec("MeterValuesSampledDataMaxLength", "9.1.18", _I, _NM, readonly=True, required=False),
    KeySpec("MeterValueSampleInterval", "9.1.19", _I, "60", unit="s", acted_on=True),
    KeySpec("MinimumStatusDuration", "9.1.20", _I, "0", required=False, shipped=False, unit="s"),
    KeySpec("NumberOfConnectors", "9.1.21", _I, None, readonly=True, acted_on=True),
    KeySpec("ResetRetries", "9.1.22", _I, "3", unit="times", acted_on=True),
    KeySpec("StopTransactionOnEVSideDisconnect", "9.1.23", _B, "true", acted_on=True),
    KeySpec("StopTransactionOnInvalidId", "9.1.24", _B, "true", acted_on=True),
    KeySpec("StopTxnAlignedData", "9.1.25", _M, "",
            max_items_key="StopTxnAlignedDataMaxLength", acted_on=True),
    KeySpec("StopTxnAlignedDataMaxLength", "9.1.26", _I, _NM, readonly=True, required=False),
    KeySpec("StopTxnSampledData", "9.1.27", _M, "",
            max_items_key="StopTxnSampledDataMaxLength", acted_on=True),
    KeySpec("StopTxnSampledDataMaxLength", "9.1.28", _I, _NM, readonly=True, required=False),
    KeySpec("SupportedFeatureProfiles", "9.1.29", KeyType.PROFILE_LIST, None, readonly=True,
            acted_on=True),
    KeySpec("SupportedFeatureProfilesMaxLength", "9.1.30", _I, str(len(FEATURE_PROFILES)),
            readonly=True, required=False, shipped=False),
    KeySpec("TransactionMessageAttempts", "9.1.31", _I, "3", unit="times", acted_on=True),
    KeySpec("TransactionMessageRetryInterval", "9.1.32", _I, "60", unit="s", acted_on=True),
    KeySpec("UnlockConnectorOnEVSideDisconnect", "9.1.33", _B, "true", acted_on=True),
    KeySpec("WebSocketPingInterval", "9.1.34", _I, "60", required=False, unit="s",
            acted_on=True),
    # §9.2 Local Auth List Management Profile
    KeySpec("LocalAuthListEnabled", "9.2.1", _B, "true", profile=_LAL, acted_on=True),
    KeySpec("LocalAuthListMaxLength", "9.2.2", _I, "1000", profile=_LAL, readonly=True),
    KeySpec("SendLocalListMaxLength", "9.2.3", _I, "100", profile=_LAL, readonly=True),
    # §9.3 Reservation Profile
    KeySpec("ReserveConnectorZeroSupported", "9.3.1", _B, "false", profile="Reservation",
            readonly=True, required=False),
    # §9.4 Smart Charging Profile
    KeySpec("ChargeProfileMaxStackLevel", "9.4.1", _I, "8", profile=_SC, readonly=True),
    KeySpec("ChargingScheduleAllowedChargingRateUnit", "9.4.2", KeyType.RATE_UNIT_LIST,
            "Current,Power", profile=_SC, readonly=True),
    KeySpec("ChargingScheduleMaxPeriods", "9.4.3", _I, "24", profile=_SC, readonly=True),
    KeySpec("ConnectorSwitch3to1PhaseSupported", "9.4.4", _B, "false", profile=_SC,
            readonly=True, required=False, shipped=False),
    KeySpec("MaxChargingProfilesInstalled", "9.4.5", _I, "10", profile=_SC, readonly=True),
    # Security Whitepaper edition 2, "Configuration Keys": known, not shipped. The station
    # cannot switch security profiles, so SecurityProfile is readonly here.
    KeySpec("AdditionalRootCertificateCheck", _SWP, _B, "false", profile=_SEC, readonly=True,
            required=False, shipped=False),
    KeySpec("CertificateSignedMaxChainSize", _SWP, _I, "10000", profile=_SEC, readonly=True,
            required=False, shipped=False, maximum=10000),
    KeySpec("CertificateStoreMaxLength", _SWP, _I, "10", profile=_SEC, readonly=True,
            required=False, shipped=False),
    KeySpec("CpoName", _SWP, _S, "", profile=_SEC, required=False, shipped=False),
    KeySpec("SecurityProfile", _SWP, _I, "0", profile=_SEC, readonly=True, required=False,
            shipped=False, maximum=3),
)
# fmt: on

KEY_TABLE: Mapping[str, KeySpec] = {spec.name: spec for spec in KEYS}
"""Standard key name -> its row."""

_INTEGER = re.compile(r"-?[0-9]+")


class InvalidValue(ValueError):
    """A value a key does not take; the message says why."""


def normalize(
    spec: KeySpec, value: str, *, max_items: int | None = None, number_of_connectors: int = 0
) -> str:
    """`value` checked against `spec` and written canonically; raises InvalidValue.

    Integers: ASCII digits within [minimum, maximum], leading zeros dropped. Booleans: "true" or
    "false" in any case, stored lower case. Lists: comma-separated members (spaces around them
    ignored), no empty or repeated member, at most `max_items`; the empty string is the empty list.
    Phase rotations: `<connectorId>.<rotation>` with 0 <= connectorId <= number_of_connectors.
    """
    kind = spec.type
    if kind is KeyType.STRING:
        return value
    if kind is KeyType.INTEGER:
        if not _INTEGER.fullmatch(value):
            raise InvalidValue(f"{spec.name}: expected an integer, got {value!r}")
        number = int(value)
        if not spec.minimum <= number <= spec.maximum:
            raise InvalidValue(
                f"{spec.name}: expected {spec.minimum}..{spec.maximum}, got {number}"
            )
        return str(number)
    if kind is KeyType.BOOLEAN:
        lowered = value.lower()
        if lowered not in ("true", "false"):
            raise InvalidValue(f"{spec.name}: expected true or false, got {value!r}")
        return lowered
    items = split_csl(value)
    if len(set(items)) != len(items):
        raise InvalidValue(f"{spec.name}: repeated member in {value!r}")
    if max_items is not None and len(items) > max_items:
        raise InvalidValue(f"{spec.name}: at most {max_items} members, got {len(items)}")
    for item in items:
        if not _member_ok(kind, item, number_of_connectors):
            raise InvalidValue(f"{spec.name}: {item!r} is not a {kind.value} member")
    return ",".join(items)


def split_csl(value: str) -> list[str]:
    """The members of a comma-separated list ("" is the empty list); spaces are trimmed."""
    if not value.strip():
        return []
    return [item.strip() for item in value.split(",")]


def _member_ok(kind: KeyType, item: str, number_of_connectors: int) -> bool:
    if kind is KeyType.MEASURAND_LIST:
        return item in MEASURANDS
    if kind is KeyType.PROFILE_LIST:
        return item in FEATURE_PROFILES
    if kind is KeyType.RATE_UNIT_LIST:
        return item in CHARGING_RATE_UNITS
    connector, dot, rotation = item.partition(".")
    return (
        dot == "."
        and connector.isascii()
        and connector.isdigit()
        and int(connector) <= number_of_connectors
        and rotation in PHASE_ROTATIONS
    )


def default_phase_rotation(number_of_connectors: int, number_of_phases: int) -> str:
    """ConnectorPhaseRotation as shipped: RST on a 3-phase AC station, else NotApplicable.

    Connector 0 is the station's grid connection (OCPP 1.6 §9.1.7).
    """
    rotation = "RST" if number_of_phases == 3 else "NotApplicable"
    return ",".join(f"{cid}.{rotation}" for cid in range(number_of_connectors + 1))
