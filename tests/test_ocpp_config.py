"""The OCPP configuration keys of a station: table, template overrides, changes, persistence."""

from __future__ import annotations

import tomllib

import pytest
import tomli_w

from evsim_trio.config import ConfigurationKey as TemplateKey
from evsim_trio.station import OcppConfiguration
from evsim_trio.station._keys import (
    FEATURE_PROFILES,
    KEY_TABLE,
    KEYS,
    MEASURANDS,
    InvalidValue,
    KeyType,
    implemented_profiles,
    normalize,
)

ALL_PROFILES = (
    "Core",
    "FirmwareManagement",
    "LocalAuthListManagement",
    "Reservation",
    "SmartCharging",
    "RemoteTrigger",
)


def config(*entries: TemplateKey, **kwargs: object) -> OcppConfiguration:
    options: dict[str, object] = {"number_of_connectors": 2, "supported_profiles": ALL_PROFILES}
    options.update(kwargs)
    return OcppConfiguration(entries, **options)  # type: ignore[arg-type]


# -- the table ---------------------------------------------------------------------------------
def test_every_table_default_is_valid_for_its_own_key() -> None:
    for spec in KEYS:
        if spec.default is not None:
            assert normalize(spec, spec.default) == spec.default, spec.name


def test_every_list_bound_names_an_integer_key_of_the_table() -> None:
    for spec in KEYS:
        if spec.max_items_key is not None:
            assert spec.type.is_list
            assert KEY_TABLE[spec.max_items_key].type is KeyType.INTEGER
            assert KEY_TABLE[spec.max_items_key].readonly


def test_measurands_are_the_ocpp16_enum() -> None:
    assert len(MEASURANDS) == 22
    assert "Energy.Active.Import.Register" in MEASURANDS
    assert "SoC" in MEASURANDS


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("HeartbeatInterval", "60"),
        ("MeterValueSampleInterval", "60"),
        ("ClockAlignedDataInterval", "0"),
        ("MeterValuesSampledData", "Energy.Active.Import.Register"),
        ("MeterValuesAlignedData", ""),
        ("StopTxnSampledData", ""),
        ("StopTxnAlignedData", ""),
        ("GetConfigurationMaxKeys", "50"),
        ("ResetRetries", "3"),
        ("StopTransactionOnInvalidId", "true"),
        ("StopTransactionOnEVSideDisconnect", "true"),
        ("UnlockConnectorOnEVSideDisconnect", "true"),
        ("TransactionMessageAttempts", "3"),
        ("TransactionMessageRetryInterval", "60"),
        ("LocalPreAuthorize", "false"),
        ("LocalAuthorizeOffline", "true"),
        ("AllowOfflineTxForUnknownId", "false"),
        ("AuthorizationCacheEnabled", "true"),
        ("AuthorizeRemoteTxRequests", "true"),
        ("ConnectionTimeOut", "60"),
        ("WebSocketPingInterval", "60"),
        ("LocalAuthListEnabled", "true"),
        ("ReserveConnectorZeroSupported", "false"),
        ("ChargingScheduleAllowedChargingRateUnit", "Current,Power"),
    ],
)
def test_shipped_defaults(key: str, value: str) -> None:
    assert config().get(key) == value


@pytest.mark.parametrize(
    "key",
    [
        "GetConfigurationMaxKeys",
        "NumberOfConnectors",
        "SupportedFeatureProfiles",
        "LocalAuthListMaxLength",
        "SendLocalListMaxLength",
        "ChargeProfileMaxStackLevel",
        "ChargingScheduleAllowedChargingRateUnit",
        "ChargingScheduleMaxPeriods",
        "MaxChargingProfilesInstalled",
        "ReserveConnectorZeroSupported",
        "MeterValuesSampledDataMaxLength",
    ],
)
def test_readonly_keys_of_the_specification_are_readonly(key: str) -> None:
    entry = config().entry(key)
    assert entry is not None
    assert entry.readonly


def test_station_sets_number_of_connectors_profiles_and_phase_rotation() -> None:
    c = config(number_of_connectors=3, supported_profiles=("Core", "RemoteTrigger"))
    assert c.get("NumberOfConnectors") == "3"
    assert c.get("SupportedFeatureProfiles") == "Core,RemoteTrigger"
    assert c.get("ConnectorPhaseRotation") == "0.RST,1.RST,2.RST,3.RST"
    assert c.get("ConnectorPhaseRotationMaxLength") == "4"
    dc = config(number_of_connectors=1, number_of_phases=0)
    assert dc.get("ConnectorPhaseRotation") == "0.NotApplicable,1.NotApplicable"


