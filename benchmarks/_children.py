"""Child processes whose output lines are read by a thread and timestamped on arrival."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["STATUS_RE", "Child", "StatusSample", "parse_status"]

# The last line of a traceback (inside an exception group's box drawing, too).
_EXCEPTION_RE = re.compile(
    r"^[\s|+]*((?:[A-Za-z_][\w]*\.)*[A-Z]\w*(?:Error|Exception|Group|InProgress|Closed)\b.*)$"
)

# The CLI's live status line (evsim_trio.simulator.FleetCounts.line()).
STATUS_RE = re.compile(
    r"stations (?P<total>\d+): (?P<connecting>\d+) connecting, (?P<booted>\d+) booted, "
    r"(?P<failed>\d+) failed, (?P<stopped>\d+) stopped \| calls (?P<calls>\d+) "
    r"\(errors (?P<errors>\d+), timeouts (?P<timeouts>\d+)\)"
    r"(?: \| sessions (?P<sessions>\d+))?"
    r"(?:.*\| reconnects (?P<reconnects>\d+))?"
)


class StatusSample:
    """One status line of the simulator, with its arrival time and the CPU/RSS read then."""

    __slots__ = ("counts", "csms_cpu_s", "sim_cpu_s", "sim_main_cpu_s", "sim_rss_bytes", "t")

    def __init__(
        self,
        t: float,
        counts: dict[str, int],
        sim_cpu_s: float | None,
        sim_rss_bytes: int | None,
        csms_cpu_s: float | None,
        sim_main_cpu_s: float | None = None,
    ) -> None:
        self.t = t
        self.counts = counts
        self.sim_cpu_s = sim_cpu_s
        self.sim_rss_bytes = sim_rss_bytes
        self.csms_cpu_s = csms_cpu_s
        self.sim_main_cpu_s = sim_main_cpu_s


def parse_status(line: str) -> dict[str, int] | None:
    """The counters of a status line, or None if `line` is not one."""
    match = STATUS_RE.search(line)
    if match is None:
        return None
    return {key: int(value) for key, value in match.groupdict().items() if value is not None}


class Child:
    """A subprocess in its own process group; stdout lines are kept with their arrival times.

    stderr goes to a file (the simulator logs at warning there); `on_line` runs in the reader
    thread for every stdout line, so it must be quick.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cwd: Path,
        stderr_path: Path,
        on_line: Callable[[float, str], None] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.stderr_path = stderr_path
        self.lines: list[tuple[float, str]] = []
        self._on_line = on_line
        self._cond = threading.Condition()
        self._stderr = stderr_path.open("wb")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name=f"{name} stdout", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            now = time.monotonic()
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if self._on_line is not None:
                self._on_line(now, line)
            with self._cond:
                self.lines.append((now, line))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_line(self, pattern: re.Pattern[str], timeout: float) -> tuple[float, re.Match[str]]:
        """The arrival time and match of the first stdout line matching `pattern`.

        Raises TimeoutError after `timeout` s, or RuntimeError if the child exits first.
        """
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for t, line in self.lines[seen:]:
                    match = pattern.search(line)
                    if match is not None:
                        return t, match
                seen = len(self.lines)
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise RuntimeError(
                        f"{self.name} exited with {self.proc.returncode}: {self.stderr_tail()}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.name}: no line matching {pattern.pattern!r}")
                self._cond.wait(min(left, 0.5))

    def stop(self, sig: signal.Signals, timeout: float) -> dict[str, Any]:
        """Send `sig`, wait up to `timeout` s, then SIGKILL the group; how it ended."""
        sent_at = time.monotonic()
        killed = False
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                killed = True
        if killed or self._group_alive():
            # Its own process group: whatever it started goes too, and nothing else.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._reader.join(10)
        self._stderr.close()
        return {
            "signal": sig.name,
            "exit_code": self.proc.returncode,
            "stop_s": round(time.monotonic() - sent_at, 3),
            "killed": killed,
        }

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def stderr_tail(self, lines: int = 5) -> str:
        """The last `lines` lines the child wrote to stderr, joined by ' | '."""
        try:
            text = self.stderr_path.read_text("utf-8", "replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def stderr_exceptions(self, top: int = 5) -> dict[str, int]:
        """The exception lines of the tracebacks on stderr ("module.Error: message"), counted."""
        try:
            text = self.stderr_path.read_text("utf-8", "replace")
        except OSError:
            return {}
        found: Counter[str] = Counter()
        for line in text.splitlines():
            match = _EXCEPTION_RE.match(line)
            if match is not None:
                found[match.group(1)[:200]] += 1
        return dict(found.most_common(top))

    def stderr_count(self) -> int:
        """How many lines the child wrote to stderr (warnings and errors: logging at warning)."""
        try:
            return len(self.stderr_path.read_text("utf-8", "replace").splitlines())
        except OSError:
            return 0

    def last_lines(self, count: int = 3) -> list[str]:
        """The last `count` stdout lines."""
        with self._cond:
            return [line for _, line in self.lines[-count:]]
