"""Run the independent ocpp-library CSMS (``tests/peers/ocpp_lib_csms.py``) from trio tests.

Usage::

    async with open_ocpp_lib_csms("--heartbeat-interval", "10") as csms:
        ...  # point stations at f"{csms.url}/ocpp/<station id>"
        await csms.wait_until(lambda: csms.stations() == {"CS-1"})
        result = await csms.call("CS-1", "GetConfiguration", {})  # a CSMS-initiated CALL
        csms.assert_no_violations()
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

SCRIPT = Path(__file__).resolve().parent / "peers" / "ocpp_lib_csms.py"
STARTUP_TIMEOUT = 20.0
TERMINATE_GRACE = 5.0
CALL_TIMEOUT = 10.0


class CallFailed(Exception):
    """A call sent with `OcppLibCsms.call` got no valid CALLRESULT.

    ``event`` is the peer's ``call_error`` line: ``error_code`` is the station's CALLERROR
    code, or None when there was no CALLERROR (no answer, connection closed, invalid result).
    """

    def __init__(self, event: dict[str, Any]) -> None:
        self.event = event
        self.error_code: str | None = event.get("error_code")
        super().__init__(
            f"{event.get('action')} to {event.get('station')} failed: "
            f"{self.error_code}: {event.get('description')}"
        )


class PeerError(Exception):
    """The peer process misbehaved: died, exited with an error, or printed non-JSON."""


class OcppLibCsms:
    """A running ocpp-library CSMS process and everything it has printed so far.

    Each list holds the decoded JSON lines of one event kind, in arrival order; ``events``
    holds all of them.
    """

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.port: int | None = None
        self.events: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []  # CALLs received from stations
        self.responses: list[dict[str, Any]] = []  # CALLRESULTs the CSMS sent
        self.violations: list[dict[str, Any]] = []
        self.call_results: list[dict[str, Any]] = []  # outcomes of CSMS-initiated calls
        self.call_errors: list[dict[str, Any]] = []
        self.control_errors: list[dict[str, Any]] = []  # control commands the peer refused
        self.unparsed: list[bytes] = []  # stdout lines that were not JSON objects
        self.eof = False
        self._changed = trio.Event()
        self._by_event = {
            "message": self.messages,
            "response": self.responses,
            "violation": self.violations,
            "call_result": self.call_results,
            "call_error": self.call_errors,
            "control_error": self.control_errors,
        }
        self._refs = itertools.count(1)
        self._outcomes: dict[str, dict[str, Any]] = {}  # control ref -> its outcome line
        self._send_lock = trio.Lock()

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:<port>``: append ``/<prefix>/<station id>``."""
        if self.port is None:
            raise PeerError("the ocpp-library CSMS is not listening")
        return f"ws://127.0.0.1:{self.port}"

    def stations(self) -> set[str]:
        """Station ids whose BootNotification was answered ``Accepted``."""
        return {
            event["station"]
            for event in self.responses
            if event["action"] == "BootNotification"
            and event["payload"].get("status") == "Accepted"
        }

    def received(self, action: str, station: str | None = None) -> list[dict[str, Any]]:
        """The CALLs of one action received so far, optionally from one station only."""
        return [
            event
            for event in self.messages
            if event["action"] == action and (station is None or event["station"] == station)
        ]

    def assert_no_violations(self) -> None:
        """Fail with every violation listed, if there is any."""
        if self.violations:
            listing = "\n".join(f"  {v['station']}: {v['detail']}" for v in self.violations)
            raise AssertionError(
                f"ocpp-library CSMS saw {len(self.violations)} violations:\n{listing}"
            )

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` is true, re-checking after every line the peer prints.

        Raises PeerError if the peer's output ends first. Put a deadline around it.
        """
        while True:
            changed = self._changed
            if predicate():
                return
            if self.eof:
                raise PeerError(
                    f"the ocpp-library CSMS stopped printing (exit status "
                    f"{self.process.returncode}) before the condition held"
                )
            await changed.wait()

    async def send_command(self, command: dict[str, Any]) -> None:
        """Write one control command (a JSON line) to the peer's standard input."""
        stdin = self.process.stdin
        if stdin is None:
            raise PeerError("the ocpp-library CSMS has no control channel")
        async with self._send_lock:
            try:
                await stdin.send_all(json.dumps(command).encode() + b"\n")
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise PeerError("the ocpp-library CSMS control channel is closed") from exc

    async def call(self, station: str, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send a CSMS-initiated CALL to a connected station; return its CALLRESULT payload.

        Raises CallFailed on a CALLERROR (or no valid answer), PeerError if the peer refused
        the command (invalid request, station not connected), trio.TooSlowError when no
        outcome arrived within CALL_TIMEOUT (10 s; put a shorter deadline around it if needed).
        """
        ref = f"call-{next(self._refs)}"
        with trio.fail_after(CALL_TIMEOUT):
            await self.send_command(
                {"op": "call", "station": station, "action": action, "payload": payload, "ref": ref}
            )
            await self.wait_until(lambda: ref in self._outcomes)
        outcome = self._outcomes.pop(ref)
        if outcome["event"] == "call_result":
            result: dict[str, Any] = outcome["payload"]
            return result
        if outcome["event"] == "call_error":
            raise CallFailed(outcome)
        raise PeerError(f"the ocpp-library CSMS refused {action}: {outcome.get('detail')}")

    def _dispatch(self, line: bytes) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if not isinstance(event, dict) or not isinstance(event.get("event"), str):
            self.unparsed.append(line)
            return
        self.events.append(event)
        kind = event["event"]
        if kind == "listening":
            self.port = int(event["port"])
        elif kind in self._by_event:
            self._by_event[kind].append(event)
        ref = event.get("ref")
        if isinstance(ref, str) and kind in ("call_result", "call_error", "control_error"):
            self._outcomes[ref] = event

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _read_lines(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        buffer = b""
        try:
            while True:
                chunk = await stdout.receive_some(65536)
                if not chunk:
                    break
                *lines, buffer = (buffer + chunk).split(b"\n")
                for line in lines:
                    if line.strip():
                        self._dispatch(line)
                if lines:
                    self._notify()
            if buffer.strip():
                self._dispatch(buffer)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass
        finally:
            self.eof = True
            self._notify()

    async def _terminate(self) -> None:
        """SIGTERM, then SIGKILL after TERMINATE_GRACE seconds; shielded from cancellation."""
        with trio.CancelScope(shield=True):
            if self.process.stdin is not None:
                await self.process.stdin.aclose()  # end of the control channel
            if self.process.returncode is None:
                self.process.terminate()
                with trio.move_on_after(TERMINATE_GRACE):
                    await self.process.wait()
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
            # The pipe is at EOF once the process is gone; give the reader time to drain it.
            with trio.move_on_after(TERMINATE_GRACE):
                while not self.eof:
                    await self._changed.wait()

    def _check_exit(self) -> None:
        if self.process.returncode != 0:
            raise PeerError(f"the ocpp-library CSMS exited with status {self.process.returncode}")
        if self.unparsed:
            raise PeerError(f"the ocpp-library CSMS printed non-JSON lines: {self.unparsed!r}")
        if not self.events or self.events[-1]["event"] != "stopped":
            raise PeerError("the ocpp-library CSMS exited without its 'stopped' line")


@asynccontextmanager
async def open_ocpp_lib_csms(*args: str) -> AsyncIterator[OcppLibCsms]:
    """Start the ocpp-library CSMS with these command-line arguments; stop it on exit.

    Waits (at most 20 s) for it to listen. On exit the process gets SIGTERM, then SIGKILL
    after 5 s; if the block itself succeeded, a non-zero exit status or stray output raises
    PeerError. Violations do not: assert on ``.violations`` (or ``assert_no_violations``).
    The peer's standard input is its control channel (`OcppLibCsms.call`).
    """
    process = await trio.lowlevel.open_process(
        [sys.executable, str(SCRIPT), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    peer = OcppLibCsms(process)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer._read_lines)
            try:
                with trio.fail_after(STARTUP_TIMEOUT):
                    await peer.wait_until(lambda: peer.port is not None)
                yield peer
            finally:
                await peer._terminate()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The reader never raises, so a group holds just the exception of the `async with`
        # body (or of the start-up): raise that one, as if there were no nursery.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    finally:
        with trio.CancelScope(shield=True):
            await peer._terminate()  # already done unless the start-up failed
            if process.stdout is not None:
                await process.stdout.aclose()
    peer._check_exit()
