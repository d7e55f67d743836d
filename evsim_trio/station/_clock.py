"""Wall-clock timestamps that follow trio's clock.

OCPP timestamps are wall-clock UTC, but all waiting goes through trio's clock (so that tests run
under MockClock). The station clock is anchored once per `trio.run`: wall time at the anchor plus
the trio time elapsed since. In production the two advance together; under MockClock, hours of
simulated life carry timestamps hours apart.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import trio

_ANCHOR: trio.lowlevel.RunVar[tuple[datetime, float]] = trio.lowlevel.RunVar("evsim_clock_anchor")


def utc_now() -> datetime:
    """The current station time, UTC, timezone-aware."""
    try:
        wall, mono = _ANCHOR.get()
    except LookupError:
        wall, mono = datetime.now(UTC), trio.current_time()
        _ANCHOR.set((wall, mono))
    return wall + timedelta(seconds=trio.current_time() - mono)


def format_timestamp(when: datetime) -> str:
    """An OCPP timestamp: UTC, millisecond precision, `Z` suffix."""
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ocpp_timestamp() -> str:
    """Now, as an OCPP timestamp."""
    return format_timestamp(utc_now())


def parse_timestamp(text: str) -> datetime:
    """Parse an OCPP timestamp (ISO 8601, `Z` or offset; naive means UTC)."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
