"""Per-station counters: cheap integer bumps on the hot path, read by statistics and /metrics."""

from __future__ import annotations

import bisect
import math
from collections import Counter
from typing import Any

import attrs

# CSMS response latency buckets (seconds) of /metrics: a loopback CSMS answers in ~1 ms, a
# loaded one in 1 s+.
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

# Fine buckets for percentiles, log-spaced: bucket i holds [GROWTH**i, GROWTH**(i+1)) seconds,
# 48 per decade, so a bucket is 4.9 % wide and its geometric middle is within 2.4 % of any value
# in it. Sparse (only buckets that were hit are stored), so they cost little per station.
FINE_BUCKETS_PER_DECADE = 48
GROWTH = 10.0 ** (1.0 / FINE_BUCKETS_PER_DECADE)
RESOLUTION = GROWTH - 1.0
_INVERSE_LOG_GROWTH = 1.0 / math.log(GROWTH)
# Values below a microsecond (a virtual clock's zero) share one bucket, estimated by the minimum.
_FLOOR = 1e-6
UNDER_FLOOR = math.floor(math.log(_FLOOR) * _INVERSE_LOG_GROWTH) - 1


def fine_index(seconds: float) -> int:
    """The fine bucket of a value: floor(log_GROWTH(seconds)); UNDER_FLOOR below 1 µs."""
    if seconds < _FLOOR:
        return UNDER_FLOOR
    return math.floor(math.log(seconds) * _INVERSE_LOG_GROWTH)


def fine_value(index: int) -> float:
    """The geometric middle of fine bucket `index`: the estimate of any value in it."""
    return float(GROWTH ** (index + 0.5))


def _coarse_counts() -> list[int]:
    return [0] * (len(LATENCY_BOUNDS) + 1)


@attrs.define
class LatencyHistogram:
    """Round-trip times of one action, mergeable exactly by adding counts.

    `bounds` / `counts` / `total` are the coarse Prometheus buckets (counts per bucket, the last
    one +Inf, not cumulative) and the sum of the values; `fine` the log-spaced buckets of the
    percentiles (bucket index -> count); `minimum` / `maximum` exact.
    """

    bounds: tuple[float, ...] = LATENCY_BOUNDS
    counts: list[int] = attrs.field(factory=_coarse_counts)
    total: float = 0.0
    minimum: float = math.inf
    maximum: float = -math.inf
    fine: dict[int, int] = attrs.field(factory=dict)

    def observe(self, seconds: float) -> None:
        """Count one round trip of `seconds`."""
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds
        if seconds < self.minimum:
            self.minimum = seconds
        if seconds > self.maximum:
            self.maximum = seconds
        index = fine_index(seconds)
        fine = self.fine
        fine[index] = fine.get(index, 0) + 1

    @property
    def count(self) -> int:
        """How many round trips were observed."""
        return sum(self.counts)

    @property
    def mean(self) -> float | None:
        """The exact mean, None when empty."""
        count = self.count
        return self.total / count if count else None

    def merge(self, other: LatencyHistogram) -> None:
        """Add `other`'s observations to this histogram (exactly, bucket by bucket)."""
        if other.bounds != self.bounds:
            raise ValueError("cannot merge latency histograms with different bounds")
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.total += other.total
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)
        fine = self.fine
        for index, count in other.fine.items():
            fine[index] = fine.get(index, 0) + count

    def quantile(self, q: float) -> float | None:
        """The `q`-quantile (0 < q <= 1) by nearest rank, None when empty.

        The estimate is the middle of the fine bucket holding the ceil(q * n)-th smallest value,
        kept within the exact minimum and maximum: within `RESOLUTION / 2` of the true value
        (within 1 µs below 1 µs).
        """
        count = sum(self.fine.values())
        if not count:
            return None
        rank = max(1, math.ceil(q * count - 1e-9))
        seen = 0
        for index in sorted(self.fine):
            seen += self.fine[index]
            if seen >= rank:
                if index == UNDER_FLOOR:
                    return self.minimum  # within 1 µs
                return min(max(fine_value(index), self.minimum), self.maximum)
        return self.maximum  # unreachable: the counts add up to `count`

    def copy(self) -> LatencyHistogram:
        """An independent copy."""
        return LatencyHistogram(
            self.bounds, list(self.counts), self.total, self.minimum, self.maximum, dict(self.fine)
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON form that `from_json` reads back (for reports, storage and worker processes)."""
        return {
            "bounds": list(self.bounds),
            "counts": list(self.counts),
            "sum": self.total,
            "min": self.minimum if self.count else None,
            "max": self.maximum if self.count else None,
            "buckets_per_decade": FINE_BUCKETS_PER_DECADE,
            "fine": {str(index): count for index, count in sorted(self.fine.items())},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LatencyHistogram:
        """The histogram of a `to_json` dict; raises ValueError if it is not one."""
        if data.get("buckets_per_decade") != FINE_BUCKETS_PER_DECADE:
            raise ValueError("not a latency histogram of this resolution")
        minimum, maximum = data.get("min"), data.get("max")
        return cls(
            tuple(float(b) for b in data["bounds"]),
            [int(c) for c in data["counts"]],
            float(data["sum"]),
            math.inf if minimum is None else float(minimum),
            -math.inf if maximum is None else float(maximum),
            {int(index): int(count) for index, count in data["fine"].items()},
        )


@attrs.define
class StationStatistics:
    """Counters of one station.

    `errors_by_code` counts the CALLERRORs (and invalid answers) the CSMS gave to the station's
    CALLs by (action, code); `answered_errors_by_code` the CALLERRORs the station answered the
    CSMS's CALLs with.
    """

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
    errors_by_code: Counter[tuple[str, str]] = attrs.field(factory=Counter)
    timeouts_by_action: Counter[str] = attrs.field(factory=Counter)
    answered_errors_by_code: Counter[tuple[str, str]] = attrs.field(factory=Counter)

    def observe(self, action: str, seconds: float) -> None:
        """Record the CSMS's answer time to one CALL."""
        histogram = self.latency.get(action)
        if histogram is None:
            histogram = self.latency[action] = LatencyHistogram()
        histogram.observe(seconds)