def test_keys_of_unsupported_profiles_are_not_shipped() -> None:
    c = config(supported_profiles=("Core",))
    for key in (
        "LocalAuthListEnabled",
        "ChargeProfileMaxStackLevel",
        "ReserveConnectorZeroSupported",
    ):
        assert key not in c
    assert "HeartbeatInterval" in c
    # Keys known but not shipped (no light on a simulated station).
    assert "LightIntensity" not in config()
    assert "SecurityProfile" not in config()


def test_implemented_profiles_are_only_the_complete_ones() -> None:
    assert implemented_profiles([]) == ("Core",)
    # A profile is advertised only when all its CSMS-initiated actions are handled.
    partial = ["TriggerMessage", "SetChargingProfile", "GetDiagnostics"]
    assert implemented_profiles(partial) == ("Core", "RemoteTrigger")
    smart = ["SetChargingProfile", "ClearChargingProfile", "GetCompositeSchedule"]
    assert implemented_profiles(smart) == ("Core", "SmartCharging")
    complete = ["SendLocalList", "GetLocalListVersion", "ReserveNow", "CancelReservation"]
    assert set(implemented_profiles(complete)) == {"Core", "LocalAuthListManagement", "Reservation"}
    assert set(FEATURE_PROFILES) == set(ALL_PROFILES)


# -- template entries ------------------------------------------------------------------------
def test_template_entries_override_defaults_and_keep_their_flags() -> None:
    c = config(
        TemplateKey("HeartbeatInterval", "300", readonly=True),
        TemplateKey("ResetRetries", "5", visible=False),
        TemplateKey("ConnectionTimeOut", "90", reboot=True),
    )
    heartbeat = c.entry("HeartbeatInterval")
    assert heartbeat is not None
    assert (heartbeat.value, heartbeat.readonly) == ("300", True)
    assert c.get("ResetRetries") == "5"
    assert "ResetRetries" not in [e.key for e in c.visible_keys()]
    timeout = c.entry("ConnectionTimeOut")
    assert timeout is not None
    assert timeout.reboot


def test_template_cannot_make_a_readonly_key_of_the_specification_writable() -> None:
    c = config(TemplateKey("GetConfigurationMaxKeys", "20", readonly=False))
    entry = c.entry("GetConfigurationMaxKeys")
    assert entry is not None
    assert (entry.value, entry.readonly) == ("20", True)


def test_template_vendor_keys_are_kept_as_strings_after_the_standard_ones() -> None:
    c = config(TemplateKey("MaxCurrent", "32"), TemplateKey("Colour", "blue", readonly=True))
    keys = [e.key for e in c]
    assert keys[-2:] == ["MaxCurrent", "Colour"]
    assert c.get("MaxCurrent") == "32"
    assert c.get_int("MaxCurrent") == 32
    assert c.change("MaxCurrent", "anything at all") == "Accepted"
    assert c.change("Colour", "red") == "Rejected"


def test_template_number_of_connectors_cannot_contradict_the_station() -> None:
    c = config(TemplateKey("NumberOfConnectors", "5", readonly=True), number_of_connectors=2)
    assert c.get("NumberOfConnectors") == "2"


def test_template_key_in_another_case_takes_the_specification_spelling() -> None:
    c = config(TemplateKey("heartbeatinterval", "30"))
    assert [e.key for e in c].count("HeartbeatInterval") == 1
    assert c.get("HEARTBEATINTERVAL") == "30"


def test_template_can_add_a_known_key_that_is_not_shipped() -> None:
    c = config(TemplateKey("LightIntensity", "50"))
    assert c.get("LightIntensity") == "50"
    assert c.change("LightIntensity", "101") == "Rejected"
    assert c.change("LightIntensity", "100") == "Accepted"


def test_template_supported_feature_profiles_decide_the_shipped_keys() -> None:
    c = config(TemplateKey("SupportedFeatureProfiles", "Core,Reservation"))
    assert c.get("SupportedFeatureProfiles") == "Core,Reservation"
    assert "ReserveConnectorZeroSupported" in c
    assert "ChargeProfileMaxStackLevel" not in c


# -- change() (OCPP 1.6 §5.3) ---------------------------------------------------------------
def test_change_accepted_stores_the_value_and_calls_on_change() -> None:
    c = config()
    seen: list[tuple[str, str]] = []
    c.on_change = lambda key, value: seen.append((key, value))
    assert c.change("HeartbeatInterval", "120") == "Accepted"
    assert c.get_int("HeartbeatInterval") == 120
    # Key names compare case-insensitively (CiString50); the callback gets the real name.
    assert c.change("meterValueSampleInterval", "15") == "Accepted"
    assert seen == [("HeartbeatInterval", "120"), ("MeterValueSampleInterval", "15")]


