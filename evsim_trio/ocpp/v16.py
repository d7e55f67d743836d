"""OCPP 1.6 names: the actions by direction and the CALLERROR codes.

Directions are those of the OCPP 1.6 specification, section 4 "Operations Initiated by Charge
Point" and section 5 "Operations Initiated by Central System", plus the messages added by the
OCPP 1.6 Security Whitepaper ("Improved security for OCPP 1.6-J"). DataTransfer goes both ways.
"""

from __future__ import annotations

__all__ = [
    "ALL_ACTIONS",
    "CENTRAL_SYSTEM_INITIATED",
    "CHARGE_POINT_INITIATED",
    "ERROR_CODES",
    "FEATURE_PROFILES",
    "SECURITY_ACTIONS",
]

CHARGE_POINT_INITIATED: frozenset[str] = frozenset(
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
        # Security Whitepaper
        "LogStatusNotification",
        "SecurityEventNotification",
        "SignCertificate",
        "SignedFirmwareStatusNotification",
    }
)
"""Actions a Charge Point sends as CALL (OCPP 1.6, section 4; Security Whitepaper)."""

CENTRAL_SYSTEM_INITIATED: frozenset[str] = frozenset(
    {
        "CancelReservation",
        "ChangeAvailability",
        "ChangeConfiguration",
        "ClearCache",
        "ClearChargingProfile",
        "DataTransfer",
        "GetCompositeSchedule",
        "GetConfiguration",
        "GetDiagnostics",
        "GetLocalListVersion",
        "RemoteStartTransaction",
        "RemoteStopTransaction",
        "ReserveNow",
        "Reset",
        "SendLocalList",
        "SetChargingProfile",
        "TriggerMessage",
        "UnlockConnector",
        "UpdateFirmware",
        # Security Whitepaper
        "CertificateSigned",
        "DeleteCertificate",
        "ExtendedTriggerMessage",
        "GetInstalledCertificateIds",
        "GetLog",
        "InstallCertificate",
        "SignedUpdateFirmware",
    }
)
"""Actions a Central System sends as CALL (OCPP 1.6, section 5; Security Whitepaper)."""

SECURITY_ACTIONS: frozenset[str] = frozenset(
    {
        "CertificateSigned",
        "DeleteCertificate",
        "ExtendedTriggerMessage",
        "GetInstalledCertificateIds",
        "GetLog",
        "InstallCertificate",
        "LogStatusNotification",
        "SecurityEventNotification",
        "SignCertificate",
        "SignedFirmwareStatusNotification",
        "SignedUpdateFirmware",
    }
)
"""The actions added to OCPP 1.6 by the Security Whitepaper (both directions)."""

ALL_ACTIONS: frozenset[str] = CHARGE_POINT_INITIATED | CENTRAL_SYSTEM_INITIATED
"""Every OCPP 1.6 action, Security Whitepaper included: one schema pair each."""

ERROR_CODES: tuple[str, ...] = (
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
)
"""The CALLERROR ErrorCodes of OCPP-J 1.6, section 4.2.3, in the order and spelling of its table
("Occurence" with one r is the specification's spelling)."""

FEATURE_PROFILES: dict[str, frozenset[str]] = {
    "Core": frozenset(
        {
            "Authorize",
            "BootNotification",
            "ChangeAvailability",
            "ChangeConfiguration",
            "ClearCache",
            "DataTransfer",
            "GetConfiguration",
            "Heartbeat",
            "MeterValues",
            "RemoteStartTransaction",
            "RemoteStopTransaction",
            "Reset",
            "StartTransaction",
            "StatusNotification",
            "StopTransaction",
            "UnlockConnector",
        }
    ),
    "FirmwareManagement": frozenset(
        {
            "DiagnosticsStatusNotification",
            "FirmwareStatusNotification",
            "GetDiagnostics",
            "UpdateFirmware",
        }
    ),
    "LocalAuthListManagement": frozenset({"GetLocalListVersion", "SendLocalList"}),
    "Reservation": frozenset({"CancelReservation", "ReserveNow"}),
    "SmartCharging": frozenset(
        {"ClearChargingProfile", "GetCompositeSchedule", "SetChargingProfile"}
    ),
    "RemoteTrigger": frozenset({"TriggerMessage"}),
}
"""The actions of each feature profile, both directions (OCPP 1.6 §3, table "Feature Profiles"),
under the names SupportedFeatureProfiles uses."""
