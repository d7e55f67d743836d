"""`evsim-trio` under tracemalloc: where a fleet's memory goes. An experiment, not a mode.

`run_bench.py --variant tracemalloc --tracemalloc-after S` runs the simulator through this
file; S seconds after start a thread takes a snapshot and writes the top allocation sites (by
file and by line, in KiB) as JSON to $EVSIM_BENCH_TRACEMALLOC_OUT. tracemalloc itself costs
CPU and memory, so the other figures of such a run are not comparable.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import tracemalloc
from typing import Any

from evsim_trio.cli import main

TOP = 25


def _top(snapshot: tracemalloc.Snapshot, key: str) -> list[dict[str, Any]]:
    stats = snapshot.statistics(key)
    return [
        {"where": str(stat.traceback), "kib": round(stat.size / 1024, 1), "blocks": stat.count}
        for stat in stats[:TOP]
    ]


def _snapshot_later(after: float, out: str) -> None:
    time.sleep(after)
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    total = sum(stat.size for stat in snapshot.statistics("filename"))
    report = {
        "after_s": after,
        "traced_kib": round(total / 1024, 1),
        "by_file": _top(snapshot, "filename"),
        "by_line": _top(snapshot, "lineno"),
    }
    with open(out, "w") as handle:
        json.dump(report, handle, indent=2)


if __name__ == "__main__":
    tracemalloc.start(1)
    out = os.environ.get("EVSIM_BENCH_TRACEMALLOC_OUT", "tracemalloc.json")
    after = float(os.environ.get("EVSIM_BENCH_TRACEMALLOC_AFTER", "30"))
    threading.Thread(target=_snapshot_later, args=(after, out), daemon=True).start()
    sys.exit(main(sys.argv[1:]))
