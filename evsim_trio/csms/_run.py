"""`run_csms`: the embedded CSMS alone, in the foreground (`evsim-trio csms`)."""

from __future__ import annotations

import functools
import signal
import sys

import trio

from evsim_trio._gc import freeze_when_settled, tune_for_fleet
from evsim_trio.station._stats import LatencyHistogram

from ._server import EmbeddedCsms

__all__ = ["run_csms"]

# Seconds after start when the connections of a fleet are likely all made.
SETTLE = 60.0


def _say(line: str, *, error: bool = False) -> None:
    # This is the blocking entry point of a CLI command: its user reads stdout.
    print(line, file=sys.stderr if error else sys.stdout, flush=True)


def _seconds(histogram: LatencyHistogram, q: float) -> str:
    value = histogram.quantile(q)
    return "-" if value is None else f"{value:.3f}"


def _summary(csms: EmbeddedCsms) -> str:
    lag, gap = csms.meter_value_lag, csms.meter_value_gap
    return (
        f"evsim-trio CSMS stopped: {len(csms.stations)} stations seen, "
        f"{len(csms.connected())} connected, {sum(csms.received.values())} calls received, "
        f"{len(csms.violations)} violations; transaction MeterValues {lag.count}: "
        f"sample age on arrival p50 {_seconds(lag, 0.5)} s, p99 {_seconds(lag, 0.99)} s; "
        f"gap between two p50 {_seconds(gap, 0.5)} s, p99 {_seconds(gap, 0.99)} s"
    )


async def _main(csms: EmbeddedCsms, host: str, port: int) -> int:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            try:
                await nursery.start(csms.serve, host, port)
            except OSError as exc:
                _say(f"evsim-trio csms: {exc}", error=True)
                return 1
            url = csms.url
            # A load CSMS holds thousands of connections: fewer collections (see _gc), and
            # the long-lived objects out of the collector's sight once the fleet is likely in.
            tune_for_fleet()
            nursery.start_soon(freeze_when_settled, functools.partial(trio.sleep, SETTLE))
            _say(f"evsim-trio CSMS listening on {url} (stations connect to {url}/<station id>)")
            async for _ in signals:
                break
            # Collect the counts before the connections close.
            summary = _summary(csms)
            nursery.cancel_scope.cancel()
    _say(summary)
    return 0


def run_csms(host: str, port: int, heartbeat_interval: int) -> int:
    """Run the embedded CSMS on `host`:`port` until Ctrl-C; return the exit code.

    Prints the URL stations connect to, and a one-line summary on Ctrl-C (exit 0). Exits 1
    with a message on stderr if the port cannot be bound.
    """
    csms = EmbeddedCsms(heartbeat_interval=heartbeat_interval)
    try:
        return trio.run(_main, csms, host, port)
    except KeyboardInterrupt:
        # Ctrl-C before the signal receiver was installed.
        _say(_summary(csms))
        return 0
