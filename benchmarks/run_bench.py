"""evsim-trio benchmark: issue 6's load profile against a load CSMS in its own process.

For each fleet size: start the load CSMS (`python -m evsim_trio csms --port 0`), write a site
config and template for the profile into a temporary directory, start the simulator
(`python -m evsim_trio run site.toml`), and read its status lines ("stations N: a connecting,
b booted ... | calls C ..."), each timestamped on arrival with the CPU seconds and RSS of both
process trees read at that moment. Then:

- boot time: process start -> the first status line with every station booted;
- after `--settle` s, a steady window of `--window` s between two status lines: round trips
  (the difference of "calls"), simulator and CSMS CPU seconds, CPU-us per round trip, RSS;
- optionally a py-spy profile of the simulator after the window (`--profile SECONDS`);
- then SIGINT to the simulator, SIGTERM to the CSMS, SIGKILL if either overstays.

KiB per station is the RSS at N minus the RSS of a 1-station run (`--baseline`), over N - 1.
Loopback only, bounded in time, stops by itself. Prints a table; `--out FILE` writes JSON.

    python benchmarks/run_bench.py --stations 100,1000,2000 --window 60 --ramp-timeout 120
    nox -s bench -- --stations 100,1000,2000 --window 60 --out bench.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

# The helpers are sibling modules of this script (benchmarks/ is not a package).
import _procstat
import _pyspy
from _children import Child, StatusSample, parse_status
from _profile import PROFILE, write_profile

MIB = 1024 * 1024
CSMS_READY_TIMEOUT = 30.0
BUILT_RE = re.compile(r"^(\d+) stations(?: in \d+ worker processes)?, seed")
LISTENING_RE = re.compile(r"listening on ws://127\.0\.0\.1:(\d+)")
SIM_STOP_TIMEOUT = 30.0
CSMS_STOP_TIMEOUT = 15.0


def say(text: str = "") -> None:
    """A line of the report on stdout."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def note(text: str) -> None:
    """A progress line on stderr."""
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {text}\n")
    sys.stderr.flush()


def _system_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    try:
        with open("/proc/stat") as handle:
            fields = [float(value) for value in handle.readline().split()[1:]]
    except OSError:
        return 0.0, 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    total = sum(fields[:8])
    return total - idle, total


def source_info() -> dict[str, Any]:
    """The commit of the checkout this script lives in, and how many files differ from it."""
    repo = Path(__file__).resolve().parent.parent
    info: dict[str, Any] = {}
    try:
        info["commit"] = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        info["changed_files"] = len(status.splitlines())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def machine_info() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "process_stats": _procstat.BACKEND,
        "clock_ticks_per_s": os.sysconf("SC_CLK_TCK"),
    }


_MV_RE = re.compile(
    r"MeterValues (\d+): sample age on arrival p50 ([\d.-]+) s, p99 ([\d.-]+) s; "
    r"gap between two p50 ([\d.-]+) s, p99 ([\d.-]+) s"
)


def meter_value_figures(csms_summary: str) -> dict[str, Any] | None:
    """The load CSMS's view of transaction MeterValues (whole run): count, sample age on
    arrival p50/p99 (s) and gap between two of a transaction p50/p99 (s)."""
    match = _MV_RE.search(csms_summary)
    if match is None:
        return None

    def number(text: str) -> float | None:
        return None if text == "-" else float(text)

    return {
        "count": int(match[1]),
        "age_p50_s": number(match[2]),
        "age_p99_s": number(match[3]),
        "gap_p50_s": number(match[4]),
        "gap_p99_s": number(match[5]),
    }


def report_latency(path: Path | None) -> dict[str, Any] | None:
    """CSMS response time of every CALL the stations sent (whole run), from the simulator's
    `--report`: count, p50 / p95 / p99 / max in ms."""
    if path is None or not path.exists():
        return None
    try:
        total = json.loads(path.read_text())["fleet"]["total"]
    except (OSError, ValueError, KeyError):
        return None
    return {k: total.get(k) for k in ("count", "p50_ms", "p95_ms", "p99_ms", "max_ms")}


