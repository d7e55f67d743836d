"""Per-station counters: cheap integer bumps on the hot path, read by statistics and /metrics."""

from __future__ import annotations

import bisect
from collections import Counter

import attrs

# CSMS response latency buckets (seconds): a loopback CSMS answers in ~1 ms, a loaded one in 1 s+.
LATENCY_BOUNDS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
)


@attrs.define
class LatencyHistogram:
    """Round-trip times of one action: counts per bucket (last one +Inf), not cumulative."""

    bounds: tuple[float, ...] = LATENCY_BOUNDS
    counts: list[int] = attrs.field(factory=lambda: [0] * (len(LATENCY_BOUNDS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        """Count one round trip of `seconds`."""
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    @property
    def count(self) -> int:
        """How many round trips were observed."""
        return sum(self.counts)


@attrs.define
class StationStatistics:
    """Counters of one station."""

    calls_sent: int = 0
    call_errors: int = 0
    call_timeouts: int = 0
    connects: int = 0
    connect_failures: int = 0
    boot_attempts: int = 0
    transactions_started: int = 0
    transactions_stopped: int = 0
    sent_by_action: Counter[str] = attrs.field(factory=Counter)
    received_by_action: Counter[str] = attrs.field(factory=Counter)
    latency: dict[str, LatencyHistogram] = attrs.field(factory=dict)

    def observe(self, action: str, seconds: float) -> None:
        """Record the CSMS's answer time to one CALL."""
        histogram = self.latency.get(action)
        if histogram is None:
            histogram = self.latency[action] = LatencyHistogram()
        histogram.observe(seconds)
