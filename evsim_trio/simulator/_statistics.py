"""Fleet statistics: per station and fleet-wide, per OCPP action and direction, with thresholds.

Read from the stations' counters (`StationStatistics`) when asked: nothing here runs per
message. Latency histograms merge by adding bucket counts, so the fleet's percentiles are those
of every round trip pooled (within the histograms' 4.9 % resolution), never averages of averages.

Directions: `sent` are the station's CALLs (count, CALLERRORs by code, timeouts, response time of
the CSMS); `received` the CSMS's CALLs to stations (count, CALLERRORs the stations answered).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import attrs
import trio

from evsim_trio.config import FailIf
from evsim_trio.simulator._storage import PerformanceStorage, StorageError
from evsim_trio.station import LatencyHistogram, StationStatistics, ocpp_timestamp

__all__ = [
    "ActionStatistics",
    "FleetStatistics",
    "StationFigures",
    "TrafficStatistics",
    "check_thresholds",
    "collect_statistics",
    "format_table",
    "log_statistics",
    "run_statistics",
    "thresholds_json",
]

log = logging.getLogger(__name__)

Json = dict[str, Any]
QUANTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 6)


@attrs.define
class ActionStatistics:
    """The figures of one action in one direction (or of all actions merged)."""

    count: int = 0
    errors: int = 0
    timeouts: int = 0
    errors_by_code: Counter[str] = attrs.field(factory=Counter)
    latency: LatencyHistogram = attrs.field(factory=LatencyHistogram)

    def merge(self, other: ActionStatistics) -> None:
        """Add `other`'s figures to these (exactly: counts and histogram buckets add up)."""
        self.count += other.count
        self.errors += other.errors
        self.timeouts += other.timeouts
        self.errors_by_code.update(other.errors_by_code)
        self.latency.merge(other.latency)

    @property
    def error_rate(self) -> float:
        """CALLERRORs (and invalid answers) per CALL; 0 without CALLs."""
        return self.errors / self.count if self.count else 0.0

    def quantile_ms(self, q: float) -> float | None:
        """The response time `q`-quantile in milliseconds, None without answers."""
        return _ms(self.latency.quantile(q))

    def summary(self, *, histogram: bool = False) -> Json:
        """count, errors, timeouts, error_rate, errors_by_code and min/mean/p50/p95/p99/max ms.

        Times are None when no answer was timed. With `histogram`, the histogram too, so that
        `from_json` can merge the figures of several runs (shards) exactly.
        """
        latency = self.latency
        timed = latency.count
        result: Json = {
            "count": self.count,
            "errors": self.errors,
            "timeouts": self.timeouts,
            "error_rate": self.error_rate,
            "errors_by_code": dict(sorted(self.errors_by_code.items())),
            "min_ms": _ms(latency.minimum) if timed else None,
            "mean_ms": _ms(latency.mean),
            **{f"{name}_ms": self.quantile_ms(q) for name, q in QUANTILES},
            "max_ms": _ms(latency.maximum) if timed else None,
        }
        if histogram:
            result["histogram"] = latency.to_json()
        return result

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ActionStatistics:
        """The figures of a `summary(histogram=True)` dict; raises ValueError/KeyError if not."""
        raw = data.get("histogram")
        return cls(
            count=int(data["count"]),
            errors=int(data["errors"]),
            timeouts=int(data["timeouts"]),
            errors_by_code=Counter({str(k): int(v) for k, v in data["errors_by_code"].items()}),
            latency=LatencyHistogram.from_json(raw) if raw is not None else LatencyHistogram(),
        )


def _action(table: dict[str, ActionStatistics], action: str) -> ActionStatistics:
    figures = table.get(action)
    if figures is None:
        figures = table[action] = ActionStatistics()
    return figures


