"""One installed charging profile, parsed: when it applies and with which limit.

OCPP 1.6 §3.13.3 (profile kinds and recurrency), §7.8-7.13 (ChargingProfile, ChargingSchedule,
ChargingSchedulePeriod). Pure: no trio; instants are timezone-aware datetimes (UTC).

Where the specification is silent:
- An Absolute profile without `startSchedule` runs from the start of charging, as a Relative one
  (§7.13: "If absent the schedule will be relative to start of charging").
- A Recurring profile starts at its `startSchedule` and repeats every day or week from there;
  it does not apply before `startSchedule`. A `duration` longer than the recurrency period is
  cut at the next occurrence; without `duration` an occurrence lasts the whole period.
- Time is UTC: a Daily profile recurs every 24 h (no daylight-saving shifts).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

__all__ = [
    "KINDS",
    "PURPOSES",
    "InstalledProfile",
    "Period",
    "ProfileError",
    "format_datetime",
    "parse_datetime",
]

PURPOSES = ("ChargePointMaxProfile", "TxDefaultProfile", "TxProfile")
KINDS = ("Absolute", "Recurring", "Relative")
_RECURRENCY = {"Daily": timedelta(days=1), "Weekly": timedelta(weeks=1)}


class ProfileError(ValueError):
    """A charging profile that cannot be installed; the message says why."""


def parse_datetime(text: str) -> datetime:
    """An OCPP dateTime (ISO 8601, `Z` or an offset) as an aware datetime; naive means UTC."""
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def format_datetime(when: datetime) -> str:
    """An aware datetime as an OCPP timestamp: UTC, ISO 8601 with `Z`."""
    text = aware(when).astimezone(UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"


def aware(when: datetime) -> datetime:
    """`when` itself if timezone-aware, else the same wall time taken as UTC."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


@attrs.frozen
class Period:
    """A ChargingSchedulePeriod: from `start_s` seconds into the schedule, `limit` in the
    schedule's unit, on `number_phases` phases (None: not given, 3 assumed on AC)."""

    start_s: int
    limit: float
    number_phases: int | None = None


