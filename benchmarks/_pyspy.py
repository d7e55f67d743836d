"""A py-spy profile of a running process, summed into top functions (self and inclusive).

py-spy is optional (`pip install py-spy`); it samples from outside the process. `--nonblocking`
keeps it from pausing the target, so the profile costs the simulator nearly nothing, but it runs
after the measured window anyway, so that it cannot disturb the figures.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["record", "summarize"]

# A py-spy raw frame: "function (path/to/file.py:123)"; the line number is dropped so that
# one function's samples add up.
_FRAME_RE = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _short(frame: str) -> str:
    match = _FRAME_RE.match(frame)
    if match is None:
        return frame
    path = match["file"]
    for marker in ("site-packages/", "lib/python3.11/", "evsim_trio/"):
        index = path.rfind(marker)
        if index >= 0:
            path = path[index + len(marker) :] if marker != "evsim_trio/" else path[index:]
            break
    return f"{match['func']} ({path})"


# Frames every stack of a thread starts with: left out of the inclusive table.
_SCAFFOLD = (
    "_run_module_as_main ",
    "_run_code ",
    "<module> ",
    "main (evsim_trio/cli.py)",
    "_cmd_run ",
    "run (trio/_core/_run.py)",
    "unrolled_run ",
    "Thread._bootstrap",
    "Thread.run ",
    "WorkerThread._work ",
    "WorkerThread._handle_job ",
    "capture (outcome",
    "to_thread_run_sync.<locals>.worker_fn ",
)


def _thread_kind(frames: list[str]) -> str:
    if any(frame.startswith("WorkerThread._work ") for frame in frames):
        # A worker thread of trio.to_thread; its leaf is _work itself while it waits for a job.
        return "idle worker" if frames[-1].startswith("WorkerThread._work ") else "to_thread"
    if any(frame.startswith("run (trio/_core/_run.py)") for frame in frames):
        # Blocked in epoll_wait: the loop has nothing to run (py-spy counts it as busy).
        return "idle loop" if frames[-1].startswith("EpollIOManager.get_events ") else "trio loop"
    return "partial stack"  # py-spy --nonblocking read a stack while it changed


def summarize(raw: str, top: int = 15) -> dict[str, Any]:
    """Top functions by self and inclusive share of the busy samples in py-spy raw output.

    Samples of trio.to_thread workers waiting for a job, and of the trio loop waiting in
    epoll, are idle and left out. py-spy still counts a thread blocked in another system call
    (fsync) as busy, so shares are of wall time in busy threads, not of CPU: the harness's
    per-thread CPU figures say how the CPU splits between the loop and the workers.
    "loop_*" tables hold the trio loop's thread alone.
    """
    counters: dict[str, Counter[str]] = {
        name: Counter() for name in ("self", "inclusive", "loop_self", "loop_inclusive")
    }
    kinds: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(frame) for frame in stack.split(";") if frame]
        frames = [frame for frame in frames if not frame.startswith(("process ", "thread "))]
        if not frames:
            continue
        kind = _thread_kind(frames)
        kinds[kind] += count
        if kind.startswith("idle"):
            continue
        outer = {frame for frame in frames if not frame.startswith(_SCAFFOLD)}
        prefixes = ("", "loop_") if kind == "trio loop" else ("",)
        for prefix in prefixes:
            counters[f"{prefix}self"][frames[-1]] += count
            for frame in outer:
                counters[f"{prefix}inclusive"][frame] += count

    def table(counter: Counter[str], base: int) -> list[dict[str, Any]]:
        return [
            {"function": name, "samples": n, "percent": round(100.0 * n / base, 1)}
            for name, n in counter.most_common(top)
        ]

    busy = sum(n for kind, n in kinds.items() if not kind.startswith("idle"))
    summary: dict[str, Any] = {
        "samples": busy,
        "threads": {
            kind: {"samples": n, "percent": round(100.0 * n / busy, 1) if busy else 0.0}
            for kind, n in kinds.most_common()
            if not kind.startswith("idle")
        },
    }
    for prefix in ("", "loop_"):
        # Shares are of the samples of that scope (every stack has exactly one leaf).
        base = sum(counters[f"{prefix}self"].values())
        for name in ("self", "inclusive"):
            summary[f"{prefix}{name}"] = table(counters[f"{prefix}{name}"], base) if base else []
    return summary


def record(py_spy: str, pid: int, seconds: int, output: Path) -> dict[str, Any]:
    """Profile `pid` for `seconds` s into `output` (py-spy raw format); the summary."""
    argv = [
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(seconds),
        "--rate",
        "200",
        "--nonblocking",
        "--subprocesses",  # worker processes too
        "--format",
        "raw",
        "--output",
        str(output),
    ]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": str(exc)}
    if done.returncode != 0 or not output.exists():
        return {"error": (done.stderr or done.stdout).strip()[-500:]}
    summary = summarize(output.read_text("utf-8", "replace"))
    summary["raw"] = str(output)
    summary["command"] = " ".join(argv)
    return summary
