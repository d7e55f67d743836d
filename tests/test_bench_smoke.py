"""The benchmark harness end to end, small: 100 stations, a 5 s window, real processes, in one
process and over two worker processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

RUN_BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "run_bench.py"


@pytest.mark.parametrize("workers", ["0", "2"])
def test_bench_harness_boots_100_stations_and_measures_a_window(
    tmp_path: Path, workers: str
) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable,
            str(RUN_BENCH),
            "--stations",
            "100",
            "--workers",
            workers,
            "--window",
            "5",
            "--settle",
            "4",
            "--ramp-timeout",
            "20",
            "--baseline",
            "0",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=90,  # the harness bounds itself well below this; this is the test's deadline
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    (result,) = report["results"]
    assert "error" not in result
    assert result["booted"] == 100
    assert 0 < result["boot_s"] < 20
    window = result["window"]
    assert window["seconds"] >= 4.5  # between two status lines: up to 0.3 s early
    assert window["round_trips"] > 0
    assert window["errors"] == 0
    assert window["timeouts"] == 0
    assert window["sim_cpu_s"] >= 0
    assert window["sim_us_per_rt"] is not None
    assert window["csms_cpu_s"] >= 0
    assert result["memory"]["sim_rss_mib"] > 10
    # Both processes stopped by themselves: SIGINT / SIGTERM, clean exits, nothing killed.
    assert result["stop"]["simulator"]["exit_code"] == 0
    assert not result["stop"]["simulator"]["killed"]
    assert result["stop"]["csms"]["exit_code"] == 0
    assert "stations" in done.stdout  # the result table
    # Response times from the simulator's --report, MeterValues timing from the load CSMS.
    latency = result["latency_ms"]
    assert latency["count"] >= window["round_trips"]
    assert 0 < latency["p50_ms"] <= latency["p95_ms"] <= latency["p99_ms"] <= latency["max_ms"]
    assert result["meter_values"] is not None
    assert result["meter_values"]["count"] >= 0
