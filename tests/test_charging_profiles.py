"""Smart charging (OCPP 1.6 §3.13, §5.4, §5.7, §5.16): the profile store and the composite."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import tomli_w

from evsim_trio.ocpp import get_validator
from evsim_trio.station._charging_profiles import ProfileStore
from evsim_trio.station._charging_schedule import format_datetime

# 2026-01-05 is a Monday; 2026-01-04 a Sunday.
NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
AC3: dict[str, Any] = {"voltage": 230.0, "phases": 3, "dc": False}
AC1: dict[str, Any] = {"voltage": 230.0, "phases": 1, "dc": False}
DC: dict[str, Any] = {"voltage": 400.0, "phases": 0, "dc": True}
KEYS: dict[str, Any] = {
    "max_stack_level": 8,
    "allowed_units": ("Current", "Power"),
    "max_periods": 24,
    "max_installed": 16,
}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def profile(
    profile_id: int = 1,
    *,
    purpose: str = "TxDefaultProfile",
    stack: int = 0,
    kind: str = "Absolute",
    unit: str = "A",
    periods: tuple[tuple[int, float] | tuple[int, float, int], ...] = ((0, 16.0),),
    start: str | None = None,
    duration: int | None = None,
    recurrency: str | None = None,
    valid_from: str | None = None,
    valid_to: str | None = None,
    transaction_id: int | None = None,
) -> dict[str, Any]:
    schedule: dict[str, Any] = {
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [
            {"startPeriod": p[0], "limit": p[1], **({"numberPhases": p[2]} if len(p) > 2 else {})}
            for p in periods
        ],
    }
    if start is not None:
        schedule["startSchedule"] = start
    elif kind == "Absolute":
        schedule["startSchedule"] = "2026-01-01T00:00:00Z"
    if duration is not None:
        schedule["duration"] = duration
    result: dict[str, Any] = {
        "chargingProfileId": profile_id,
        "stackLevel": stack,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": schedule,
    }
    for key, value in (
        ("recurrencyKind", recurrency),
        ("validFrom", valid_from),
        ("validTo", valid_to),
        ("transactionId", transaction_id),
    ):
        if value is not None:
            result[key] = value
    return result


def put(
    store: ProfileStore,
    connector_id: int,
    cs_profile: dict[str, Any],
    transaction_id: int | None = None,
    **keys: Any,
) -> str:
    get_validator("1.6").validate_request(
        "SetChargingProfile", {"connectorId": connector_id, "csChargingProfiles": cs_profile}
    )
    return store.set(
        connector_id,
        cs_profile,
        now=NOW,
        transaction_id=transaction_id,
        **{**KEYS, **keys},
    )


def store_with(*installs: tuple[Any, ...]) -> ProfileStore:
    """A store with each (connector id, csChargingProfiles[, transaction id]) installed."""
    store = ProfileStore()
    for connector_id, cs_profile, *transaction in installs:
        status = put(store, connector_id, cs_profile, *transaction)
        assert status == "Accepted", store.rejection
    return store


# -- SetChargingProfile ---------------------------------------------------------------------

P25 = tuple((i * 60, 16.0) for i in range(25))
P24 = P25[:24]
DAILY_START = "2026-01-01T22:00:00Z"


def rule(
    name: str,
    status: str,
    cs_profile: dict[str, Any],
    *,
    connector: int = 1,
    tx: int | None = None,
    **keys: Any,
) -> Any:
    return pytest.param(connector, cs_profile, tx, keys, status, id=name)


SET_CASES = [
    rule("tx default on a connector", "Accepted", profile()),
    rule("tx default on connector 0", "Accepted", profile(), connector=0),
    rule("max profile on 0", "Accepted", profile(purpose="ChargePointMaxProfile"), connector=0),
    rule("max profile on a connector", "Rejected", profile(purpose="ChargePointMaxProfile")),
    rule("tx profile during a transaction", "Accepted", profile(purpose="TxProfile"), tx=7),
    rule(
        "tx profile naming its tx", "Accepted", profile(purpose="TxProfile", transaction_id=7), tx=7
    ),
    rule("tx profile without a transaction", "Rejected", profile(purpose="TxProfile")),
    rule("tx profile on connector 0", "Rejected", profile(purpose="TxProfile"), connector=0, tx=7),
    rule(
        "tx profile for another tx",
        "Rejected",
        profile(purpose="TxProfile", transaction_id=8),
        tx=7,
    ),
    rule("transactionId on a tx default", "Rejected", profile(transaction_id=7), tx=7),
    rule("stack level at the maximum", "Accepted", profile(stack=8)),
    rule("stack level above the maximum", "Rejected", profile(stack=9)),
    rule("stack level above a lower maximum", "Rejected", profile(stack=3), max_stack_level=2),
    rule("negative stack level", "Rejected", profile(stack=-1)),
    rule("unit W allowed", "Accepted", profile(unit="W", periods=((0, 7000.0),))),
    rule("unit W not allowed", "Rejected", profile(unit="W"), allowed_units=("Current",)),
    rule("unit A not allowed", "Rejected", profile(unit="A"), allowed_units=("Power",)),
    rule("no unit restriction", "Accepted", profile(unit="W"), allowed_units=()),
    rule("units as a CSL", "Accepted", profile(unit="W"), allowed_units="Current, Power"),
    rule("units as a CSL without W", "Rejected", profile(unit="W"), allowed_units="Current"),
    rule("periods at the maximum", "Accepted", profile(periods=P24)),
    rule("too many periods", "Rejected", profile(periods=P25)),
    rule("too many for a lower maximum", "Rejected", profile(periods=P24[:3]), max_periods=2),
    rule("first period not at 0", "Rejected", profile(periods=((60, 16.0),))),
    rule("periods out of order", "Rejected", profile(periods=((0, 16.0), (600, 8.0), (300, 4.0)))),
    rule("no periods", "Rejected", profile(periods=())),
    rule("negative limit", "Rejected", profile(periods=((0, -1.0),))),
    rule("four phases", "Rejected", profile(periods=((0, 16.0, 4),))),
    rule(
        "recurring without recurrencyKind", "Rejected", profile(kind="Recurring", start=DAILY_START)
    ),
    rule(
        "recurring without startSchedule", "Rejected", profile(kind="Recurring", recurrency="Daily")
    ),
    rule(
        "recurring daily",
        "Accepted",
        profile(kind="Recurring", recurrency="Daily", start=DAILY_START),
    ),
    rule("relative", "Accepted", profile(kind="Relative")),
    rule(
        "validTo before validFrom",
        "Rejected",
        profile(valid_from="2026-02-01T00:00:00Z", valid_to="2026-01-10T00:00:00Z"),
    ),
    rule("already expired", "Rejected", profile(valid_to="2026-01-05T11:00:00Z")),
    rule("valid in the future", "Accepted", profile(valid_from="2026-02-01T00:00:00Z")),
    rule("negative duration", "Rejected", profile(duration=-5)),
    rule("no room for profiles", "Rejected", profile(), max_installed=0),
]


@pytest.mark.parametrize(
    ("connector_id", "cs_profile", "transaction_id", "keys", "status"), SET_CASES
)
def test_set_charging_profile_status(
    connector_id: int,
    cs_profile: dict[str, Any],
    transaction_id: int | None,
    keys: dict[str, Any],
    status: str,
) -> None:
    store = ProfileStore()
    assert put(store, connector_id, cs_profile, transaction_id, **keys) == status
    assert len(store) == (1 if status == "Accepted" else 0)
    assert (store.rejection is None) == (status == "Accepted")


def test_installed_profiles_are_capped_by_max_charging_profiles_installed() -> None:
    store = ProfileStore()
    for profile_id in (1, 2):
        assert put(store, 1, profile(profile_id, stack=profile_id), max_installed=2) == "Accepted"
    assert put(store, 1, profile(3, stack=3), max_installed=2) == "Rejected"
    assert store.rejection is not None
    assert "MaxChargingProfilesInstalled" in store.rejection
    # Replacing an installed profile needs no extra room.
    assert put(store, 1, profile(2, stack=5), max_installed=2) == "Accepted"
    assert len(store) == 2


def test_a_profile_with_the_same_id_replaces_the_installed_one_on_any_connector() -> None:
    store = store_with((1, profile(5, stack=1, periods=((0, 10.0),))))
    assert put(store, 2, profile(5, stack=2, periods=((0, 20.0),))) == "Accepted"
    assert [(c, p["stackLevel"]) for c, p in store.profiles()] == [(2, 2)]


def test_same_purpose_and_stack_level_replace_only_on_the_same_connector() -> None:
    store = store_with((1, profile(1, stack=1)), (2, profile(2, stack=1)))
    assert put(store, 1, profile(3, stack=1, periods=((0, 6.0),))) == "Accepted"
    assert sorted((c, p["chargingProfileId"]) for c, p in store.profiles()) == [(1, 3), (2, 2)]


def test_expired_profiles_are_dropped_and_do_not_count() -> None:
    store = store_with((1, profile(1, stack=1, valid_to="2026-01-05T12:30:00Z")))
    later = NOW + timedelta(hours=1)
    status = store.set(
        1, profile(2, stack=2), now=later, transaction_id=None, **{**KEYS, "max_installed": 1}
    )
    assert status == "Accepted"
    assert [p["chargingProfileId"] for _, p in store.profiles()] == [2]


# -- ClearChargingProfile -------------------------------------------------------------------


def clear_fixture() -> ProfileStore:
    return store_with(
        (0, profile(1, purpose="ChargePointMaxProfile")),
        (0, profile(2)),
        (1, profile(3, stack=1)),
        (1, profile(4, purpose="TxProfile", stack=2), 7),
        (2, profile(5, stack=1)),
    )


CLEAR_CASES = [
    ("everything", {}, "Accepted", []),
    ("by id", {"id": 3}, "Accepted", [1, 2, 4, 5]),
    ("by unknown id", {"id": 99}, "Unknown", [1, 2, 3, 4, 5]),
    ("id wins over other criteria", {"id": 3, "connector_id": 2}, "Accepted", [1, 2, 4, 5]),
    ("by connector", {"connector_id": 1}, "Accepted", [1, 2, 5]),
    ("by connector 0", {"connector_id": 0}, "Accepted", [3, 4, 5]),
    ("by purpose", {"purpose": "TxDefaultProfile"}, "Accepted", [1, 4]),
    ("by stack level", {"stack_level": 1}, "Accepted", [1, 2, 4]),
    (
        "connector and purpose",
        {"connector_id": 1, "purpose": "TxDefaultProfile"},
        "Accepted",
        [1, 2, 4, 5],
    ),
    (
        "purpose and stack level",
        {"purpose": "TxProfile", "stack_level": 2},
        "Accepted",
        [1, 2, 3, 5],
    ),
    ("nothing matches", {"connector_id": 2, "stack_level": 0}, "Unknown", [1, 2, 3, 4, 5]),
    ("unknown connector", {"connector_id": 9}, "Unknown", [1, 2, 3, 4, 5]),
]


@pytest.mark.parametrize(
    ("criteria", "status", "remaining"),
    [case[1:] for case in CLEAR_CASES],
    ids=[case[0] for case in CLEAR_CASES],
)
def test_clear_charging_profile(
    criteria: dict[str, Any], status: str, remaining: list[int]
) -> None:
    store = clear_fixture()
    assert store.clear(**criteria) == status
    assert sorted(p["chargingProfileId"] for _, p in store.profiles()) == remaining


def test_ending_a_transaction_removes_its_tx_profiles_only() -> None:
    store = clear_fixture()
    assert store.transaction_ended(2) == 0
    assert store.transaction_ended(1) == 1
    assert sorted(p["chargingProfileId"] for _, p in store.profiles()) == [1, 2, 3, 5]


# -- the composite limit at an instant ------------------------------------------------------

RELATIVE = profile(
    9, purpose="TxProfile", kind="Relative", periods=((0, 32.0), (1800, 10.0)), duration=3600
)
DAILY = profile(
    20,
    kind="Recurring",
    recurrency="Daily",
    start="2026-01-01T22:00:00Z",
    periods=((0, 10.0), (7200, 6.0)),
    duration=8 * 3600,
)
WEEKLY = profile(
    21,
    kind="Recurring",
    recurrency="Weekly",
    start="2026-01-04T20:00:00Z",
    periods=((0, 8.0), (4 * 3600, 16.0)),
    duration=24 * 3600,
)
WINDOW = profile(
    22, valid_from="2026-01-05T13:00:00Z", valid_to="2026-01-05T14:00:00Z", periods=((0, 20.0),)
)

Install = tuple[Any, ...]  # (connector id, csChargingProfiles[, transaction id])
MAX_16A = profile(1, purpose="ChargePointMaxProfile")
MAX_30KW = profile(1, purpose="ChargePointMaxProfile", unit="W", periods=((0, 30000.0),))


def amps(limit: float, profile_id: int = 1, **options: Any) -> dict[str, Any]:
    return profile(profile_id, periods=((0, limit),), **options)


def when(
    name: str,
    installs: list[Install],
    instant: str,
    expected: tuple[float, int | None] | None,
    *,
    connector: int = 1,
    tx_start: str | None = None,
    electrical: dict[str, Any] = AC3,
) -> Any:
    return pytest.param(installs, connector, instant, tx_start, electrical, expected, id=name)


T = "2026-01-05T12:00:00Z"
LIMIT_CASES = [
    when("no profile", [], T, None),
    when("one tx default", [(1, profile())], T, (11040.0, None)),
    when(
        "higher stack level wins",
        [(1, amps(32.0, 1)), (1, amps(10.0, 2, stack=1))],
        T,
        (6900.0, None),
    ),
    when(
        "higher stack level wins even when looser",
        [(1, amps(10.0, 1)), (1, amps(32.0, 2, stack=1))],
        T,
        (22080.0, None),
    ),
    when(
        "lower stack level after the higher one's duration",
        [
            (1, amps(32.0, 1)),
            (1, amps(10.0, 2, stack=1, start="2026-01-05T10:00:00Z", duration=3600)),
        ],
        T,
        (22080.0, None),
    ),
    when(
        "tx profile overrides a higher tx default",
        [(1, amps(10.0, 1, stack=5)), (1, amps(20.0, 2, purpose="TxProfile"), 7)],
        T,
        (13800.0, None),
    ),
    when(
        "max profile caps the tx profile",
        [(0, MAX_16A), (1, amps(32.0, 2, purpose="TxProfile"), 7)],
        T,
        (11040.0, None),
    ),
    when("max profile above the tx default", [(0, MAX_30KW), (1, profile(2))], T, (11040.0, None)),
    when("max profile alone", [(0, MAX_30KW)], T, (30000.0, None), connector=2),
    when("tx default on 0 for every connector", [(0, profile())], T, (11040.0, None), connector=2),
    when(
        "the connector's own tx default wins a tie with connector 0's",
        [(0, amps(10.0, 1)), (1, amps(20.0, 2))],
        T,
        (13800.0, None),
    ),
    when(
        "connector 0 sees only the max profile",
        [(0, profile(1)), (1, profile(2))],
        T,
        None,
        connector=0,
    ),
    when(
        "relative from tx start",
        [(1, RELATIVE, 7)],
        T,
        (22080.0, None),
        tx_start="2026-01-05T11:50:00Z",
    ),
    when(
        "relative second period",
        [(1, RELATIVE, 7)],
        T,
        (6900.0, None),
        tx_start="2026-01-05T11:20:00Z",
    ),
    when(
        "relative after its duration", [(1, RELATIVE, 7)], T, None, tx_start="2026-01-05T10:50:00Z"
    ),
    when("absolute before startSchedule", [(1, profile(start="2026-01-06T00:00:00Z"))], T, None),
    when("daily before midnight", [(1, DAILY)], "2026-01-05T23:00:00Z", (6900.0, None)),
    when("daily after midnight", [(1, DAILY)], "2026-01-06T01:00:00Z", (4140.0, None)),
    when("daily after its duration", [(1, DAILY)], "2026-01-06T06:00:00Z", None),
    when("daily just before it starts", [(1, DAILY)], "2026-01-05T21:59:59Z", None),
    when("daily not before its first day", [(1, DAILY)], "2026-01-01T01:00:00Z", None),
    when("weekly on sunday evening", [(1, WEEKLY)], "2026-01-11T21:00:00Z", (5520.0, None)),
    when("weekly across the week boundary", [(1, WEEKLY)], "2026-01-12T01:00:00Z", (11040.0, None)),
    when("weekly after its duration", [(1, WEEKLY)], "2026-01-12T20:00:00Z", None),
    when("weekly mid-week", [(1, WEEKLY)], "2026-01-08T12:00:00Z", None),
    when("weekly before its first week", [(1, WEEKLY)], "2026-01-04T19:00:00Z", None),
    when("before validFrom", [(1, WINDOW)], "2026-01-05T12:59:59Z", None),
    when("within validity", [(1, WINDOW)], "2026-01-05T13:30:00Z", (13800.0, None)),
    when("at validTo", [(1, WINDOW)], "2026-01-05T14:00:00Z", None),
    when("watts stay watts", [(1, profile(unit="W", periods=((0, 7000.0),)))], T, (7000.0, None)),
    when("one phase of three", [(1, profile(periods=((0, 16.0, 1),)))], T, (3680.0, 1)),
    when("two phases of three", [(1, profile(periods=((0, 16.0, 2),)))], T, (7360.0, 2)),
    when("three phases on one", [(1, profile())], T, (3680.0, None), electrical=AC1),
    when("dc amps", [(1, amps(100.0))], T, (40000.0, None), electrical=DC),
]


@pytest.mark.parametrize(
    ("installs", "connector_id", "instant", "tx_start", "electrical", "expected"), LIMIT_CASES
)
def test_composite_limit_at_an_instant(
    installs: list[Install],
    connector_id: int,
    instant: str,
    tx_start: str | None,
    electrical: dict[str, Any],
    expected: tuple[float, int | None] | None,
) -> None:
    store = store_with(*installs)
    limit = store.limit_at(
        connector_id, at(instant), tx_start=at(tx_start) if tx_start else None, **electrical
    )
    if expected is None:
        assert limit is None
    else:
        assert limit is not None
        assert limit[0] == pytest.approx(expected[0])
        assert limit[1] == expected[1]


def test_relative_profile_without_a_transaction_runs_from_the_instant_asked() -> None:
    store = store_with((1, profile(kind="Relative", periods=((0, 32.0), (60, 6.0)))))
    assert store.limit_at(1, NOW, tx_start=None, **AC3) == (22080.0, None)


def test_absolute_profile_without_start_schedule_runs_from_the_transaction_start() -> None:
    cs_profile = profile(purpose="TxProfile", periods=((0, 32.0), (600, 6.0)))
    del cs_profile["chargingSchedule"]["startSchedule"]
    store = store_with((1, cs_profile, 7))
    early = store.limit_at(1, NOW, tx_start=NOW - timedelta(minutes=5), **AC3)
    late = store.limit_at(1, NOW, tx_start=NOW - timedelta(minutes=15), **AC3)
    assert early == (22080.0, None)
    assert late == pytest.approx((4140.0, None))


# -- GetCompositeSchedule -------------------------------------------------------------------


def composite(store: ProfileStore, **options: Any) -> dict[str, Any] | None:
    arguments: dict[str, Any] = {"connector_id": 1, "start": NOW, "duration_s": 3600, "unit": "W"}
    arguments.update(AC3)
    arguments.update(options)
    schedule = store.composite_schedule(
        arguments.pop("connector_id"),
        arguments.pop("start"),
        arguments.pop("duration_s"),
        arguments.pop("unit"),
        **arguments,
    )
    if schedule is not None:
        get_validator("1.6").validate_response(
            "GetCompositeSchedule",
            {
                "status": "Accepted",
                "connectorId": 1,
                "scheduleStart": format_datetime(NOW),
                "chargingSchedule": schedule,
            },
        )
    return schedule


def periods_of(schedule: dict[str, Any] | None) -> list[tuple[int, float, int | None]]:
    assert schedule is not None
    return [
        (p["startPeriod"], p["limit"], p.get("numberPhases"))
        for p in schedule["chargingSchedulePeriod"]
    ]


STEPPING = profile(
    30, purpose="TxProfile", kind="Relative", periods=((0, 32.0), (600, 10.0), (1200, 0.0))
)
Periods = list[tuple[int, float, int | None]]


def schedule(name: str, installs: list[Install], options: dict[str, Any], expected: Periods) -> Any:
    return pytest.param(installs, options, expected, id=name)


COMPOSITE_CASES = [
    schedule(
        "max profile caps a stepping tx profile",
        [(0, amps(20.0, 1, purpose="ChargePointMaxProfile")), (1, STEPPING, 7)],
        {"tx_start": NOW},
        [(0, 13800.0, None), (600, 6900.0, None), (1200, 0.0, None)],
    ),
    schedule(
        "stepping profile in amps",
        [(1, STEPPING, 7)],
        {"tx_start": NOW, "unit": "A"},
        [(0, 32.0, None), (600, 10.0, None), (1200, 0.0, None)],
    ),
    schedule(
        "relative schedule from a transaction started earlier",
        [(1, STEPPING, 7)],
        {"tx_start": NOW - timedelta(seconds=900), "unit": "A"},
        [(0, 10.0, None), (300, 0.0, None)],
    ),
    schedule("one phase in watts", [(1, profile(periods=((0, 16.0, 1),)))], {}, [(0, 3680.0, 1)]),
    schedule(
        "one phase in amps", [(1, profile(periods=((0, 16.0, 1),)))], {"unit": "A"}, [(0, 16.0, 1)]
    ),
    schedule(
        "watts in amps on three phases",
        [(1, profile(unit="W", periods=((0, 11040.0),)))],
        {"unit": "A"},
        [(0, 16.0, None)],
    ),
    schedule(
        "watts in amps, rounded to 0.1",
        [(1, profile(unit="W", periods=((0, 7000.0),)))],
        {"unit": "A"},
        [(0, 10.1, None)],
    ),
    schedule(
        "dc watts in amps",
        [(1, profile(unit="W", periods=((0, 50000.0),)))],
        {"unit": "A", **DC},
        [(0, 125.0, None)],
    ),
    schedule(
        "stacking over a window",
        [
            (1, amps(32.0, 1)),
            (1, amps(10.0, 2, stack=1, start="2026-01-05T12:20:00Z", duration=600)),
        ],
        {"unit": "A"},
        [(0, 32.0, None), (1200, 10.0, None), (1800, 32.0, None)],
    ),
    schedule(
        "daily profile across midnight",
        [(1, amps(32.0, 1)), (1, DAILY | {"stackLevel": 1})],
        {"start": at("2026-01-05T21:00:00Z"), "duration_s": 12 * 3600, "unit": "A"},
        [(0, 32.0, None), (3600, 10.0, None), (3 * 3600, 6.0, None), (9 * 3600, 32.0, None)],
    ),
    schedule(
        "weekly profile across the week boundary",
        [(1, amps(32.0, 1)), (1, WEEKLY | {"stackLevel": 1})],
        {"start": at("2026-01-11T12:00:00Z"), "duration_s": 2 * 86400, "unit": "A"},
        [(0, 32.0, None), (8 * 3600, 8.0, None), (12 * 3600, 16.0, None), (32 * 3600, 32.0, None)],
    ),
    schedule(
        "gaps take the local limit",
        [(1, profile(start="2026-01-05T12:10:00Z", duration=600))],
        {"max_power_w": 22080.0},
        [(0, 22080.0, None), (600, 11040.0, None), (1200, 22080.0, None)],
    ),
    schedule(
        "the local limit caps every period",
        [(1, amps(32.0))],
        {"max_power_w": 11000.0},
        [(0, 11000.0, None)],
    ),
    schedule(
        "validity window",
        [(1, amps(32.0)), (1, WINDOW | {"stackLevel": 1})],
        {"duration_s": 3 * 3600, "unit": "A"},
        [(0, 32.0, None), (3600, 20.0, None), (7200, 32.0, None)],
    ),
    schedule(
        "connector 0 composite is the max profile",
        [(0, MAX_30KW), (0, profile(2))],
        {"connector_id": 0},
        [(0, 30000.0, None)],
    ),
]


@pytest.mark.parametrize(("installs", "options", "expected"), COMPOSITE_CASES)
def test_composite_schedule(
    installs: list[Install], options: dict[str, Any], expected: Periods
) -> None:
    store = store_with(*installs)
    result = composite(store, **options)
    assert periods_of(result) == expected
    assert result is not None
    assert result["chargingRateUnit"] == options.get("unit", "W")
    assert result["duration"] == options.get("duration_s", 3600)


def test_composite_schedule_is_none_without_any_applicable_profile() -> None:
    assert composite(ProfileStore()) is None
    store = store_with((1, profile(start="2026-01-06T00:00:00Z")))
    assert composite(store) is None


def test_composite_schedule_matches_limit_at_every_second_boundary() -> None:
    store = store_with(
        (0, profile(1, purpose="ChargePointMaxProfile", periods=((0, 25.0),))),
        (1, DAILY),
        (
            1,
            profile(
                2,
                stack=2,
                start="2026-01-05T23:30:00Z",
                duration=1800,
                periods=((0, 4.0), (900, 30.0)),
            ),
        ),
    )
    start = at("2026-01-05T21:00:00Z")
    schedule = composite(store, start=start, duration_s=12 * 3600, max_power_w=22080.0)
    periods = periods_of(schedule)
    for offset in range(0, 12 * 3600, 300):
        limit = store.limit_at(1, start + timedelta(seconds=offset), tx_start=None, **AC3)
        expected = min(limit[0], 22080.0) if limit else 22080.0
        current = [p for p in periods if p[0] <= offset][-1]
        assert current[1] == pytest.approx(expected, abs=0.05)


# -- persistence ----------------------------------------------------------------------------


def test_state_round_trip_restores_every_profile_and_is_toml_able() -> None:
    store = clear_fixture()
    state = store.to_state()
    tomli_w.dumps({"profiles": state})
    restored = ProfileStore()
    restored.from_state(json.loads(json.dumps(state)))
    assert restored.profiles() == store.profiles()
    when = NOW
    for connector_id in (0, 1, 2):
        assert restored.limit_at(connector_id, when, tx_start=None, **AC3) == store.limit_at(
            connector_id, when, tx_start=None, **AC3
        )


@pytest.mark.parametrize(
    "state",
    [
        [{"profile": profile()}],
        [{"connector_id": "1", "profile": profile()}],
        [{"connector_id": 1, "profile": profile(periods=())}],
        [{"connector_id": 1}],
    ],
)
def test_malformed_profile_state_is_refused(state: list[dict[str, Any]]) -> None:
    with pytest.raises(ValueError, match="charging profile"):
        ProfileStore().from_state(state)