def test_change_unknown_or_hidden_key_is_not_supported() -> None:
    c = config(TemplateKey("Secret", "x", visible=False))
    seen: list[str] = []
    c.on_change = lambda key, value: seen.append(key)
    assert c.change("NoSuchKey", "1") == "NotSupported"
    assert c.change("Secret", "y") == "NotSupported"
    assert c.get("Secret") == "x"
    assert "NoSuchKey" not in c
    assert seen == []


def test_change_readonly_key_is_rejected() -> None:
    c = config()
    assert c.change("NumberOfConnectors", "4") == "Rejected"
    assert c.change("GetConfigurationMaxKeys", "10") == "Rejected"
    assert c.get("NumberOfConnectors") == "2"


def test_change_reboot_key_is_stored_and_reboot_required_without_on_change() -> None:
    c = config(TemplateKey("WebSocketPingInterval", "60", reboot=True))
    seen: list[str] = []
    c.on_change = lambda key, value: seen.append(key)
    assert c.change("WebSocketPingInterval", "30") == "RebootRequired"
    assert c.get("WebSocketPingInterval") == "30"
    assert seen == []
    # An invalid value is still Rejected, reboot or not.
    assert c.change("WebSocketPingInterval", "soon") == "Rejected"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("HeartbeatInterval", "abc"),
        ("HeartbeatInterval", "-1"),
        ("HeartbeatInterval", "1.5"),
        ("HeartbeatInterval", ""),
        ("HeartbeatInterval", " 60"),
        ("HeartbeatInterval", "6_0"),
        ("HeartbeatInterval", "2147483648"),
        ("HeartbeatInterval", "٣"),  # a digit, but not an ASCII one
        ("LocalPreAuthorize", "yes"),
        ("LocalPreAuthorize", "1"),
        ("MeterValuesSampledData", "Energy.Active.Import.Register,Banana"),
        ("MeterValuesSampledData", "Voltage,Voltage"),
        ("MeterValuesSampledData", "Voltage,"),
        ("MeterValuesSampledData", "Current.Import.L1"),
        ("StopTxnSampledData", "voltage"),
        ("ConnectorPhaseRotation", "1.XYZ"),
        ("ConnectorPhaseRotation", "3.RST"),
        ("ConnectorPhaseRotation", "RST"),
        ("ConnectorPhaseRotation", "x.RST"),
        ("ConnectorPhaseRotation", "0.RST,1.RST,2.RST,1.RTS"),
    ],
)
def test_change_invalid_value_is_rejected_and_nothing_changes(key: str, value: str) -> None:
    c = config()
    before = c.get(key)
    seen: list[str] = []
    c.on_change = lambda k, v: seen.append(k)
    assert c.change(key, value) == "Rejected"
    assert c.get(key) == before
    assert seen == []


@pytest.mark.parametrize(
    ("key", "value", "stored"),
    [
        ("HeartbeatInterval", "0", "0"),
        ("HeartbeatInterval", "060", "60"),
        ("LocalPreAuthorize", "TRUE", "true"),
        ("MeterValuesSampledData", " Voltage , SoC ", "Voltage,SoC"),
        ("MeterValuesSampledData", "", ""),
        ("StopTxnAlignedData", "Energy.Active.Import.Register", "Energy.Active.Import.Register"),
        ("ConnectorPhaseRotation", "0.RST,1.RTS,2.Unknown", "0.RST,1.RTS,2.Unknown"),
        ("ConnectorPhaseRotation", "1.NotApplicable", "1.NotApplicable"),
    ],
)
def test_change_accepted_value_is_stored_canonically(key: str, value: str, stored: str) -> None:
    c = config()
    assert c.change(key, value) == "Accepted"
    assert c.get(key) == stored


def test_change_list_longer_than_its_max_length_key_is_rejected() -> None:
    c = config(TemplateKey("MeterValuesSampledDataMaxLength", "2", readonly=True))
    assert c.change("MeterValuesSampledData", "Voltage,SoC,Power.Active.Import") == "Rejected"
    assert c.change("MeterValuesSampledData", "Voltage,SoC") == "Accepted"
    # Every measurand once fits the shipped bound.
    assert config().change("MeterValuesAlignedData", ",".join(MEASURANDS)) == "Accepted"


def test_supported_feature_profiles_stays_readonly_and_its_members_are_checked() -> None:
    c = config(TemplateKey("SupportedFeatureProfiles", "Core", readonly=False))
    assert c.change("SupportedFeatureProfiles", "Core,Reservation") == "Rejected"
    spec = KEY_TABLE["SupportedFeatureProfiles"]
    assert normalize(spec, "Core,SmartCharging") == "Core,SmartCharging"
    with pytest.raises(InvalidValue):
        normalize(spec, "Core,Teleportation")


