"""Installed charging profiles and the composite limit (OCPP 1.6 §3.13 Smart Charging).

`ProfileStore` answers SetChargingProfile (§5.16), ClearChargingProfile (§5.4) and
GetCompositeSchedule (§5.7), and gives the meter the limit of each instant (`limit_at`): the
same composite the CSMS is told about is what the simulated power obeys. Pure: no trio.

The composite at an instant (§3.13.4, §3.13.5): for each purpose, the profile with the highest
stackLevel that applies then (valid and with a period covering it); a TxProfile overrides the
TxDefaultProfile; the result is the minimum of the ChargePointMaxProfile's limit and that one.
Limits in A are per phase: W = A · V · phases on AC, A · V on DC.

Where the specification is silent:
- A TxDefaultProfile on connector 0 applies to every connector; on a tie of stack levels, the
  connector's own profile wins over connector 0's.
- The composite of connector 0 (the whole station) is its ChargePointMaxProfile only.
- `numberPhases` defaults to 3 (§7.13) but a station never uses more phases than it has: an A
  limit is converted with min(numberPhases or 3, the station's phases).
- A profile already expired (validTo <= now) is Rejected; expired profiles are dropped when a
  new one is set, so they do not count against MaxChargingProfilesInstalled.
- Without a transaction, Relative profiles run from the instant asked (`limit_at`) or from the
  start of the requested schedule (`composite_schedule`).
- ClearChargingProfile with an `id` removes that profile and ignores the other criteria.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from evsim_trio.station._charging_schedule import (
    PURPOSES,
    InstalledProfile,
    Period,
    ProfileError,
    aware,
    format_datetime,
)
from evsim_trio.station._electrical import amps_to_watts, watts_to_amps

__all__ = ["ProfileStore"]

# ChargingScheduleAllowedChargingRateUnit lists "Current" and "Power"; the units themselves
# are accepted too.
_UNIT_NAMES = {"Current": "A", "Power": "W", "A": "A", "W": "W"}
Limit = tuple[float, int | None]


def _phases_used(number_phases: int | None, phases: int, dc: bool) -> int:
    if dc:
        return 1
    wanted = number_phases or 3
    return min(wanted, phases) if phases >= 1 else wanted


def _to_watts(
    profile: InstalledProfile, period: Period, voltage: float, phases: int, dc: bool
) -> float:
    if profile.unit == "W":
        return period.limit
    used = _phases_used(period.number_phases, phases, dc)
    return amps_to_watts(period.limit, voltage=voltage, phases=used, dc=dc)


class ProfileStore:
    """The charging profiles installed on a station, per connector (0 = the station)."""

    def __init__(self) -> None:
        self._profiles: list[InstalledProfile] = []
        # Why the last `set` answered Rejected (for the station's log), else None.
        self.rejection: str | None = None

    def __len__(self) -> int:
        return len(self._profiles)

    def profiles(self, connector_id: int | None = None) -> list[tuple[int, dict[str, Any]]]:
        """(connector id, csChargingProfiles) of the installed profiles, oldest first."""
        return [
            (p.connector_id, copy.deepcopy(p.raw))
            for p in self._profiles
            if connector_id is None or p.connector_id == connector_id
        ]

    # -- SetChargingProfile, ClearChargingProfile -------------------------------------------

    def set(
        self,
        connector_id: int,
        cs_charging_profiles: Mapping[str, Any],
        *,
        now: datetime,
        transaction_id: int | None,
        max_stack_level: int,
        allowed_units: Iterable[str],
        max_periods: int,
        max_installed: int,
    ) -> str:
        """Install a profile (1.6 §5.16): "Accepted" or "Rejected" (reason in `rejection`).

        `transaction_id` is the transaction running on the connector (None: none);
        the limits are the configuration keys ChargeProfileMaxStackLevel,
        ChargingScheduleAllowedChargingRateUnit (its CSL, or its items: Current, Power;
        empty allows both units),
        ChargingScheduleMaxPeriods and MaxChargingProfilesInstalled. A profile with the same
        chargingProfileId, or with the same purpose and stackLevel on the same connector,
        is replaced.
        """
        self.rejection = None
        try:
            profile = InstalledProfile.parse(
                connector_id, copy.deepcopy(dict(cs_charging_profiles))
            )
            self._check(profile, now, transaction_id, max_stack_level, allowed_units, max_periods)
        except ProfileError as exc:
            self.rejection = str(exc)
            return "Rejected"
        now = aware(now)
        kept = [
            p
            for p in self._profiles
            if (p.valid_to is None or p.valid_to > now)
            and p.profile_id != profile.profile_id
            and not (
                p.connector_id == connector_id
                and p.purpose == profile.purpose
                and p.stack_level == profile.stack_level
            )
        ]
        if len(kept) >= max_installed:
            self.rejection = f"MaxChargingProfilesInstalled ({max_installed}) reached"
            return "Rejected"
        self._profiles = [*kept, profile]
        return "Accepted"

    @staticmethod
    def _check(
        profile: InstalledProfile,
        now: datetime,
        transaction_id: int | None,
        max_stack_level: int,
        allowed_units: Iterable[str],
        max_periods: int,
    ) -> None:
        connector_id = profile.connector_id
        if connector_id < 0:
            raise ProfileError(f"connectorId: expected 0 or more, got {connector_id}")
        if profile.purpose == "ChargePointMaxProfile" and connector_id != 0:
            raise ProfileError("ChargePointMaxProfile: only on connector 0")
        if profile.purpose == "TxProfile":
            if connector_id == 0:
                raise ProfileError("TxProfile: only on a connector, not 0")
            if transaction_id is None:
                raise ProfileError(f"TxProfile: no transaction on connector {connector_id}")
            if profile.transaction_id not in (None, transaction_id):
                raise ProfileError(
                    f"transactionId {profile.transaction_id}: connector {connector_id} "
                    f"runs transaction {transaction_id}"
                )
        if profile.stack_level > max_stack_level:
            raise ProfileError(
                f"stackLevel {profile.stack_level} above ChargeProfileMaxStackLevel "
                f"({max_stack_level})"
            )
        items = allowed_units.split(",") if isinstance(allowed_units, str) else allowed_units
        units = {_UNIT_NAMES.get(item.strip(), "?") for item in items if item.strip()}
        if units and profile.unit not in units:
            raise ProfileError(f"chargingRateUnit {profile.unit} not allowed")
        if len(profile.periods) > max_periods:
            raise ProfileError(
                f"{len(profile.periods)} periods, ChargingScheduleMaxPeriods is {max_periods}"
            )
        if profile.valid_to is not None and profile.valid_to <= aware(now):
            raise ProfileError("validTo: the profile has already expired")

    def clear(
        self,
        *,
        id: int | None = None,  # the field name of ClearChargingProfile.req
        connector_id: int | None = None,
        purpose: str | None = None,
        stack_level: int | None = None,
    ) -> str:
        """Remove profiles (1.6 §5.4): the one with `id`, else those matching every criterion
        given (none: all). "Accepted" if something was removed, else "Unknown"."""

        def matches(p: InstalledProfile) -> bool:
            if id is not None:
                return p.profile_id == id
            return (
                (connector_id is None or p.connector_id == connector_id)
                and (purpose is None or p.purpose == purpose)
                and (stack_level is None or p.stack_level == stack_level)
            )

        kept = [p for p in self._profiles if not matches(p)]
        if len(kept) == len(self._profiles):
            return "Unknown"
        self._profiles = kept
        return "Accepted"

    def transaction_ended(self, connector_id: int) -> int:
        """Remove the connector's TxProfiles (valid for one transaction only, 1.6 §3.13.2);
        returns how many were removed."""
        before = len(self._profiles)
        self._profiles = [
            p
            for p in self._profiles
            if not (p.connector_id == connector_id and p.purpose == "TxProfile")
        ]
        return before - len(self._profiles)

    # -- composite ------------------------------------------------------------------------

    def _candidates(self, connector_id: int, purpose: str) -> list[InstalledProfile]:
        if purpose == "ChargePointMaxProfile":
            where: tuple[int, ...] = (0,)
        elif connector_id == 0:
            where = ()
        elif purpose == "TxDefaultProfile":
            where = (connector_id, 0)
        else:
            where = (connector_id,)
        return [p for p in self._profiles if p.purpose == purpose and p.connector_id in where]

    def _active(
        self, connector_id: int, purpose: str, when: datetime, anchor: datetime
    ) -> tuple[InstalledProfile, Period] | None:
        best: tuple[InstalledProfile, Period] | None = None
        for profile in self._candidates(connector_id, purpose):
            period = profile.period_at(when, anchor)
            if period is None:
                continue
            if best is None or (profile.stack_level, profile.connector_id != 0) > (
                best[0].stack_level,
                best[0].connector_id != 0,
            ):
                best = (profile, period)
        return best

    def _limit(
        self,
        connector_id: int,
        when: datetime,
        anchor: datetime,
        voltage: float,
        phases: int,
        dc: bool,
    ) -> Limit | None:
        station = self._active(connector_id, "ChargePointMaxProfile", when, anchor)
        tx = self._active(connector_id, "TxProfile", when, anchor) or self._active(
            connector_id, "TxDefaultProfile", when, anchor
        )
        limits: list[Limit] = []
        for found in (station, tx):
            if found is not None:
                profile, period = found
                limits.append(
                    (_to_watts(profile, period, voltage, phases, dc), period.number_phases)
                )
        return min(limits, key=lambda limit: limit[0]) if limits else None

    def limit_at(
        self,
        connector_id: int,
        when: datetime,
        *,
        tx_start: datetime | None,
        voltage: float,
        phases: int,
        dc: bool,
    ) -> Limit | None:
        """The composite limit in W at `when`, with the numberPhases of the period that sets
        it (None: not given); None when no profile applies. `tx_start` starts Relative
        schedules (None: no transaction, they run from `when`); `voltage` and `phases` (the
        station's) convert A limits."""
        when = aware(when)
        anchor = aware(tx_start) if tx_start is not None else when
        return self._limit(connector_id, when, anchor, voltage, phases, dc)

    def change_points(
        self,
        connector_id: int,
        start: datetime,
        end: datetime,
        *,
        tx_start: datetime | None = None,
    ) -> list[datetime]:
        """The instants in (start, end), sorted, where the composite limit of `connector_id`
        may change: period starts, ends of runs and of recurrences, validFrom and validTo of
        every profile that takes part in it. Between two of them `limit_at` is constant.

        `tx_start` starts Relative schedules (None: they run from `start`, as in
        `composite_schedule`).
        """
        start, end = aware(start), aware(end)
        if not self._profiles or end <= start:
            return []
        anchor = aware(tx_start) if tx_start is not None else start
        points: set[datetime] = set()
        for purpose in PURPOSES:
            for profile in self._candidates(connector_id, purpose):
                points.update(profile.change_points(start, end, anchor))
        return sorted(points)

    def snapshot(self) -> ProfileStore:
        """A copy of the installed profiles as they are now; later changes leave it alone.

        The meter integrates the time since its last step under the profiles of that time,
        even when it is asked to after a change (the station advances the meter right after
        SetChargingProfile / ClearChargingProfile).
        """
        copied = ProfileStore()
        copied._profiles = list(self._profiles)  # the profiles themselves are frozen
        return copied

    def composite_schedule(
        self,
        connector_id: int,
        start: datetime,
        duration_s: int,
        unit: str,
        *,
        tx_start: datetime | None = None,
        voltage: float,
        phases: int,
        dc: bool,
        max_power_w: float | None = None,
    ) -> dict[str, Any] | None:
        """The GetCompositeScheduleResponse chargingSchedule (1.6 §5.7) for `duration_s`
        seconds from `start`, in `unit` ("A" or "W"): one period per change of the composite
        limit, limits rounded to 0.1. None when no profile applies in that window.

        `max_power_w`, the connector's own maximum, is a local limit (§3.13.5): it caps every
        period and fills the times no profile covers. Without it those times get the highest
        limit the composite reaches in the window.
        """
        if unit not in ("A", "W"):
            raise ValueError(f"chargingRateUnit must be A or W, got {unit!r}")
        if duration_s < 0:
            raise ValueError(f"duration must be >= 0 s, got {duration_s}")
        start = aware(start)
        end = start + timedelta(seconds=duration_s)
        anchor = aware(tx_start) if tx_start is not None else start
        offsets = {0}
        for point in self.change_points(connector_id, start, end, tx_start=anchor):
            offsets.add(math.ceil((point - start).total_seconds()))
        steps = [
            (
                offset,
                self._limit(
                    connector_id, start + timedelta(seconds=offset), anchor, voltage, phases, dc
                ),
            )
            for offset in sorted(o for o in offsets if o < max(duration_s, 1))
        ]
        found = [limit for _, limit in steps if limit is not None]
        if not found:
            return None
        fallback = max_power_w if max_power_w is not None else max(w for w, _ in found)
        periods: list[dict[str, Any]] = []
        for offset, limit in steps:
            watts, number_phases = limit if limit is not None else (fallback, None)
            if max_power_w is not None and watts > max_power_w:
                watts, number_phases = max_power_w, None
            value = watts
            if unit == "A":
                used = _phases_used(number_phases, phases, dc)
                value = watts_to_amps(watts, voltage=voltage, phases=used, dc=dc)
            period: dict[str, Any] = {"startPeriod": offset, "limit": round(max(0.0, value), 1)}
            if number_phases is not None:
                period["numberPhases"] = number_phases
            if periods and {**periods[-1], "startPeriod": offset} == period:
                continue
            periods.append(period)
        return {
            "duration": duration_s,
            "startSchedule": format_datetime(start),
            "chargingRateUnit": unit,
            "chargingSchedulePeriod": periods,
        }

    # -- persistence ----------------------------------------------------------------------

    def to_state(self) -> list[dict[str, Any]]:
        """The installed profiles as plain data (JSON- and TOML-able), oldest first."""
        return [
            {"connector_id": p.connector_id, "profile": copy.deepcopy(p.raw)}
            for p in self._profiles
        ]

    def from_state(self, state: Sequence[Mapping[str, Any]]) -> None:
        """Replace the installed profiles by `to_state()` output; ValueError if malformed."""
        profiles = []
        for index, item in enumerate(state):
            try:
                connector_id = item["connector_id"]
                if isinstance(connector_id, bool) or not isinstance(connector_id, int):
                    raise ProfileError(f"connector_id: expected an integer, got {connector_id!r}")
                profiles.append(
                    InstalledProfile.parse(connector_id, copy.deepcopy(dict(item["profile"])))
                )
            except (KeyError, TypeError, ProfileError) as exc:
                raise ValueError(f"charging profile [{index}]: {exc}") from None
        self._profiles = profiles
