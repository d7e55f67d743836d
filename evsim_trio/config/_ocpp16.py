"""OCPP 1.6 value sets a station template may name (OCPP 1.6 §7 data types)."""

from __future__ import annotations

from typing import Literal

# §7.7 ChargePointStatus
ChargePointStatus = Literal[
    "Available",
    "Preparing",
    "Charging",
    "SuspendedEVSE",
    "SuspendedEV",
    "Finishing",
    "Reserved",
    "Unavailable",
    "Faulted",
]

# §7.31 Measurand
Measurand = Literal[
    "Energy.Active.Export.Register",
    "Energy.Active.Import.Register",
    "Energy.Reactive.Export.Register",
    "Energy.Reactive.Import.Register",
    "Energy.Active.Export.Interval",
    "Energy.Active.Import.Interval",
    "Energy.Reactive.Export.Interval",
    "Energy.Reactive.Import.Interval",
    "Power.Active.Export",
    "Power.Active.Import",
    "Power.Offered",
    "Power.Reactive.Export",
    "Power.Reactive.Import",
    "Power.Factor",
    "Current.Import",
    "Current.Export",
    "Current.Offered",
    "Voltage",
    "Frequency",
    "Temperature",
    "SoC",
    "RPM",
]

# §7.46 UnitOfMeasure ("Hertz" comes from the 1.6 errata and is in the shipped schema; the
# schema's misspelt "Celcius" is left out on purpose).
UnitOfMeasure = Literal[
    "W",
    "kW",
    "Wh",
    "kWh",
    "varh",
    "kvarh",
    "var",
    "kvar",
    "VA",
    "kVA",
    "A",
    "V",
    "Celsius",
    "Fahrenheit",
    "K",
    "Percent",
    "Hertz",
]

# §7.34 Phase
Phase = Literal["L1", "L2", "L3", "N", "L1-N", "L2-N", "L3-N", "L1-L2", "L2-L3", "L3-L1"]

# §7.30 Location
Location = Literal["Body", "Cable", "EV", "Inlet", "Outlet"]

# The units that make sense for a measurand; the first is its default. Measurands missing
# here (Power.Factor, RPM) have no unit of their own.
_UNITS_BY_PREFIX: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Energy.Active.", ("Wh", "kWh")),
    ("Energy.Reactive.", ("varh", "kvarh")),
    ("Power.Active.", ("W", "kW")),
    ("Power.Offered", ("W", "kW")),
    ("Power.Reactive.", ("var", "kvar")),
    ("Current.", ("A",)),
    ("Voltage", ("V",)),
    ("Frequency", ("Hertz",)),
    ("Temperature", ("Celsius", "Fahrenheit", "K")),
    ("SoC", ("Percent",)),
)


def units_for(measurand: str) -> tuple[str, ...]:
    """The units a measurand can be reported in (empty: any, or none)."""
    for prefix, units in _UNITS_BY_PREFIX:
        if measurand.startswith(prefix):
            return units
    return ()


# §9 standard configuration keys whose values the station reads as integers or booleans; a
# template giving them anything else is caught at load time rather than at first use.
INTEGER_KEYS: frozenset[str] = frozenset(
    {
        "BlinkRepeat",
        "ChargeProfileMaxStackLevel",
        "ChargingScheduleMaxPeriods",
        "ClockAlignedDataInterval",
        "ConnectionTimeOut",
        "ConnectorPhaseRotationMaxLength",
        "GetConfigurationMaxKeys",
        "HeartbeatInterval",
        "LightIntensity",
        "LocalAuthListMaxLength",
        "MaxChargingProfilesInstalled",
        "MeterValueSampleInterval",
        "MeterValuesAlignedDataMaxLength",
        "MeterValuesSampledDataMaxLength",
        "MinimumStatusDuration",
        "NumberOfConnectors",
        "ResetRetries",
        "SendLocalListMaxLength",
        "StopTxnAlignedDataMaxLength",
        "StopTxnSampledDataMaxLength",
        "TransactionMessageAttempts",
        "TransactionMessageRetryInterval",
        "WebSocketPingInterval",
    }
)
BOOLEAN_KEYS: frozenset[str] = frozenset(
    {
        "AllowOfflineTxForUnknownId",
        "AuthorizationCacheEnabled",
        "AuthorizeRemoteTxRequests",
        "ConnectorSwitch3to1PhaseSupported",
        "LocalAuthListEnabled",
        "LocalAuthorizeOffline",
        "LocalPreAuthorize",
        "ReserveConnectorZeroSupported",
        "StopTransactionOnEVSideDisconnect",
        "StopTransactionOnInvalidId",
        "UnlockConnectorOnEVSideDisconnect",
    }
)