class Run:
    """One fleet size: the two processes, the status samples, and the figures."""

    def __init__(self, stations: int, args: argparse.Namespace) -> None:
        self.stations = stations
        self.args = args
        self.samples: list[StatusSample] = []
        self._lock = threading.Lock()
        self.csms: Child | None = None
        self.sim: Child | None = None
        self.result: dict[str, Any] = {"stations": stations}
        self.report_path: Path | None = None

    # -- sampling ---------------------------------------------------------------------------

    def _on_sim_line(self, t: float, line: str) -> None:
        counts = parse_status(line)
        if counts is None:
            return
        sim = _procstat.sample(self.sim.pid) if self.sim is not None else None
        csms = _procstat.sample(self.csms.pid) if self.csms is not None else None
        sample = StatusSample(
            t,
            counts,
            sim.cpu_s if sim else None,
            sim.rss_bytes if sim else None,
            csms.cpu_s if csms else None,
            sim.main_thread_cpu_s if sim else None,
        )
        with self._lock:
            self.samples.append(sample)

    def _last_sample(self) -> StatusSample | None:
        with self._lock:
            return self.samples[-1] if self.samples else None

    def _wait_sample(
        self, predicate: Callable[[StatusSample], bool], deadline: float, *, after: float = 0.0
    ) -> StatusSample | None:
        """The first sample arriving after `after` for which `predicate` holds, by `deadline`."""
        seen = 0
        while True:
            with self._lock:
                fresh = self.samples[seen:]
                seen = len(self.samples)
            for sample in fresh:
                if sample.t > after and predicate(sample):
                    return sample
            if time.monotonic() >= deadline:
                return None
            assert self.sim is not None
            if self.sim.proc.poll() is not None:
                return None
            time.sleep(0.05)

    # -- phases -----------------------------------------------------------------------------

    def _start_csms(self, workdir: Path) -> str:
        argv = [
            self.args.python,
            "-m",
            "evsim_trio",
            "csms",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--heartbeat-interval",
            str(PROFILE["heartbeat_interval_s"]),
        ]
        self.csms = Child("csms", argv, cwd=workdir, stderr_path=workdir / "csms.stderr")
        self.result["csms_command"] = " ".join(argv[1:])
        _, match = self.csms.wait_line(LISTENING_RE, CSMS_READY_TIMEOUT)
        return f"ws://127.0.0.1:{match.group(1)}/ocpp"

    def _start_sim(self, workdir: Path, site: Path) -> None:
        here = Path(__file__).resolve().parent
        if self.args.variant == "no-persistence":
            entry = [str(here / "_sim_no_persistence.py")]
        elif self.args.variant == "tracemalloc":
            entry = [str(here / "_sim_tracemalloc.py")]
            out = Path(self.args.profile_dir or workdir) / f"tracemalloc-{self.stations}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            os.environ["EVSIM_BENCH_TRACEMALLOC_OUT"] = str(out)
            os.environ["EVSIM_BENCH_TRACEMALLOC_AFTER"] = str(self.args.tracemalloc_after)
            self.result["tracemalloc"] = str(out)
        else:
            entry = ["-m", "evsim_trio"]
        self.report_path = workdir / "report.json"
        argv = [self.args.python, *entry, "run", str(site), "--report", str(self.report_path)]
        self.result["sim_command"] = " ".join(argv[1:])
        self.sim = Child(
            "simulator",
            argv,
            cwd=workdir,
            stderr_path=workdir / "sim.stderr",
            on_line=self._on_sim_line,
        )

    def _boot(self) -> float | None:
        assert self.sim is not None
        n = self.stations
        start = self.sim.started_at
        deadline = start + self.args.ramp_timeout
        try:
            built_at, _ = self.sim.wait_line(BUILT_RE, self.args.ramp_timeout)
            self.result["built_s"] = round(built_at - start, 3)
        except (TimeoutError, RuntimeError) as exc:
            self.result["error"] = f"fleet not built: {exc}"
            return None
        booted = self._wait_sample(lambda s: s.counts["booted"] >= n, deadline)
        last = self._last_sample()
        if booted is None:
            self.result["boot_s"] = None
            self.result["booted"] = last.counts["booted"] if last else 0
            note(f"{n} stations: only {self.result['booted']} booted in {self.args.ramp_timeout} s")
            return time.monotonic()
        boot_s = booted.t - start
        self.result["boot_s"] = round(boot_s, 3)
        self.result["booted"] = booted.counts["booted"]
        self.result["boot_stations_per_s"] = round(n / boot_s, 1) if boot_s > 0 else None
        return booted.t

    def _window(self, booted_at: float, window: float, settle: float) -> None:
        assert self.sim is not None
        time.sleep(max(0.0, booted_at + settle - time.monotonic()))
        busy0, total0 = _system_cpu()
        first = self._wait_sample(lambda s: True, time.monotonic() + 15, after=time.monotonic())
        if first is None:
            self.result["error"] = "no status line at the start of the window"
            return
        # The window ends at the first status line from `window` s after its start (lines come
        # every ~1.2 s while calls flow; a line up to 0.3 s early is taken too).
        harness_cpu0 = time.process_time()
        end_at = first.t + window - 0.3
        time.sleep(max(0.0, end_at - time.monotonic()))
        last = self._wait_sample(lambda s: True, end_at + 5, after=end_at)
        busy1, total1 = _system_cpu()
        harness_cpu = time.process_time() - harness_cpu0
        if last is None:
            last = self._last_sample()
        if last is None or last is first:
            self.result["error"] = "no status line at the end of the window"
            return
        with self._lock:
            inside = [s for s in self.samples if first.t <= s.t <= last.t]
        seconds = last.t - first.t
        trips = last.counts["calls"] - first.counts["calls"]
        fig: dict[str, Any] = {
            "seconds": round(seconds, 3),
            "round_trips": trips,
            "rt_per_s": round(trips / seconds, 1),
            "rt_per_station_s": round(trips / seconds / self.stations, 3),
            "errors": last.counts["errors"] - first.counts["errors"],
            "timeouts": last.counts["timeouts"] - first.counts["timeouts"],
            "reconnects": last.counts.get("reconnects", 0) - first.counts.get("reconnects", 0),
            "booted_at_end": last.counts["booted"],
            "failed_at_end": last.counts["failed"],
            "status_lines": len(inside),
            "harness_cpu_s": round(harness_cpu, 2),
        }
        if first.sim_cpu_s is not None and last.sim_cpu_s is not None:
            cpu = last.sim_cpu_s - first.sim_cpu_s
            fig["sim_cpu_s"] = round(cpu, 2)
            fig["sim_cpu_percent"] = round(100.0 * cpu / seconds, 1)
            fig["sim_us_per_rt"] = round(1e6 * cpu / trips, 1) if trips else None
            if first.sim_main_cpu_s is not None and last.sim_main_cpu_s is not None:
                # The trio loop's thread vs the rest (trio.to_thread workers: state writes).
                main = last.sim_main_cpu_s - first.sim_main_cpu_s
                fig["sim_main_thread_cpu_s"] = round(main, 2)
                fig["sim_other_threads_cpu_s"] = round(max(0.0, cpu - main), 2)
        if first.csms_cpu_s is not None and last.csms_cpu_s is not None:
            cpu = last.csms_cpu_s - first.csms_cpu_s
            fig["csms_cpu_s"] = round(cpu, 2)
            fig["csms_cpu_percent"] = round(100.0 * cpu / seconds, 1)
            fig["csms_us_per_rt"] = round(1e6 * cpu / trips, 1) if trips else None
        if total1 > total0:
            # The machine's busy share over the window (100 % = every core), so that load from
            # other processes sharing the machine shows.
            cores = os.cpu_count() or 1
            busy = 100.0 * cores * (busy1 - busy0) / (total1 - total0)
            fig["machine_busy_percent"] = round(busy, 1)
            ours = fig.get("sim_cpu_percent", 0.0) + fig.get("csms_cpu_percent", 0.0)
            ours += 100.0 * harness_cpu / seconds
            fig["others_cpu_percent"] = round(max(0.0, busy - ours), 1)
        self.result["window"] = fig
        rss = [s.sim_rss_bytes for s in inside if s.sim_rss_bytes is not None]
        csms_sample = _procstat.sample(self.csms.pid) if self.csms is not None else None
        self.result["memory"] = {
            "sim_rss_mib": round(last.sim_rss_bytes / MIB, 1) if last.sim_rss_bytes else None,
            "sim_rss_max_mib": round(max(rss) / MIB, 1) if rss else None,
            "csms_rss_mib": round(csms_sample.rss_bytes / MIB, 1) if csms_sample else None,
        }

    def _profile(self, workdir: Path) -> None:
        seconds = self.args.profile
        py_spy = self.args.py_spy or shutil.which("py-spy")
        if not seconds or self.sim is None:
            return
        if py_spy is None:
            self.result["profile"] = {"error": "py-spy not found (pip install py-spy)"}
            return
        out_dir = Path(self.args.profile_dir or workdir)
        out_dir.mkdir(parents=True, exist_ok=True)
        output = out_dir / f"bench-profile-{self.stations}.txt"
        note(f"{self.stations} stations: py-spy for {seconds} s -> {output}")
        self.result["profile"] = _pyspy.record(py_spy, self.sim.pid, seconds, output)

    def _stop(self) -> None:
        stops: dict[str, Any] = {}
        try:
            if self.sim is not None:
                # Warnings logged while running; stations stopped mid-call log on the way out.
                self.result["sim_stderr_lines_before_stop"] = self.sim.stderr_count()
                stops["simulator"] = self.sim.stop(signal.SIGINT, SIM_STOP_TIMEOUT)
                final = [line for line in self.sim.last_lines(40) if line.startswith("stopped")]
                self.result["sim_summary"] = final[-1] if final else None
                self.result["sim_stderr_lines"] = self.sim.stderr_count()
                errors = self.sim.stderr_exceptions()
                if errors:
                    self.result["sim_stderr_exceptions"] = errors
        finally:
            if self.csms is not None:
                stops["csms"] = self.csms.stop(signal.SIGTERM, CSMS_STOP_TIMEOUT)
                final = [line for line in self.csms.last_lines(3) if "CSMS stopped" in line]
                self.result["csms_summary"] = final[-1] if final else None
                self.result["meter_values"] = meter_value_figures(final[-1] if final else "")
                self.result["csms_stderr_lines"] = self.csms.stderr_count()
                errors = self.csms.stderr_exceptions()
                if errors:
                    self.result["csms_stderr_exceptions"] = errors
        self.result["stop"] = stops
        self.result["latency_ms"] = report_latency(self.report_path)

    def run(self, *, window: float, settle: float, profile: bool) -> dict[str, Any]:
        """Measure this fleet size; the figures (an "error" key says what went wrong)."""
        workdir = Path(tempfile.mkdtemp(prefix=f"evsim-bench-{self.stations}-"))
        self.result["loadavg_before"] = [round(x, 2) for x in os.getloadavg()]
        try:
            url = self._start_csms(workdir)
            site = write_profile(
                workdir,
                stations=self.stations,
                csms_url=url,
                seed=self.args.seed,
                workers=self.args.workers,
            )
            self._start_sim(workdir, site)
            booted_at = self._boot()
            if booted_at is not None:
                self._window(booted_at, window, settle)
                if profile:
                    self._profile(workdir)
        except (TimeoutError, RuntimeError, OSError) as exc:
            self.result["error"] = str(exc)
        finally:
            self._stop()
            if self.args.keep:
                self.result["workdir"] = str(workdir)
            else:
                shutil.rmtree(workdir, ignore_errors=True)
        return self.result