@attrs.define
class TrafficStatistics:
    """Per-action figures both ways: of one station, or merged over several."""

    sent: dict[str, ActionStatistics] = attrs.field(factory=dict)
    received: dict[str, ActionStatistics] = attrs.field(factory=dict)

    @classmethod
    def of_station(cls, stats: StationStatistics) -> TrafficStatistics:
        """A snapshot of a station's figures (histograms copied: the station goes on)."""
        sent: dict[str, ActionStatistics] = {}
        for action, count in stats.sent_by_action.items():
            histogram = stats.latency.get(action)
            sent[action] = ActionStatistics(
                count=count,
                timeouts=stats.timeouts_by_action.get(action, 0),
                latency=histogram.copy() if histogram is not None else LatencyHistogram(),
            )
        for (action, code), count in stats.errors_by_code.items():
            figures = _action(sent, action)
            figures.errors += count
            figures.errors_by_code[code] += count
        received = {
            action: ActionStatistics(count=count)
            for action, count in stats.received_by_action.items()
        }
        for (action, code), count in stats.answered_errors_by_code.items():
            figures = _action(received, action)
            figures.errors += count
            figures.errors_by_code[code] += count
        return cls(sent, received)

    def merge(self, other: TrafficStatistics) -> None:
        """Add `other`'s figures, action by action."""
        for mine, theirs in ((self.sent, other.sent), (self.received, other.received)):
            for action, figures in theirs.items():
                _action(mine, action).merge(figures)

    def total_sent(self) -> ActionStatistics:
        """Every sent action merged (a new object)."""
        total = ActionStatistics()
        for figures in self.sent.values():
            total.merge(figures)
        return total

    def summary(self, *, histogram: bool = False) -> Json:
        """`{"total": ..., "sent": {action: ...}, "received": {action: ...}}` (see
        `ActionStatistics.summary`); `total` is every sent action merged."""
        return {
            "total": self.total_sent().summary(histogram=histogram),
            "sent": {a: f.summary(histogram=histogram) for a, f in sorted(self.sent.items())},
            "received": {
                a: f.summary(histogram=histogram) for a, f in sorted(self.received.items())
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrafficStatistics:
        """The figures of a `summary(histogram=True)` dict (a report's `fleet`)."""
        return cls(
            {a: ActionStatistics.from_json(f) for a, f in data["sent"].items()},
            {a: ActionStatistics.from_json(f) for a, f in data["received"].items()},
        )


class StationLike(Protocol):
    """What statistics read of a station."""

    station_id: str
    hash_id: str
    stats: StationStatistics


@attrs.frozen
class StationFigures:
    """One station's figures: its traffic, or (from a worker process) their summary only."""

    station_id: str
    hash_id: str
    traffic: TrafficStatistics | None = None
    summarized: Json | None = None

    def summary(self) -> Json:
        """`TrafficStatistics.summary()` of the station (without histograms)."""
        if self.summarized is not None:
            return self.summarized
        assert self.traffic is not None
        return self.traffic.summary()


@attrs.frozen
class FleetStatistics:
    """A snapshot of the figures of every station and of the fleet at `timestamp` (UTC,
    ISO 8601), cumulative since the stations were built."""

    timestamp: str
    fleet: TrafficStatistics
    stations: tuple[StationFigures, ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FleetStatistics:
        """The statistics of a `to_json` dict (stations as summaries)."""
        stations = tuple(
            StationFigures(
                str(entry["id"]),
                str(entry["hash_id"]),
                summarized={k: v for k, v in entry.items() if k not in ("id", "hash_id")},
            )
            for entry in data.get("stations", ())
        )
        return cls(str(data["timestamp"]), TrafficStatistics.from_json(data["fleet"]), stations)

    def to_json(self) -> Json:
        """`{timestamp, station_count, fleet, stations}`: the fleet's figures with histograms
        (mergeable), each station's without."""
        return {
            "timestamp": self.timestamp,
            "station_count": len(self.stations),
            "fleet": self.fleet.summary(histogram=True),
            "stations": [
                {"id": s.station_id, "hash_id": s.hash_id, **s.summary()} for s in self.stations
            ],
        }


def collect_statistics(
    stations: Iterable[StationLike], *, stations_too: bool = True
) -> FleetStatistics:
    """Every station's figures and their merge, now (the merge only unless `stations_too`)."""
    fleet = TrafficStatistics()
    figures = []
    for station in stations:
        traffic = TrafficStatistics.of_station(station.stats)
        fleet.merge(traffic)
        if stations_too:
            figures.append(StationFigures(station.station_id, station.hash_id, traffic))
    return FleetStatistics(ocpp_timestamp(), fleet, tuple(figures))


# -- thresholds ------------------------------------------------------------------------------


def _num(value: float) -> str:
    return f"{value:.4g}"


def check_thresholds(fleet: TrafficStatistics, fail_if: FailIf) -> list[str]:
    """The breaches of `fail_if`, one line each; empty when every threshold holds.

    `p95_ms` / `p99_ms` hold for every sent action; `error_rate` (CALLERRORs and invalid
    answers per CALL sent) and `timeouts` for the fleet's sent CALLs as a whole.
    """
    breaches = []
    for action, figures in sorted(fleet.sent.items()):
        for name, q in QUANTILES[1:]:
            limit: float | None = getattr(fail_if, f"{name}_ms")
            value = figures.quantile_ms(q)
            if limit is not None and value is not None and value > limit:
                breaches.append(
                    f"{action} {name} {_num(value)} ms > {_num(limit)} ms "
                    f"({figures.latency.count} answers)"
                )
    total = fleet.total_sent()
    rate = total.error_rate
    if fail_if.error_rate is not None and rate > fail_if.error_rate:
        breaches.append(
            f"error rate {_num(rate)} > {_num(fail_if.error_rate)} "
            f"({total.errors} CALLERRORs of {total.count} CALLs)"
        )
    if fail_if.timeouts is not None and total.timeouts > fail_if.timeouts:
        breaches.append(f"timeouts {total.timeouts} > {fail_if.timeouts}")
    return breaches


def thresholds_json(fail_if: FailIf) -> Json:
    """The thresholds that are set."""
    return {k: v for k, v in attrs.asdict(fail_if).items() if v is not None}


# -- output ------------------------------------------------------------------------------------

_COLUMNS = ("count", "errors", "timeouts", "min", "mean", "p50", "p95", "p99", "max")


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _rows(fleet: TrafficStatistics) -> Iterable[tuple[str, str, ActionStatistics]]:
    for action, figures in sorted(fleet.sent.items()):
        yield "sent", action, figures
    if fleet.sent:
        yield "sent", "(all)", fleet.total_sent()
    for action, figures in sorted(fleet.received.items()):
        yield "received", action, figures


def format_table(fleet: TrafficStatistics) -> str:
    """The fleet's figures as a text table (times in ms), CALLERRORs by code below it."""
    header = ("direction", "action", *_COLUMNS[:3], *(f"{c} ms" for c in _COLUMNS[3:]))
    lines: list[tuple[str, ...]] = [header]
    codes = []
    for direction, action, figures in _rows(fleet):
        s = figures.summary()
        timeouts = s["timeouts"] if direction == "sent" else None
        lines.append(
            (
                direction,
                action,
                str(s["count"]),
                str(s["errors"]),
                _cell(timeouts),
                *(_cell(s[f"{c}_ms"]) for c in _COLUMNS[3:]),
            )
        )
        if action != "(all)":
            codes += [f"{direction} {action} {c}: {n}" for c, n in s["errors_by_code"].items()]
    if len(lines) == 1:
        return "no OCPP messages"
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    text = [
        "  ".join(
            cell.ljust(width) if i < 2 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in lines
    ]
    if codes:
        text.append("CALLERRORs by code: " + "; ".join(codes))
    return "\n".join(text)


def log_statistics(fleet: TrafficStatistics) -> None:
    """One info line per action and direction (cumulative figures)."""
    for direction, action, figures in _rows(fleet):
        s = figures.summary()
        times = " ".join(f"{c} {_cell(s[f'{c}_ms'])}" for c in _COLUMNS[3:])
        codes = ", ".join(f"{c} {n}" for c, n in s["errors_by_code"].items())
        log.info(
            "statistics: %s %s: count %d, errors %d%s, timeouts %d, ms %s",
            direction,
            action,
            s["count"],
            s["errors"],
            f" ({codes})" if codes else "",
            s["timeouts"],
            times,
        )


class _StatisticsSource(Protocol):
    async def statistics(self, *, stations: bool = True) -> FleetStatistics: ...


async def run_statistics(
    simulator: _StatisticsSource, interval: float, storage: PerformanceStorage | None = None
) -> None:
    """Every `interval` seconds: log the fleet's figures and write them to `storage`.

    A storage that fails to write is logged, not fatal: the run goes on.
    """
    while True:
        await trio.sleep(interval)
        statistics = await simulator.statistics(stations=storage is not None)
        log_statistics(statistics.fleet)
        if storage is not None:
            try:
                await storage.write(statistics)
            except StorageError as exc:
                log.error("write failed: %s", exc)
