"""CPU seconds and RSS of a process and its descendants: psutil if installed, else /proc.

Linux only without psutil. Every function returns None once the process is gone, so a sampler
never raises because the process it watches has just exited.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:  # optional: the benchmark has no dependency beyond the package itself
    import psutil as _psutil  # type: ignore[import-untyped,unused-ignore]
except ImportError:  # pragma: no cover - depends on the environment
    _psutil = None

__all__ = ["BACKEND", "ProcessSample", "main_thread_cpu", "sample"]

BACKEND = "psutil" if _psutil is not None else "/proc"
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PROC = Path("/proc")


class ProcessSample:
    """CPU seconds (user + system, whole tree) and RSS bytes (summed over the tree) at one time."""

    __slots__ = ("cpu_s", "main_thread_cpu_s", "pids", "rss_bytes")

    def __init__(
        self, cpu_s: float, rss_bytes: int, pids: int, main_thread_cpu_s: float | None = None
    ) -> None:
        self.cpu_s = cpu_s
        self.rss_bytes = rss_bytes
        self.pids = pids
        self.main_thread_cpu_s = main_thread_cpu_s

    def as_dict(self) -> dict[str, Any]:
        """The sample as JSON-ready numbers."""
        return {
            "cpu_s": self.cpu_s,
            "rss_bytes": self.rss_bytes,
            "pids": self.pids,
            "main_thread_cpu_s": self.main_thread_cpu_s,
        }


def main_thread_cpu(pid: int) -> float | None:
    """CPU seconds of the main thread of `pid` alone (Linux), so worker threads' share shows."""
    try:
        text = (_PROC / str(pid) / "task" / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after the last ")".
    return text[text.rindex(")") + 2 :].split()


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is None:
            continue
        # After the command name: state (0), ppid (1).
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def _tree(pid: int) -> Iterator[int]:
    children = _children_map()
    stack = [pid]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(children.get(current, ()))


def _rss_proc(pid: int) -> int:
    try:
        for line in (_PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _sample_proc(pid: int) -> ProcessSample | None:
    root = _stat_fields(pid)
    if root is None or root[0] == "Z":
        return None
    cpu_ticks = 0
    rss = 0
    count = 0
    for member in _tree(pid):
        fields = _stat_fields(member)
        if fields is None:
            continue
        # utime, stime, cutime, cstime are fields 14-17 of stat(5), i.e. 11-14 here: the
        # children's part counts descendants already reaped, so their CPU is not lost.
        cpu_ticks += sum(int(value) for value in fields[11:15])
        rss += _rss_proc(member)
        count += 1
    return ProcessSample(cpu_ticks / _CLK_TCK, rss, count, main_thread_cpu(pid))


def _sample_psutil(pid: int) -> ProcessSample | None:
    assert _psutil is not None
    try:
        root = _psutil.Process(pid)
        if root.status() == _psutil.STATUS_ZOMBIE:
            return None
        members = [root, *root.children(recursive=True)]
    except _psutil.Error:
        return None
    cpu = 0.0
    rss = 0
    count = 0
    for member in members:
        try:
            times = member.cpu_times()
            cpu += times.user + times.system + times.children_user + times.children_system
            rss += member.memory_info().rss
            count += 1
        except _psutil.Error:
            continue
    return ProcessSample(cpu, rss, count, main_thread_cpu(pid))


def sample(pid: int) -> ProcessSample | None:
    """CPU seconds and RSS of `pid` and all its descendants; None if `pid` is gone."""
    if _psutil is not None:
        return _sample_psutil(pid)
    return _sample_proc(pid)