def _memory_per_station(results: list[dict[str, Any]], baseline: dict[str, Any] | None) -> None:
    """KiB per station: (RSS at N - RSS at the baseline size) / (N - baseline size)."""
    base = baseline
    if base is None:
        candidates = [r for r in results if r.get("memory", {}).get("sim_rss_mib")]
        base = min(candidates, key=lambda r: r["stations"]) if candidates else None
    if base is None or not base.get("memory", {}).get("sim_rss_mib"):
        return
    base_n = base["stations"]
    base_mib = base["memory"]["sim_rss_mib"]
    for result in results:
        memory = result.get("memory")
        if not memory or not memory.get("sim_rss_mib") or result["stations"] <= base_n:
            continue
        delta_kib = (memory["sim_rss_mib"] - base_mib) * 1024
        memory["kib_per_station"] = round(delta_kib / (result["stations"] - base_n), 1)
        memory["fixed_mib"] = base_mib
        memory["fixed_from_stations"] = base_n


def _marginal(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """CPU-us per additional round trip between consecutive fleet sizes."""
    rows = [r for r in results if r.get("window", {}).get("sim_cpu_s") is not None]
    marginal = []
    for low, high in itertools.pairwise(rows):
        a, b = low["window"], high["window"]
        d_rt = b["rt_per_s"] - a["rt_per_s"]
        d_cpu = (b["sim_cpu_s"] / b["seconds"]) - (a["sim_cpu_s"] / a["seconds"])
        if d_rt > 0:
            marginal.append(
                {
                    "from": low["stations"],
                    "to": high["stations"],
                    "sim_us_per_rt": round(1e6 * d_cpu / d_rt, 1),
                }
            )
    return marginal


def _fmt(value: Any, spec: str = "") -> str:
    if value is None:
        return "-"
    return format(value, spec) if spec else str(value)


def _thread_share(window: dict[str, Any]) -> float | None:
    """Percent of the simulator's CPU spent outside the trio loop's thread."""
    cpu = window.get("sim_cpu_s")
    other = window.get("sim_other_threads_cpu_s")
    if not cpu or other is None:
        return None
    return 100.0 * float(other) / float(cpu)


def print_table(results: list[dict[str, Any]]) -> None:
    """The results as a fixed-width table."""
    head = (
        f"{'stations':>8} {'booted':>7} {'boot s':>7} {'rt/s':>7} {'rt/s/st':>7} "
        f"{'sim CPU%':>8} {'us/rt':>6} {'RSS MiB':>8} {'KiB/st':>7} "
        f"{'thr%':>5} {'CSMS CPU%':>9} {'CSMS us/rt':>10} {'err/tmo':>7} {'other%':>6} "
        f"{'p95 ms':>7} {'p99 ms':>7} {'MV age p99':>10} {'MV gap p99':>10} {'stop s':>6}"
    )
    say(head)
    say("-" * len(head))
    for r in results:
        w = r.get("window", {})
        m = r.get("memory", {})
        lat = r.get("latency_ms") or {}
        mv = r.get("meter_values") or {}
        stop = (r.get("stop") or {}).get("simulator") or {}
        say(
            f"{r['stations']:>8} {_fmt(r.get('booted')):>7} {_fmt(r.get('boot_s'), '.2f'):>7} "
            f"{_fmt(w.get('rt_per_s'), '.0f'):>7} {_fmt(w.get('rt_per_station_s'), '.3f'):>7} "
            f"{_fmt(w.get('sim_cpu_percent'), '.1f'):>8} {_fmt(w.get('sim_us_per_rt'), '.0f'):>6} "
            f"{_fmt(m.get('sim_rss_mib'), '.1f'):>8} {_fmt(m.get('kib_per_station'), '.1f'):>7} "
            f"{_fmt(_thread_share(w), '.0f'):>5} "
            f"{_fmt(w.get('csms_cpu_percent'), '.1f'):>9} "
            f"{_fmt(w.get('csms_us_per_rt'), '.0f'):>10} "
            f"{_fmt(w.get('errors')) + '/' + _fmt(w.get('timeouts')):>7} "
            f"{_fmt(w.get('others_cpu_percent'), '.0f'):>6} "
            f"{_fmt(lat.get('p95_ms'), '.1f'):>7} {_fmt(lat.get('p99_ms'), '.1f'):>7} "
            f"{_fmt(mv.get('age_p99_s'), '.3f'):>10} {_fmt(mv.get('gap_p99_s'), '.2f'):>10} "
            f"{_fmt(stop.get('stop_s'), '.1f'):>6}"
        )
        if r.get("error"):
            say(f"{'':>8} error: {r['error']}")


def print_profile(result: dict[str, Any]) -> None:
    """The top functions of a run's py-spy profile."""
    profile = result.get("profile")
    if not profile:
        return
    say(f"\npy-spy profile at {result['stations']} stations:")
    if "error" in profile:
        say(f"  error: {profile['error']}")
        return
    say(f"  {profile['samples']} busy samples; raw stacks in {profile['raw']}")
    kinds = ", ".join(
        f"{kind} {row['samples']}" for kind, row in profile.get("threads", {}).items()
    )
    say(f"  samples by thread: {kinds}")
    for kind in ("self", "inclusive", "loop_self", "loop_inclusive"):
        where = "the trio loop's thread" if kind.startswith("loop_") else "all busy threads"
        say(f"  top by {kind.removeprefix('loop_')} time, {where}:")
        for row in profile[kind][:15]:
            say(f"    {row['percent']:5.1f}%  {row['function']}")


def _stations(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("fleet sizes must be >= 1")
    return values


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description="Benchmark evsim-trio with issue 6's load profile (loopback only)."
    )
    parser.add_argument(
        "--stations",
        type=_stations,
        default=[100, 1000, 2000],
        help="comma-separated fleet sizes (default 100,1000,2000)",
    )
    parser.add_argument("--window", type=float, default=60.0, help="steady window, s")
    parser.add_argument(
        "--settle", type=float, default=20.0, help="wait after the fleet is booted, s"
    )
    parser.add_argument("--ramp-timeout", type=float, default=120.0, help="boot deadline, s")
    parser.add_argument(
        "--baseline",
        type=int,
        default=1,
        help="fleet size of the fixed-memory run (0: use the smallest --stations)",
    )
    parser.add_argument("--profile", type=int, default=0, help="py-spy seconds after the window")
    parser.add_argument("--profile-dir", help="where py-spy raw stacks go (default: temp dir)")
    parser.add_argument("--py-spy", help="py-spy executable (default: on PATH)")
    parser.add_argument("--python", default=sys.executable, help="interpreter to run evsim-trio")
    parser.add_argument("--seed", type=int, default=1, help="the simulator's [simulator] seed")
    parser.add_argument(
        "--workers",
        default="0",
        help='[workers] processes of the simulator: "auto", or a number (0 = in-process)',
    )
    parser.add_argument(
        "--variant",
        choices=("default", "no-persistence", "tracemalloc"),
        default="default",
        help="experiments: no-persistence switches the stations' state writes off; "
        "tracemalloc writes the top allocation sites (to --profile-dir)",
    )
    parser.add_argument(
        "--tracemalloc-after",
        type=float,
        default=40.0,
        help="seconds after start of the tracemalloc snapshot",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories")
    parser.add_argument("--out", help="write the results as JSON here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 if every fleet size was measured, 1 otherwise."""
    args = parse_args(argv)
    started = time.time()
    report: dict[str, Any] = {
        "machine": machine_info(),
        "source": source_info(),
        "profile": PROFILE,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "settings": {
            "stations": args.stations,
            "window_s": args.window,
            "settle_s": args.settle,
            "ramp_timeout_s": args.ramp_timeout,
            "baseline": args.baseline,
            "variant": args.variant,
        },
    }
    baseline = None
    if args.baseline > 0 and args.baseline not in args.stations:
        note(f"baseline: {args.baseline} station(s)")
        baseline = Run(args.baseline, args).run(
            window=min(args.window, 10.0), settle=min(args.settle, 10.0), profile=False
        )
        report["baseline"] = baseline
    results: list[dict[str, Any]] = []
    report["results"] = results
    for n in args.stations:
        note(f"{n} stations: starting")
        result = Run(n, args).run(window=args.window, settle=args.settle, profile=True)
        results.append(result)
        window = result.get("window", {})
        note(
            f"{n} stations: boot {result.get('boot_s')} s, "
            f"{window.get('sim_us_per_rt')} us/rt, {result.get('error', 'ok')}"
        )
        if args.out:  # after every size, so that an interrupted run keeps what it measured
            Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    if args.baseline > 0 and baseline is None:
        baseline = next(r for r in results if r["stations"] == args.baseline)
    _memory_per_station(results, baseline)
    report["marginal"] = _marginal(results)
    report["elapsed_s"] = round(time.time() - started, 1)
    say()
    print_table(results)
    if baseline is not None and baseline.get("memory"):
        fixed = baseline["memory"]["sim_rss_mib"]
        say(f"\nfixed RSS ({baseline['stations']} station run): {fixed} MiB")
    for row in report["marginal"]:
        say(f"marginal {row['from']} -> {row['to']}: {row['sim_us_per_rt']} us per round trip")
    for result in results:
        print_profile(result)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
        say(f"\nresults: {args.out}")
    ok = all("error" not in r and r.get("boot_s") is not None for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
