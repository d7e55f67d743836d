"""`evsim-trio run | validate | csms`.

Exit codes: 0 ok, 1 runtime failure, 2 bad config or usage, 3 (`run`) a `[report] fail_if`
threshold was breached.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import trio

from evsim_trio import __version__
from evsim_trio._gc import freeze_when_settled, tune_for_fleet
from evsim_trio._logsetup import setup_logging
from evsim_trio._resources import data_dir
from evsim_trio.config import ConfigError, Site, load_site
from evsim_trio.simulator import (
    BuildError,
    Fleet,
    PerformanceStorage,
    Shard,
    StorageError,
    WorkerFleet,
    check_thresholds,
    format_table,
    make_fleet,
    open_storage,
    parse_shard,
    plan_fleet,
    run_statistics,
    thresholds_json,
)

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_THRESHOLDS = 3

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
STATUS_PERIOD = 1.0
SHARD_HELP = "only the K-th of N disjoint slices of the fleet (K = 1..N)"


def _shard(text: str) -> Shard:
    try:
        return parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evsim-trio", description="Simulate OCPP-J charging stations on Trio."
    )
    parser.add_argument("--version", action="version", version=f"evsim-trio {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the fleet of a site config (and its embedded CSMS)")
    run.add_argument("config", nargs="?", default="configs/site.toml", help="site config (TOML)")
    run.add_argument("--log-level", choices=LOG_LEVELS, help="override [log] level")
    run.add_argument("--seed", type=int, help="override [simulator] seed")
    run.add_argument("--shard", type=_shard, metavar="K/N", help=SHARD_HELP)
    run.add_argument(
        "--report", type=Path, metavar="FILE", help="write the end-of-run statistics as JSON"
    )
    validate = sub.add_parser("validate", help="check a site config and its templates")
    validate.add_argument("config", help="site config (TOML)")
    validate.add_argument("--shard", type=_shard, metavar="K/N", help=SHARD_HELP)
    csms = sub.add_parser("csms", help="run the embedded CSMS alone")
    csms.add_argument("--host", default="127.0.0.1")
    csms.add_argument("--port", type=int, default=9000)
    csms.add_argument("--heartbeat-interval", type=int, default=60)
    return parser


def resolve_config(name: str) -> Path:
    """The config path as given; if it does not exist, the shipped config of that name.

    So `evsim-trio run configs/site.toml` works from any directory after a plain `pip install`.
    """
    path = Path(name)
    if path.exists() or path.is_absolute():
        return path
    shipped = data_dir("configs") / path.name
    if path.parent.name in ("", "configs") and shipped.exists():
        return shipped
    return path


def _error(message: str) -> None:
    print(f"evsim-trio: {message}", file=sys.stderr)


def _load(name: str) -> Site | None:
    try:
        return load_site(resolve_config(name))
    except ConfigError as exc:
        _error(str(exc))
        return None


def _cmd_validate(args: argparse.Namespace) -> int:
    site = _load(args.config)
    if site is None:
        return EXIT_USAGE
    csms = site.config.csms
    try:
        planned = plan_fleet(
            site,
            seed=site.config.simulator.seed or 0,
            embedded_csms_url=f"ws://{csms.host}:{csms.port}" if csms.enabled else None,
            shard=args.shard,
        )
    except BuildError as exc:
        _error(str(exc))
        return EXIT_USAGE
    shard = f" (shard {args.shard[0]}/{args.shard[1]})" if args.shard else ""
    print(
        f"{site.path}: ok: {len(planned)} stations{shard} from {len(site.templates)} templates"
        f"{', embedded CSMS enabled' if csms.enabled else ''}"
    )
    return EXIT_OK


class _StatusLine:
    """The live one-line status: rewritten in place on a terminal, a line per change otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self._last = ""

    def show(self, line: str) -> None:
        if line == self._last:
            return
        self._last = line
        if self.tty:
            sys.stdout.write(f"\r\x1b[K{line}")
        else:
            sys.stdout.write(f"{line}\n")
        sys.stdout.flush()

    def end(self) -> None:
        if self.tty and self._last:
            sys.stdout.write("\n")
            sys.stdout.flush()


async def _report(simulator: Fleet, status: _StatusLine) -> None:
    # Counting walks every station: once per period, whatever the fleet does meanwhile.
    while True:
        status.show(simulator.counts().line())
        await trio.sleep(STATUS_PERIOD)