# -- typed reads ---------------------------------------------------------------------------------
def test_typed_getters_read_values() -> None:
    c = config(TemplateKey("MeterValuesSampledData", "Voltage,SoC"))
    assert c.get_int("HeartbeatInterval") == 60
    assert c.get_bool("StopTransactionOnInvalidId") is True
    assert c.get_bool("LocalPreAuthorize") is False
    assert c.get_csl("MeterValuesSampledData") == ("Voltage", "SoC")
    assert c.get_csl("StopTxnSampledData") == ()
    assert c.get_csl("SupportedFeatureProfiles") == ALL_PROFILES


def test_typed_getters_fall_back_to_the_given_default_then_the_table() -> None:
    c = config(TemplateKey("Weird", "not a number"), supported_profiles=("Core",))
    # Absent here (profile not supported): the caller's default, else the table's.
    assert c.get_int("ChargeProfileMaxStackLevel", 3) == 3
    assert c.get_int("ChargeProfileMaxStackLevel") == 8
    assert c.get_bool("LocalAuthListEnabled") is True
    assert c.get_bool("LocalAuthListEnabled", False) is False
    assert c.get_csl("ChargingScheduleAllowedChargingRateUnit") == ("Current", "Power")
    assert c.get_csl("ChargingScheduleAllowedChargingRateUnit", ["Power"]) == ("Power",)
    assert c.get_int("Weird", 7) == 7
    with pytest.raises(KeyError):
        c.get_int("Weird")
    with pytest.raises(KeyError):
        c.get_bool("NoSuchKey")
    assert c.get("NoSuchKey") is None


def test_station_writes_ignore_readonly_and_create_keys() -> None:
    c = config()
    seen: list[str] = []
    c.on_change = lambda key, value: seen.append(key)
    c.set("NumberOfConnectors", "9")
    c.set("NewKey", "v")
    assert c.get("NumberOfConnectors") == "9"
    assert c.get("NewKey") == "v"
    assert seen == []


def test_visible_keys_leave_hidden_ones_out() -> None:
    c = config(TemplateKey("Hidden", "h", visible=False), TemplateKey("Shown", "s"))
    visible = [e.key for e in c.visible_keys()]
    assert "Hidden" not in visible
    assert "Shown" in visible
    assert len(visible) == len(c) - 1


# -- persistence -----------------------------------------------------------------------------
def test_state_round_trip_through_toml_keeps_changed_values() -> None:
    template = (TemplateKey("MaxCurrent", "32"), TemplateKey("Hidden", "h", visible=False))
    first = config(*template)
    assert first.change("HeartbeatInterval", "45") == "Accepted"
    assert first.change("MeterValuesSampledData", "Voltage") == "Accepted"
    assert first.change("MaxCurrent", "16") == "Accepted"
    first.set("StationMade", "yes")
    text = tomli_w.dumps({"configuration": first.to_state()})
    saved = tomllib.loads(text)["configuration"]

    second = config(*template)
    second.load_state(saved)
    assert [(e.key, e.value, e.readonly, e.visible) for e in second] == [
        (e.key, e.value, e.readonly, e.visible) for e in first
    ]


def test_load_state_keeps_template_readonly_keys_authoritative() -> None:
    c = config(TemplateKey("Model", "X2", readonly=True), TemplateKey("HeartbeatInterval", "30"))
    c.load_state(
        [
            {"key": "Model", "value": "X1", "readonly": False},
            {"key": "GetConfigurationMaxKeys", "value": "5", "readonly": False},
            {"key": "NumberOfConnectors", "value": "7", "readonly": True},
            {"key": "HeartbeatInterval", "value": "90", "readonly": True},
        ]
    )
    assert c.get("Model") == "X2"
    assert c.get("GetConfigurationMaxKeys") == "50"
    assert c.get("NumberOfConnectors") == "2"
    heartbeat = c.entry("HeartbeatInterval")
    assert heartbeat is not None
    # The value comes back; the flags stay the template's.
    assert (heartbeat.value, heartbeat.readonly) == ("90", False)


def test_load_state_ignores_invalid_or_malformed_entries_and_dropped_standard_keys() -> None:
    c = config(supported_profiles=("Core",))
    c.load_state(
        [
            {"key": "HeartbeatInterval", "value": "soon"},
            {"key": "MeterValuesSampledData", "value": "Banana"},
            {"key": "LocalAuthListEnabled", "value": "false"},
            {"value": "orphan"},
            {"key": "VendorThing", "value": 3},
            {"key": "VendorKept", "value": "v", "visible": False},
        ]
    )
    assert c.get("HeartbeatInterval") == "60"
    assert c.get("MeterValuesSampledData") == "Energy.Active.Import.Register"
    assert "LocalAuthListEnabled" not in c
    assert "VendorThing" not in c
    kept = c.entry("VendorKept")
    assert kept is not None
    assert (kept.value, kept.visible) == ("v", False)