def _integer(value: Any, what: str, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProfileError(f"{what}: expected an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ProfileError(f"{what}: expected an integer >= {minimum}, got {value}")
    return value


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ProfileError(f"{what}: expected a number >= 0, got {value!r}")
    return float(value)


def _instant(raw: Mapping[str, Any], key: str) -> datetime | None:
    text = raw.get(key)
    if text is None:
        return None
    try:
        return parse_datetime(str(text))
    except ValueError:
        raise ProfileError(f"{key}: expected an ISO 8601 date-time, got {text!r}") from None


def _periods(schedule: Mapping[str, Any]) -> tuple[Period, ...]:
    raw = schedule.get("chargingSchedulePeriod")
    if not isinstance(raw, list) or not raw:
        raise ProfileError("chargingSchedulePeriod: expected at least one period")
    periods: list[Period] = []
    for index, item in enumerate(raw):
        where = f"chargingSchedulePeriod[{index}]"
        if not isinstance(item, Mapping):
            raise ProfileError(f"{where}: expected an object")
        start = _integer(item.get("startPeriod"), f"{where}.startPeriod", minimum=0)
        if not periods and start != 0:
            raise ProfileError(f"{where}.startPeriod: the first period must start at 0")
        if periods and start <= periods[-1].start_s:
            raise ProfileError(f"{where}.startPeriod: periods must start in increasing order")
        phases = item.get("numberPhases")
        if phases is not None and _integer(phases, f"{where}.numberPhases") not in (1, 2, 3):
            raise ProfileError(f"{where}.numberPhases: expected 1, 2 or 3, got {phases}")
        periods.append(Period(start, _number(item.get("limit"), f"{where}.limit"), phases))
    return tuple(periods)


@attrs.frozen
class InstalledProfile:
    """A csChargingProfiles object installed on `connector_id`, with its fields parsed.

    `raw` is the profile as received (plain JSON data, for persistence and reports).
    """

    connector_id: int
    raw: dict[str, Any] = attrs.field(eq=False, repr=False)
    profile_id: int
    stack_level: int
    purpose: str
    kind: str
    recurrency: timedelta | None
    transaction_id: int | None
    valid_from: datetime | None
    valid_to: datetime | None
    start_schedule: datetime | None
    duration_s: int | None
    unit: str
    periods: tuple[Period, ...]

    @classmethod
    def parse(cls, connector_id: int, raw: Mapping[str, Any]) -> InstalledProfile:
        """Check and parse a csChargingProfiles object; raises ProfileError saying why not."""
        if not isinstance(raw, Mapping):
            raise ProfileError("csChargingProfiles: expected an object")
        purpose = raw.get("chargingProfilePurpose")
        if purpose not in PURPOSES:
            raise ProfileError(f"chargingProfilePurpose: unknown value {purpose!r}")
        kind = raw.get("chargingProfileKind")
        if kind not in KINDS:
            raise ProfileError(f"chargingProfileKind: unknown value {kind!r}")
        recurrency = None
        if kind == "Recurring":
            recurrency = _RECURRENCY.get(str(raw.get("recurrencyKind")))
            if recurrency is None:
                raise ProfileError("recurrencyKind: a Recurring profile needs Daily or Weekly")
        transaction_id = raw.get("transactionId")
        if transaction_id is not None:
            _integer(transaction_id, "transactionId")
            if purpose != "TxProfile":
                raise ProfileError("transactionId: only a TxProfile names a transaction")
        schedule = raw.get("chargingSchedule")
        if not isinstance(schedule, Mapping):
            raise ProfileError("chargingSchedule: expected an object")
        unit = schedule.get("chargingRateUnit")
        if unit not in ("A", "W"):
            raise ProfileError(f"chargingRateUnit: expected A or W, got {unit!r}")
        duration = schedule.get("duration")
        if duration is not None:
            _integer(duration, "duration", minimum=0)
        if schedule.get("minChargingRate") is not None:
            _number(schedule["minChargingRate"], "minChargingRate")
        start_schedule = _instant(schedule, "startSchedule")
        if kind == "Recurring" and start_schedule is None:
            raise ProfileError("startSchedule: a Recurring profile needs one")
        valid_from, valid_to = _instant(raw, "validFrom"), _instant(raw, "validTo")
        if valid_from is not None and valid_to is not None and valid_to <= valid_from:
            raise ProfileError("validTo: expected a date-time after validFrom")
        return cls(
            connector_id=connector_id,
            raw=dict(raw),
            profile_id=_integer(raw.get("chargingProfileId"), "chargingProfileId"),
            stack_level=_integer(raw.get("stackLevel"), "stackLevel", minimum=0),
            purpose=str(purpose),
            kind=str(kind),
            recurrency=recurrency,
            transaction_id=transaction_id,
            valid_from=valid_from,
            valid_to=valid_to,
            # Relative schedules run from the start of charging, whatever startSchedule says.
            start_schedule=None if kind == "Relative" else start_schedule,
            duration_s=duration,
            unit=str(unit),
            periods=_periods(schedule),
        )

    def valid_at(self, when: datetime) -> bool:
        """validFrom <= when < validTo (each bound only when given)."""
        if self.valid_from is not None and when < self.valid_from:
            return False
        return self.valid_to is None or when < self.valid_to

    def _length(self) -> timedelta | None:
        """How long one run of the schedule lasts (None: until further notice)."""
        length = timedelta(seconds=self.duration_s) if self.duration_s is not None else None
        if self.recurrency is not None:
            return self.recurrency if length is None else min(length, self.recurrency)
        return length

    def schedule_start(self, when: datetime, anchor: datetime) -> datetime | None:
        """Where the run of the schedule covering `when` starts: startSchedule (Absolute), the
        latest occurrence at or before `when` (Recurring; None before the first), or `anchor`
        (the start of charging) for Relative and for Absolute without startSchedule."""
        if self.start_schedule is None:
            return anchor
        if self.recurrency is None:
            return self.start_schedule
        if when < self.start_schedule:
            return None
        cycles = (when - self.start_schedule) // self.recurrency
        return self.start_schedule + cycles * self.recurrency

    def period_at(self, when: datetime, anchor: datetime) -> Period | None:
        """The period in force at `when`, or None if the profile does not apply then."""
        if not self.valid_at(when):
            return None
        start = self.schedule_start(when, anchor)
        if start is None or when < start:
            return None
        offset = when - start
        length = self._length()
        if length is not None and offset >= length:
            return None
        seconds = offset.total_seconds()
        current = None
        for period in self.periods:
            if period.start_s > seconds:
                break
            current = period
        return current

    def change_points(self, start: datetime, end: datetime, anchor: datetime) -> Iterator[datetime]:
        """Instants in (start, end) where what this profile says may change."""
        points: list[datetime | None] = [self.valid_from, self.valid_to]
        length = self._length()
        runs: list[datetime] = []
        if self.start_schedule is None:
            runs.append(anchor)
        elif self.recurrency is None:
            runs.append(self.start_schedule)
        else:
            first = max(0, math.floor((start - self.start_schedule) / self.recurrency))
            run = self.start_schedule + first * self.recurrency
            while run < end:
                runs.append(run)
                run += self.recurrency
        for run in runs:
            points.extend(run + timedelta(seconds=period.start_s) for period in self.periods)
            if length is not None:
                points.append(run + length)
        return (point for point in points if point is not None and start < point < end)