async def _run(
    site: Site,
    args: argparse.Namespace,
    storage: PerformanceStorage | None,
) -> int:
    started = time.monotonic()
    simulator = make_fleet(
        site,
        seed=args.seed,
        shard=args.shard,
        log_setup=(site.config.log, args.log_level),
    )
    status = _StatusLine()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(simulator.run)
            tune_for_fleet()
            nursery.start_soon(freeze_when_settled, simulator.wait_settled)
            if simulator.csms_url:
                print(f"embedded CSMS: {simulator.csms_url}", flush=True)
            if site.config.ui_server.enabled:
                from evsim_trio.ui import serve_ui  # quart: imported only when serving

                urls = await nursery.start(serve_ui, simulator, site.config.ui_server)
                print(f"UI: {urls[0]}/", flush=True)
            print(
                f"{simulator.counts().total} stations{_in_workers(simulator)}, "
                f"seed {simulator.seed}; Ctrl-C to stop",
                flush=True,
            )
            nursery.start_soon(_report, simulator, status)
            nursery.start_soon(
                run_statistics, simulator, site.config.simulator.statistics_interval, storage
            )
            async for _ in signals:
                break
            await simulator.shutdown()
            nursery.cancel_scope.cancel()
    status.end()
    counts = simulator.counts()
    summary = (
        f"stopped after {time.monotonic() - started:.1f} s: {counts.total} stations, "
        f"{counts.calls_sent} calls sent ({counts.call_errors} errors, "
        f"{counts.call_timeouts} timeouts), {counts.reconnects} reconnects, "
        f"{counts.transactions_started} sessions started, {counts.transactions_stopped} stopped, "
        f"{counts.energy_wh / 1000:.2f} kWh delivered"
    )
    if simulator.csms is not None:
        received = sum(simulator.csms.received.values())
        summary += f"; embedded CSMS received {received} calls"
    print(summary, flush=True)
    return await _final_statistics(site, args, simulator, storage, time.monotonic() - started)


async def _final_statistics(
    site: Site,
    args: argparse.Namespace,
    simulator: Fleet,
    storage: PerformanceStorage | None,
    duration: float,
) -> int:
    """Print the statistics table, record and report them; EXIT_THRESHOLDS on a breach."""
    statistics = await simulator.statistics()
    print(format_table(statistics.fleet), flush=True)
    code = EXIT_OK
    if storage is not None:
        try:
            await storage.write(statistics)
        except StorageError as exc:
            _error(str(exc))
            code = EXIT_RUNTIME
    fail_if = site.config.report.fail_if
    breaches = check_thresholds(statistics.fleet, fail_if)
    if args.report is not None:
        report = {
            "timestamp": statistics.timestamp,
            "duration_s": round(duration, 3),
            "seed": simulator.seed,
            "shard": f"{args.shard[0]}/{args.shard[1]}" if args.shard else None,
            "thresholds": thresholds_json(fail_if),
            "breaches": breaches,
            "passed": not breaches,
            **statistics.to_json(),
        }
        text = json.dumps(report, indent=1)
        try:
            await trio.Path(args.report).write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            _error(f"report: {exc}")
            code = EXIT_RUNTIME
    if breaches:
        for breach in breaches:
            _error(f"threshold breached: {breach}")
        return EXIT_THRESHOLDS
    return code


def _in_workers(simulator: Fleet) -> str:
    if isinstance(simulator, WorkerFleet):
        return f" in {simulator.processes} worker processes"
    return ""


def _cmd_run(args: argparse.Namespace) -> int:
    site = _load(args.config)
    if site is None:
        return EXIT_USAGE
    if site.config.ui_server.enabled:
        from evsim_trio.ui import UiConfigError, check_ui_config

        try:
            check_ui_config(site.config.ui_server)
        except UiConfigError as exc:
            _error(f"{site.path}: {exc}")
            return EXIT_USAGE
    setup_logging(site.config.log, args.log_level)
    try:
        storage = open_storage(
            site.config.performance_storage, Path(site.config.simulator.state_dir), args.shard
        )
    except StorageError as exc:
        _error(f"{site.path}: {exc}")
        return EXIT_USAGE
    code = EXIT_RUNTIME
    try:
        code = trio.run(_run, site, args, storage)
    except* BuildError as group:
        _error(_messages(group))
        code = EXIT_USAGE
    except* OSError as group:
        # Typically the embedded CSMS port is taken.
        _error(_messages(group))
        code = EXIT_RUNTIME
    return code


def _messages(group: BaseExceptionGroup[BaseException]) -> str:
    """The messages of the exceptions in a (nested) exception group, on one line."""
    leaves: list[str] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            leaves.append(_messages(exc))
        else:
            leaves.append(str(exc) or repr(exc))
    return "; ".join(leaves)


def _cmd_csms(args: argparse.Namespace) -> int:
    from evsim_trio.csms import run_csms

    return run_csms(args.host, args.port, args.heartbeat_interval)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `evsim-trio` command; returns the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command == "run":
        return _cmd_run(args)
    if args.command == "validate":
        return _cmd_validate(args)
    return _cmd_csms(args)
