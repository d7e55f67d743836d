"""What the station implements, per OCPP 1.6 feature profile: the source of the README tables.

`SENT` lists the CALLs a station sends; incoming CALLs are those with a handler in
`_handlers.REGISTRY`. A test checks that README.md carries exactly `support_markdown()`.
"""

from __future__ import annotations

import evsim_trio.station  # noqa: F401  (imports every handler module)
from evsim_trio.ocpp import v16
from evsim_trio.station._handlers import REGISTRY

# OCPP 1.6 §3 feature profiles, and the Security Whitepaper's additions.
PROFILES: tuple[tuple[str, tuple[str, ...]], ...] = (
    *((name, tuple(sorted(actions))) for name, actions in v16.FEATURE_PROFILES.items()),
    ("Security Whitepaper", tuple(sorted(v16.SECURITY_ACTIONS))),
)

# CALLs the station sends today.
SENT: frozenset[str] = frozenset(
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
    }
)


def implemented(action: str) -> bool:
    """Whether the station implements `action` in the direction(s) the spec gives it."""
    checks = []
    if action in v16.CHARGE_POINT_INITIATED:
        checks.append(action in SENT)
    if action in v16.CENTRAL_SYSTEM_INITIATED:
        checks.append(action in REGISTRY)
    return bool(checks) and all(checks)


def support_markdown() -> str:
    """The README's OCPP 1.6 support table, generated from the code."""
    lines = ["| Profile | Message | Direction | Supported |", "| --- | --- | --- | --- |"]
    for profile, actions in PROFILES:
        for action in actions:
            directions = []
            if action in v16.CHARGE_POINT_INITIATED:
                directions.append("station → CSMS")
            if action in v16.CENTRAL_SYSTEM_INITIATED:
                directions.append("CSMS → station")
            mark = "yes" if implemented(action) else "not yet"
            lines.append(f"| {profile} | {action} | {', '.join(directions)} | {mark} |")
    return "\n".join(lines) + "\n"
