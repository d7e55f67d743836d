"""Persisted station state: atomic writes, damaged files, kill -9 of the simulator, restarts.

The unit tests drive `save_state` / `load_state` / `build_specs` / `Station` directly. The
integration tests run `python -m evsim_trio run` in a subprocess against an `EmbeddedCsms`
served by the test process and end it with SIGKILL, so that nothing of the simulator gets a
chance to clean up: 50 kills during heavy state writes, the offline queue delivered at least
once across a kill, ChangeConfiguration across a restart.

Tests marked xfail(strict=True) pin down bugs found here (see their reasons); they turn into
failures once the bug is fixed, so that the marker is removed.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import random
import re
import signal
import subprocess
import sys
import time
import tomllib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import attrs
import pytest
import tomli_w
import trio
import trio.testing
from memlink import MemoryNetwork, make_station, shipped_template

from evsim_trio._resources import data_dir
from evsim_trio.config import load_site
from evsim_trio.csms import EmbeddedCsms
from evsim_trio.simulator import Simulator, build_specs
from evsim_trio.station import (
    Station,
    Transaction,
    _state_writer,
    default_connect,
    load_state,
    remove_temp_files,
    save_state,
    state_path,
)
from evsim_trio.station._state_text import StateText
from evsim_trio.station._state_writer import StateWriter

TEMPLATES = data_dir("station_templates")
STATE_LOGGER = "evsim_trio.station._persistence"


# -- helpers: files ----------------------------------------------------------------------------


def _replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"the shipped template changed: {old!r}"
    return text.replace(old, new)


def write_template(
    directory: Path,
    *,
    atg: bool,
    stop_on_connection_failure: bool = True,
    extra_configuration: Iterable[tuple[str, str]] = (),
) -> Path:
    """A copy of the shipped ac-3phase-2conn template: fast ATG, MeterValues every second.

    Station ids, vendor, model and serial prefixes are the shipped ones, so two copies that
    differ only in the ATG give the same hashIds (the same state files).
    """
    text = (TEMPLATES / "ac-3phase-2conn.toml").read_text(encoding="utf-8")
    text = _replace_once(
        text,
        'authorization_file = "authorization-tags.toml"',
        f'authorization_file = "{(TEMPLATES / "authorization-tags.toml").as_posix()}"',
    )
    text = _replace_once(text, "reconnect_max_delay = 60.0", "reconnect_max_delay = 2.0")
    text = _replace_once(
        text,
        'key = "MeterValueSampleInterval"\nvalue = "60"\n',
        'key = "MeterValueSampleInterval"\nvalue = "1"\n',
    )
    marker = "# Random transactions on every connector"
    extra = "".join(
        f'[[configuration]]\nkey = "{k}"\nvalue = "{v}"\n\n' for k, v in extra_configuration
    )
    text = _replace_once(text, marker, extra + marker)
    atg_block = (
        "[automatic_transaction_generator]\n"
        f"enable = {'true' if atg else 'false'}\n"
        "min_duration = 1\nmax_duration = 2\n"
        "min_delay_between_two_transactions = 1\nmax_delay_between_two_transactions = 2\n"
        "probability_of_start = 1\nstop_after_hours = 1\n"
        f"stop_on_connection_failure = {'true' if stop_on_connection_failure else 'false'}\n"
        'require_authorize = true\nid_tag_distribution = "round-robin"\n'
    )
    text, count = re.subn(
        r"^\[automatic_transaction_generator\]\n(?:\w+ = .*\n)+", atg_block, text, flags=re.M
    )
    assert count == 1, "the shipped template changed: [automatic_transaction_generator]"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "ac-3phase-2conn.toml"
    path.write_text(text, encoding="utf-8")
    return path


def write_site(path: Path, *, template: Path, count: int, state_dir: Path, url: str) -> Path:
    """A site config: `count` stations of `template` connecting to `url`, no embedded CSMS."""
    path.write_text(
        f'[simulator]\nseed = 5\nstate_dir = "{state_dir.as_posix()}"\n'
        '[log]\nconsole = true\nlevel = "info"\n'
        f'[csms]\nenabled = false\n[supervision]\nurls = ["{url}"]\n'
        "[ui_server]\nenabled = false\n"
        f'[[stations]]\ntemplate = "{template.as_posix()}"\ncount = {count}\n',
        encoding="utf-8",
    )
    return path


def read_states(state_dir: Path) -> dict[str, dict[str, Any]]:
    """Every state file of `state_dir`, by station id; fails on an unreadable one."""
    states: dict[str, dict[str, Any]] = {}
    for path in sorted(state_dir.glob("*.toml")):
        try:
            state = tomllib.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise AssertionError(f"{path}: unreadable state file: {exc}") from exc
        assert state.get("version") == 1, f"{path}: version {state.get('version')!r}"
        states[state["station_info"]["station_id"]] = state
    return states


async def wait_for_states(
    state_dir: Path, predicate: Callable[[dict[str, dict[str, Any]]], bool]
) -> dict[str, dict[str, Any]]:
    """Until the state files (written by another process) satisfy `predicate`.

    There is no event to wait on across processes, so this re-reads the files every 50 ms:
    the wait ends on the files' content, not on elapsed time. Put a deadline around it.
    """
    while True:
        states = read_states(state_dir)
        if predicate(states):
            return states
        await trio.sleep(0.05)


def identity(payload: dict[str, Any]) -> str:
    """A transaction message as the station queued it: its payload without the CSMS's id.

    The station fills `transactionId` in at send time (a StopTransaction of a transaction
    started offline only learns it then), so it is not part of what identifies the message.
    """
    return json.dumps(
        {k: v for k, v in payload.items() if k != "transactionId"},
        sort_keys=True,
        separators=(",", ":"),
    )


def start_identity(tx: dict[str, Any]) -> str:
    """The StartTransaction identity of a transaction persisted on a connector."""
    payload = {
        "connectorId": tx["connector_id"],
        "idTag": tx["id_tag"],
        "meterStart": tx["meter_start"],
        "timestamp": tx["start_timestamp"],
    }
    if "reservation_id" in tx:
        payload["reservationId"] = tx["reservation_id"]
    return identity(payload)


# -- helpers: the simulator subprocess ---------------------------------------------------------


class SimulatorProcess:
    """`python -m evsim_trio run <config>` as a child: stdout collected, stderr to a file."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.output = b""
        self.eof = False
        self._changed = trio.Event()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def pump(self) -> None:
        """Collect stdout until EOF (keeps the pipe from filling up)."""
        assert self.process.stdout is not None
        async for chunk in self.process.stdout:
            self.output += chunk
            self._wake()
        self.eof = True
        self._wake()

    async def wait_output(self, text: bytes) -> None:
        """Until `text` was printed; fails if the simulator exits first."""
        while text not in self.output:
            if self.eof:
                raise AssertionError(
                    f"the simulator exited before printing {text!r}:\n{self.output!r}"
                )
            await self._changed.wait()

    async def kill(self) -> None:
        """SIGKILL, and make sure it was the kill that ended it."""
        assert self.process.returncode is None, f"the simulator died by itself:\n{self.output!r}"
        self.process.kill()
        await self.process.wait()
        assert self.process.returncode == -signal.SIGKILL

    async def interrupt(self) -> None:
        """SIGINT (Ctrl-C): the clean stop; it must exit 0."""
        self.process.send_signal(signal.SIGINT)
        await self.process.wait()
        assert self.process.returncode == 0, self.output


@contextlib.asynccontextmanager
async def simulator_process(config: Path, stderr: BinaryIO) -> AsyncIterator[SimulatorProcess]:
    """Run the simulator on `config` for the body; killed on the way out if still running."""
    command = [sys.executable, "-m", "evsim_trio", "run", str(config)]
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            functools.partial(
                trio.run_process, command, stdout=subprocess.PIPE, stderr=stderr, check=False
            )
        )
        simulator = SimulatorProcess(process)
        nursery.start_soon(simulator.pump)
        try:
            yield simulator
        finally:
            if process.returncode is None:
                process.kill()


@contextlib.asynccontextmanager
async def serving(csms: EmbeddedCsms) -> AsyncIterator[str]:
    """Serve `csms` on 127.0.0.1, any free port, for the body; yields its URL."""
    async with trio.open_nursery() as nursery:
        await nursery.start(csms.serve, "127.0.0.1", 0)
        yield csms.url
        nursery.cancel_scope.cancel()


def booted(count: int) -> bytes:
    """The status line fragment once `count` stations are booted."""
    return f" {count} booted,".encode()


LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ", re.MULTILINE)
BAD_LOG = ("Traceback", "unreadable station state", "not understood", "crashed", " ERROR ")


def log_problems(log: Path) -> tuple[list[str], list[str]]:
    """What a simulator log must not contain: (problems, known link-bug crashes).

    The second list holds station crashes with `CallInProgress`: a known bug of the station
    link (a CALL after a failed send, or after a cancelled one, raises CallInProgress, which
    no caller expects), reported separately; they are not about persistence.
    """
    text = log.read_text(encoding="utf-8", errors="replace")
    starts = [m.start() for m in LOG_RECORD.finditer(text)]
    records = [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)], strict=True)]
    if not starts or starts[0] > 0:
        records.insert(0, text[: starts[0] if starts else len(text)])
    problems: list[str] = []
    known: list[str] = []
    for record in records:
        if "station crashed" in record and "CallInProgress" in record:
            known.append(record.splitlines()[0])
        elif any(bad in record for bad in BAD_LOG):
            problems.append(record)
    return problems, known


def assert_clean_log(log: Path) -> None:
    """No problem at all in a simulator log."""
    assert log_problems(log) == ([], [])


# -- unit: save_state / load_state -------------------------------------------------------------


def sample_state() -> dict[str, Any]:
    """A state with every kind of entry a station writes."""
    return {
        "station_info": {
            "station_id": "AC22-00001",
            "charge_point_serial_number": "AC22-123456",
            "charge_box_serial_number": "AC22B-654321",
        },
        "connectors": {
            "0": {"availability": "Operative"},
            "1": {
                "availability": "Inoperative",
                "meter": {"energy_register_wh": 1234.5678},
                "transaction": {
                    "local_id": 3,
                    "connector_id": 1,
                    "id_tag": "TAG-0001",
                    "meter_start": 1000,
                    "start_timestamp": "2025-01-01T00:00:00.000Z",
                    "transaction_id": 42,
                    "meter_values": [],
                },
            },
        },
        "queue": [
            {
                "action": "StopTransaction",
                "payload": {
                    "idTag": "TAG-0001",
                    "meterStop": 2000,
                    "timestamp": "2025-01-01T00:10:00.000Z",
                    "reason": "Local",
                },
                "local_tx": 2,
                "attempts": 1,
            }
        ],
        "tx_ids": {"2": 41, "3": 42},
        "open_tx": [2, 3],
        "next_local_tx": 3,
        "configuration": [{"key": "MeterValueSampleInterval", "value": "17"}],
    }


def test_save_then_load_round_trips_the_state_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = state_path(tmp_path / "state", "0123abcd")
    save_state(path, sample_state())
    assert load_state(path) == {"version": 1, **sample_state()}
    # Saving again replaces the file whole.
    changed = {**sample_state(), "next_local_tx": 4, "queue": []}
    save_state(path, changed)
    assert load_state(path) == {"version": 1, **changed}
    assert [p.name for p in path.parent.iterdir()] == [path.name]


async def test_a_station_reads_back_exactly_the_state_it_wrote(tmp_path: Path) -> None:
    template = shipped_template()
    station = make_station(template, default_connect())
    assert station.configuration.change("MeterValueSampleInterval", "17") == "Accepted"
    connector = station.connectors[1]
    connector.transaction = Transaction(
        local_id=1,
        connector_id=1,
        id_tag="TAG-1",
        meter_start=10,
        start_timestamp="2025-01-01T00:00:00.000Z",
        transaction_id=7,
    )
    station.tx_ids[1] = 7
    station.next_local_tx = 1
    station.enqueue(
        "MeterValues",
        {
            "connectorId": 1,
            "meterValue": [
                {
                    "timestamp": "2025-01-01T00:00:01.000Z",
                    "sampledValue": [{"value": "10.5", "measurand": "Power.Active.Import"}],
                }
            ],
        },
        1,
    )
    station.connectors[2].availability = "Inoperative"
    path = state_path(tmp_path, station.hash_id)
    save_state(path, station.to_state())
    state = load_state(path)
    assert state is not None
    again = make_station(template, default_connect(), state=state)
    assert again.to_state() == station.to_state()
    assert again.configuration.get("MeterValueSampleInterval") == "17"
    assert again.connectors[1].status == "Charging"
    assert again.connectors[2].status == "Unavailable"
    assert [m.action for m in again.queue] == ["MeterValues"]


def _truncated() -> bytes:
    text = "version = 1\n" + 'station_info = { station_id = "AC22-00001" }\n'
    # Cut inside the quoted station id: an unterminated string is never valid TOML.
    return text[: text.index('"AC22') + 4].encode()


DAMAGED = [
    pytest.param(_truncated(), id="truncated"),
    pytest.param(b"\x00\xff\xfe\x80 not toml at all \x9c\x00", id="garbage"),
    pytest.param(b"version = 1\n[connectors.1\n", id="half a table header"),
]


@pytest.mark.parametrize("content", DAMAGED)
def test_a_damaged_state_file_is_reported_and_set_aside_never_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    path = state_path(tmp_path, "0123abcd")
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger=STATE_LOGGER):
        assert load_state(path) is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(path) in warnings[0].getMessage()
    damaged = path.with_suffix(".damaged")
    assert not path.exists()
    assert damaged.read_bytes() == content
    assert str(damaged) in warnings[0].getMessage()


def test_a_state_of_a_newer_version_is_ignored_with_a_warning_and_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = state_path(tmp_path, "0123abcd")
    newer = b'version = 2\n[station_info]\nstation_id = "AC22-00001"\nfuture = true\n'
    path.write_bytes(newer)
    with caplog.at_level(logging.WARNING, logger=STATE_LOGGER):
        assert load_state(path) is None
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(messages) == 1
    assert str(path) in messages[0]
    assert "version 2" in messages[0]
    # Ignored, never lost: still there, under its name or set aside.
    assert newer in [p.read_bytes() for p in tmp_path.iterdir()]


def test_temp_files_of_an_interrupted_write_do_not_confuse_loading(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = state_path(tmp_path, "0123abcd")
    # A write that died before its rename: a half-written temp file, alone.
    leftover = tmp_path / f".{path.name}.k3j4h5.tmp"
    leftover.write_bytes(b'version = 1\n[station_info]\nstation_id = "AC2')
    with caplog.at_level(logging.WARNING, logger=STATE_LOGGER):
        assert load_state(path) is None
        # Next to a good state file it is ignored too.
        save_state(path, sample_state())
        other = tmp_path / f".{path.name}.zz9.tmp"
        other.write_bytes(b"\x00\x01")
        assert load_state(path) == {"version": 1, **sample_state()}
    assert caplog.records == []
    assert not list(tmp_path.glob("*.damaged"))
    # The simulator removes such leftovers once, before its stations load their state.
    assert leftover.exists()
    foreign = tmp_path / ".someone-else.toml.abc.tmp"  # another process's (a shard's) write
    foreign.write_bytes(b"")
    assert remove_temp_files(tmp_path, [path]) == 2
    assert foreign.exists()
    assert not leftover.exists()
    assert not other.exists()
    assert path.exists()


def _site(tmp_path: Path, count: int = 2) -> Path:
    template = write_template(tmp_path / "templates", atg=False)
    return write_site(
        tmp_path / "site.toml",
        template=template,
        count=count,
        state_dir=tmp_path / "state",
        url="ws://127.0.0.1:9/ocpp",
    )


def test_the_fleet_still_builds_over_a_damaged_state_file_which_is_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    site = load_site(_site(tmp_path))
    state_dir = tmp_path / "state"
    first = build_specs(site, seed=1, state_dir=state_dir, embedded_csms_url=None)
    path = first[0].state_path
    assert path is not None
    assert path.exists()
    path.write_bytes(b"\xff\xfe\x00garbage")
    with caplog.at_level(logging.WARNING, logger=STATE_LOGGER):
        again = build_specs(site, seed=1, state_dir=state_dir, embedded_csms_url=None)
    assert [s.identity.station_id for s in again] == [s.identity.station_id for s in first]
    assert any(str(path) in r.getMessage() for r in caplog.records)
    assert path.with_suffix(".damaged").read_bytes() == b"\xff\xfe\x00garbage"
    # The other station's state was read as it was.
    assert again[1].identity == first[1].identity


def test_the_fleet_builds_over_leftover_temp_files(tmp_path: Path) -> None:
    site = load_site(_site(tmp_path))
    state_dir = tmp_path / "state"
    first = build_specs(site, seed=1, state_dir=state_dir, embedded_csms_url=None)
    for spec in first:
        assert spec.state_path is not None
        (state_dir / f".{spec.state_path.name}.abc123.tmp").write_bytes(b"version = 1\n[sta")
    again = build_specs(site, seed=2, state_dir=state_dir, embedded_csms_url=None)
    assert [s.identity for s in again] == [s.identity for s in first]
    assert not list(state_dir.glob("*.damaged"))


def test_a_state_file_of_a_newer_version_is_never_overwritten(tmp_path: Path) -> None:
    site = load_site(_site(tmp_path, count=1))
    state_dir = tmp_path / "state"
    (spec,) = build_specs(site, seed=1, state_dir=state_dir, embedded_csms_url=None)
    assert spec.state_path is not None
    newer = b'version = 2\n[station_info]\nstation_id = "AC22-00001"\nfuture = true\n'
    spec.state_path.write_bytes(newer)
    build_specs(site, seed=1, state_dir=state_dir, embedded_csms_url=None)
    assert newer in [p.read_bytes() for p in state_dir.iterdir()]
    assert not list(state_dir.glob("*.damaged"))


async def test_a_state_file_of_the_wrong_shape_is_set_aside_and_the_fleet_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    csms = EmbeddedCsms()
    state_dir = tmp_path / "state"
    with trio.fail_after(20):
        async with serving(csms) as url:
            template = write_template(tmp_path / "templates", atg=False)
            site = load_site(
                write_site(
                    tmp_path / "site.toml",
                    template=template,
                    count=2,
                    state_dir=state_dir,
                    url=url,
                )
            )
            first = build_specs(site, seed=1, state_dir=state_dir, embedded_csms_url=None)
            path = first[0].state_path
            assert path is not None
            wrong = b'version = 1\nconnectors = 5\n[station_info]\nstation_id = "AC22-00001"\n'
            path.write_bytes(wrong)
            with caplog.at_level(logging.WARNING):
                async with trio.open_nursery() as nursery:
                    simulator: Simulator = await nursery.start(Simulator(site).run)
                    await simulator.wait_until(lambda counts: counts.booted == 2)
                    await simulator.shutdown()
    assert any(str(path) in r.getMessage() for r in caplog.records)
    assert wrong in [p.read_bytes() for p in state_dir.iterdir()]


# -- a restart continues from the state ---------------------------------------------------------


@pytest.fixture
def csms_network(nursery: trio.Nursery) -> tuple[EmbeddedCsms, MemoryNetwork]:
    csms = EmbeddedCsms(heartbeat_interval=600)
    return csms, MemoryNetwork(nursery, csms.handle_request)


async def test_a_transaction_resumed_after_a_restart_still_ends(
    autojump_clock: trio.testing.MockClock,
    csms_network: tuple[EmbeddedCsms, MemoryNetwork],
    tmp_path: Path,
) -> None:
    csms, network = csms_network
    shipped = shipped_template()
    atg = shipped.automatic_transaction_generator  # durations 60-80 s, delays 15-30 s
    template = attrs.evolve(shipped, automatic_transaction_generator=attrs.evolve(atg, enable=True))
    path = tmp_path / "station.toml"
    first = make_station(template, network.connect(), state_path=path)
    with trio.fail_after(3600):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(first.run)
            await csms.wait_until(
                lambda: (
                    len(csms.stations[first.station_id].transactions) == 2
                    if first.station_id in csms.stations
                    else False
                )
            )
            first.stop()  # a clean stop: the state is written with both transactions open
    state = load_state(path)
    assert state is not None
    resumed = {
        c["transaction"]["transaction_id"]
        for c in state["connectors"].values()
        if "transaction" in c
    }
    assert resumed == set(csms.stations[first.station_id].transactions)
    again = make_station(template, network.connect(), state_path=path, state=state)
    record = csms.stations[again.station_id]
    with trio.fail_after(3600):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(again.run)
            # Longer than the ATG's longest delay plus its longest transaction, twice over.
            with trio.move_on_after(
                2 * (atg.max_delay_between_two_transactions + atg.max_duration)
            ):
                await csms.wait_until(lambda: not resumed & set(record.transactions))
            again.stop()
    assert not resumed & set(record.transactions), "resumed transactions never stopped"


# -- kill -9 during heavy state writes, 50 times -----------------------------------------------

KILL_LOOP_ITERATIONS = 50
KILL_LOOP_STATIONS = 20
TRANSACTION_ACTIONS = ("StartTransaction", "StopTransaction", "MeterValues")
# A state file, or the temp file of a write that a kill interrupted before its rename.
STATE_DIR_ENTRY = re.compile(r"[0-9a-f]+\.toml|\.[0-9a-f]+\.toml\.\w+\.tmp")


def _mtimes(state_dir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in state_dir.glob("*.toml")}


async def wait_for_a_write(state_dir: Path, since: dict[str, int]) -> None:
    """Until some state file was replaced after the `since` snapshot (polled, see above)."""
    while True:
        if _mtimes(state_dir) != since:
            return
        await trio.sleep(0.01)


def received_more(csms: EmbeddedCsms, before: dict[str, int]) -> bool:
    """Whether the CSMS received more of some action than `before` counted."""
    return any(csms.received[action] > count for action, count in before.items())


@attrs.define
class KillRecord:
    """What one iteration of the kill loop saw."""

    seconds: float
    offset: float
    starts: int
    written: int
    temp_files: int
    open_transactions: int


@pytest.mark.integration
async def test_kill_9_during_heavy_state_writes_never_leaves_an_unreadable_state_file(
    tmp_path: Path,
) -> None:
    rng = random.Random(20250607)
    csms = EmbeddedCsms()
    state_dir = tmp_path / "state"
    records: list[KillRecord] = []
    next_local_tx: dict[str, int] = {}
    serials: dict[str, tuple[str, str]] = {}
    started = time.monotonic()
    with trio.fail_after(180):  # typically 85-95 s here; see the printed figures
        async with serving(csms) as url:
            template = write_template(tmp_path / "templates", atg=True)
            config = write_site(
                tmp_path / "site.toml",
                template=template,
                count=KILL_LOOP_STATIONS,
                state_dir=state_dir,
                url=url,
            )
            for iteration in range(KILL_LOOP_ITERATIONS):
                t0 = time.monotonic()
                before = {a: csms.received[a] for a in TRANSACTION_ACTIONS}
                mtimes = _mtimes(state_dir)
                temps = set(state_dir.glob(".*.tmp"))
                # Half the kills land inside the write wave just seen (every station writes
                # within a few ms of the others), half anywhere in the debounce period after.
                offset = rng.uniform(0.0, 0.05) if iteration % 2 else rng.uniform(0.05, 1.1)
                log = tmp_path / f"run-{iteration:02d}.log"
                with log.open("wb") as stderr:
                    async with simulator_process(config, stderr) as simulator:
                        await simulator.wait_output(booted(KILL_LOOP_STATIONS))
                        # Transactions run or resume: each message is a state change. (Not
                        # StartTransaction alone: resumed transactions never end, see
                        # test_a_transaction_resumed_after_a_restart_still_ends, so after a
                        # few kills most connectors start nothing new.)
                        await csms.wait_until(functools.partial(received_more, csms, before))
                        await wait_for_a_write(state_dir, _mtimes(state_dir))
                        await trio.sleep(offset)  # the kill moment, not a wait for something
                        await simulator.kill()
                # Every state file parses and has version 1; nothing was set aside: the
                # directory holds the state files and at most leftover temp files.
                states = read_states(state_dir)
                assert len(states) == KILL_LOOP_STATIONS
                assert all(STATE_DIR_ENTRY.fullmatch(p.name) for p in state_dir.iterdir()), sorted(
                    p.name for p in state_dir.iterdir()
                )
                assert_clean_log(log)
                for sid, state in states.items():
                    # A restart continues from the state: nothing goes back, serials stay.
                    # (A station that changed nothing worth writing soon yet has only the
                    # station_info file its build wrote: no transaction counted so far.)
                    counted = state.get("next_local_tx", 0)
                    assert counted >= next_local_tx.get(sid, 0)
                    next_local_tx[sid] = counted
                    info = state["station_info"]
                    serial = (info["charge_point_serial_number"], info["charge_box_serial_number"])
                    assert serials.setdefault(sid, serial) == serial
                records.append(
                    KillRecord(
                        seconds=time.monotonic() - t0,
                        offset=offset,
                        starts=csms.received["StartTransaction"] - before["StartTransaction"],
                        written=sum(
                            1 for name, m in _mtimes(state_dir).items() if mtimes.get(name) != m
                        ),
                        temp_files=len(set(state_dir.glob(".*.tmp")) - temps),
                        open_transactions=sum(
                            "transaction" in c
                            for state in states.values()
                            for c in state.get("connectors", {}).values()
                        ),
                    )
                )
    total = time.monotonic() - started
    seconds = [r.seconds for r in records]
    print(
        f"\nkill -9 loop: {len(records)} kills in {total:.1f} s "
        f"(per iteration {min(seconds):.2f}-{max(seconds):.2f} s); "
        f"kills that left a temp file (mid-write): {sum(r.temp_files for r in records)}; "
        f"state files written per iteration {[r.written for r in records]}; "
        f"StartTransactions per iteration {[r.starts for r in records]}; "
        f"open transactions in the state after each kill {[r.open_transactions for r in records]}"
    )
    assert csms.violations == []


# -- offline queue across a kill -9: at least once -------------------------------------------


@attrs.frozen
class Delivery:
    """One transaction message as the CSMS received it."""

    run: int
    station_id: str
    action: str
    key: str  # identity(payload)
    transaction_id: int | None


class TransactionLedger:
    """Wraps the CSMS's transaction handlers: records every delivery, per run of the simulator.

    StartTransaction is answered idempotently, as a CSMS must for at-least-once delivery: a
    StartTransaction received again (same station, same payload) gets the transaction id of
    the first delivery, so one transaction has one id however often its start arrives.
    """

    def __init__(self, csms: EmbeddedCsms) -> None:
        self.csms = csms
        self.run = 1
        self.deliveries: list[Delivery] = []
        self.ids: dict[tuple[str, str], int] = {}  # (station, start key) -> transaction id
        for action in TRANSACTION_ACTIONS:
            csms.handlers[action] = self._wrap(action, csms.handlers[action])

    def _wrap(self, action: str, inner: Any) -> Any:
        def handler(record: Any, payload: dict[str, Any]) -> dict[str, Any]:
            answer = inner(record, payload)
            assert isinstance(answer, dict)
            key = identity(payload)
            transaction_id = payload.get("transactionId")
            if action == "StartTransaction":
                ref = (record.station_id, key)
                transaction_id = self.ids.setdefault(ref, answer["transactionId"])
                answer = {**answer, "transactionId": transaction_id}
            self.deliveries.append(
                Delivery(self.run, record.station_id, action, key, transaction_id)
            )
            return answer

        return handler

    def delivered(self, run: int) -> set[tuple[str, str, str]]:
        """(station, action, key) of every message received in `run`."""
        return {(d.station_id, d.action, d.key) for d in self.deliveries if d.run == run}

    def stopped(self) -> set[tuple[str, int | None]]:
        """(station, transaction id) of every StopTransaction received."""
        return {
            (d.station_id, d.transaction_id)
            for d in self.deliveries
            if d.action == "StopTransaction"
        }


@attrs.frozen
class Persisted:
    """What the state files held when the simulator was killed."""

    queue: dict[str, list[tuple[str, str]]]  # station -> [(action, key)] in queue order
    open_starts: frozenset[tuple[str, str]]  # (station, start key) open on a connector

    @classmethod
    def read(cls, state_dir: Path) -> Persisted:
        queue: dict[str, list[tuple[str, str]]] = {}
        open_starts: set[tuple[str, str]] = set()
        for sid, state in read_states(state_dir).items():
            queue[sid] = [(m["action"], identity(m["payload"])) for m in state.get("queue", [])]
            for connector in state.get("connectors", {}).values():
                if "transaction" in connector:
                    open_starts.add((sid, start_identity(connector["transaction"])))
        return cls(queue, frozenset(open_starts))

    def messages(self) -> set[tuple[str, str, str]]:
        return {(sid, a, k) for sid, items in self.queue.items() for a, k in items}

    def count(self, action: str) -> int:
        return sum(a == action for items in self.queue.values() for a, _ in items)


def started_transactions(ledger: TransactionLedger, persisted: Persisted) -> set[tuple[str, str]]:
    """Every transaction started per the first run (CSMS) or per the persisted state."""
    started = {
        (d.station_id, d.key)
        for d in ledger.deliveries
        if d.run == 1 and d.action == "StartTransaction"
    }
    started |= {(sid, k) for sid, a, k in persisted.messages() if a == "StartTransaction"}
    return started | persisted.open_starts


async def stop_open_transactions(
    csms: EmbeddedCsms, ledger: TransactionLedger, persisted: Persisted
) -> list[str]:
    """RemoteStopTransaction for every started transaction without a StopTransaction yet.

    Returns what the stations refused (a transaction they no longer know about).
    """
    refused: list[str] = []
    waiting: list[tuple[str, int]] = []
    for sid, key in sorted(started_transactions(ledger, persisted)):
        transaction_id = ledger.ids.get((sid, key))
        if transaction_id is None:
            refused.append(f"{sid}: StartTransaction {key} never reached the CSMS")
            continue
        if (sid, transaction_id) in ledger.stopped():
            continue
        answer = await csms.call(sid, "RemoteStopTransaction", {"transactionId": transaction_id})
        if answer["status"] != "Accepted":
            refused.append(f"{sid}: transaction {transaction_id} ({key}) unknown to the station")
        else:
            waiting.append((sid, transaction_id))
    await csms.wait_until(lambda: set(waiting) <= ledger.stopped())
    return refused


def assert_at_least_once(ledger: TransactionLedger, persisted: Persisted) -> None:
    """At least once across a kill -9, exactly:

    - no message lost: every message in the persisted queue reaches the CSMS after the
      restart, in queue order per station; every transaction started (per the first run or
      per the persisted state) gets a StopTransaction carrying its transaction id;
    - duplicates only for messages in flight at the kill: a message arrives twice only if the
      CSMS got it before the kill while the state file still had it queued (its delivery
      was not yet written down), and then exactly once in each run.
    """
    second_run = [d for d in ledger.deliveries if d.run == 2]
    for sid, queued in persisted.queue.items():
        wanted = set(queued)
        arrived: list[tuple[str, str]] = []
        for d in second_run:
            message = (d.action, d.key)
            if d.station_id == sid and message in wanted and message not in arrived:
                arrived.append(message)
        assert arrived == queued, f"{sid}: persisted queue not delivered in order"
    stopped = ledger.stopped()
    lost = sorted(
        (sid, key)
        for sid, key in started_transactions(ledger, persisted)
        if (sid, ledger.ids.get((sid, key))) not in stopped
    )
    assert lost == [], f"transactions that never got a StopTransaction: {lost}"
    starts_by_id = {v: k for k, v in ledger.ids.items()}
    for d in ledger.deliveries:
        if d.action == "StopTransaction":
            sid, start_key = starts_by_id[d.transaction_id]  # type: ignore[index]
            assert sid == d.station_id
            assert json.loads(start_key)["idTag"] == json.loads(d.key)["idTag"]
    runs: dict[tuple[str, str, str], list[int]] = {}
    for d in ledger.deliveries:
        runs.setdefault((d.station_id, d.action, d.key), []).append(d.run)
    duplicated = {m for m, r in runs.items() if len(r) > 1}
    in_flight = persisted.messages() & ledger.delivered(1)
    assert duplicated == in_flight
    assert all(sorted(runs[m]) == [1, 2] for m in duplicated)


OFFLINE_STATIONS = 10


async def drop(csms: EmbeddedCsms, station_id: str) -> None:
    """Close the station's connection, if it still has one."""
    with contextlib.suppress(KeyError):  # StationNotConnected: it left by itself meanwhile
        await csms.disconnect(station_id)


@pytest.mark.integration
@pytest.mark.parametrize(
    "kill_when",
    [
        "offline, queue persisted",
        "online, just after a StartTransaction",
    ],
)
async def test_transaction_messages_arrive_at_least_once_across_a_kill_9(
    tmp_path: Path, kill_when: str
) -> None:
    csms = EmbeddedCsms()
    ledger = TransactionLedger(csms)
    state_dir = tmp_path / "state"
    offline_ok = [("AllowOfflineTxForUnknownId", "true")]
    with trio.fail_after(60):
        async with serving(csms) as url:
            configs = [
                write_site(
                    tmp_path / f"site-{run}.toml",
                    template=write_template(
                        tmp_path / f"templates-{run}",
                        atg=run == 1,  # the restart runs without it: only the queue moves
                        stop_on_connection_failure=False,  # transactions go on offline
                        extra_configuration=offline_ok,
                    ),
                    count=OFFLINE_STATIONS,
                    state_dir=state_dir,
                    url=url,
                )
                for run in (1, 2)
            ]
            log1 = tmp_path / "run-1.log"
            with log1.open("wb") as stderr:
                async with simulator_process(configs[0], stderr) as simulator:
                    await simulator.wait_output(booted(OFFLINE_STATIONS))
                    if kill_when.startswith("online"):
                        await csms.wait_until(
                            lambda: any(
                                "Charging" in r.connector_status.values()
                                for r in csms.stations.values()
                            )
                        )
                    else:
                        await csms.wait_until(
                            lambda: (
                                csms.received["StartTransaction"] >= OFFLINE_STATIONS
                                and csms.received["StopTransaction"] >= OFFLINE_STATIONS // 2
                            )
                        )
                        # The CSMS goes away: stations queue (and persist) what they do.
                        csms.accepting = False
                        async with trio.open_nursery() as nursery:
                            for sid in csms.connected():
                                nursery.start_soon(drop, csms, sid)
                        offline_since = time.time()

                        def queued_offline(states: dict[str, dict[str, Any]]) -> bool:
                            files = list(state_dir.glob("*.toml"))
                            if any(p.stat().st_mtime <= offline_since + 0.1 for p in files):
                                return False  # every station wrote a state taken offline
                            queue = [m["action"] for s in states.values() for m in s["queue"]]
                            return (
                                queue.count("StartTransaction") >= 3
                                and queue.count("StopTransaction") >= 3
                            )

                        await wait_for_states(state_dir, queued_offline)
                    await simulator.kill()
            persisted = Persisted.read(state_dir)
            if kill_when.startswith("offline"):
                assert persisted.count("StartTransaction") >= 3
                assert persisted.count("StopTransaction") >= 3
            ledger.run = 2
            csms.accepting = True
            log2 = tmp_path / "run-2.log"
            with log2.open("wb") as stderr:
                async with simulator_process(configs[1], stderr) as simulator:
                    await simulator.wait_output(booted(OFFLINE_STATIONS))
                    await csms.wait_until(lambda: persisted.messages() <= ledger.delivered(2))
                    refused = await stop_open_transactions(csms, ledger, persisted)
                    # Let the stations settle before the clean stop.
                    await csms.wait_until(
                        lambda: all(
                            set(r.connector_status.values()) == {"Available"}
                            for r in csms.stations.values()
                        )
                    )
                    await simulator.interrupt()
    runs = Counter((d.station_id, d.action, d.key) for d in ledger.deliveries)
    print(
        f"\n{kill_when}: persisted queue {dict(Counter(a for _, a, _ in persisted.messages()))}, "
        f"open transactions {len(persisted.open_starts)}, "
        f"started {len(started_transactions(ledger, persisted))}, "
        f"delivered twice {sum(n > 1 for n in runs.values())}, refused {len(refused)}"
    )
    assert refused == []
    assert_at_least_once(ledger, persisted)
    assert csms.violations == []
    problems, known = log_problems(log1)
    assert problems == []
    assert_clean_log(log2)
    assert known == [], f"station(s) crashed when the CSMS dropped them: {known}"


# -- ChangeConfiguration survives a restart ----------------------------------------------------

CHANGES = {
    "MeterValueSampleInterval": "17",
    "MeterValuesSampledData": "Energy.Active.Import.Register,Voltage",
    "LocalPreAuthorize": "true",
}


def configured(state: dict[str, Any]) -> bool:
    """Whether the persisted OCPP configuration holds every value of CHANGES."""
    values = {entry["key"]: entry.get("value") for entry in state.get("configuration", [])}
    return all(values.get(k) == v for k, v in CHANGES.items())


@pytest.mark.integration
@pytest.mark.parametrize("stop", ["SIGINT", "SIGKILL"])
async def test_change_configuration_survives_a_restart(tmp_path: Path, stop: str) -> None:
    csms = EmbeddedCsms()
    state_dir = tmp_path / "state"
    with trio.fail_after(30):
        async with serving(csms) as url:
            config = write_site(
                tmp_path / "site.toml",
                template=write_template(tmp_path / "templates", atg=False),
                count=1,
                state_dir=state_dir,
                url=url,
            )
            with (tmp_path / "run-1.log").open("wb") as stderr:
                async with simulator_process(config, stderr) as simulator:
                    await simulator.wait_output(booted(1))
                    (sid,) = csms.connected()
                    for key, value in CHANGES.items():
                        answer = await csms.call(
                            sid, "ChangeConfiguration", {"key": key, "value": value}
                        )
                        assert answer == {"status": "Accepted"}, key
                    if stop == "SIGINT":
                        await simulator.interrupt()
                    else:
                        # Written on its own (debounced), after which a kill -9 cannot lose it.
                        await wait_for_states(state_dir, lambda states: configured(states[sid]))
                        await simulator.kill()
            assert configured(read_states(state_dir)[sid])
            with (tmp_path / "run-2.log").open("wb") as stderr:
                async with simulator_process(config, stderr) as simulator:
                    await simulator.wait_output(booted(1))
                    answer = await csms.call(sid, "GetConfiguration", {"key": list(CHANGES)})
                    await simulator.interrupt()
    assert {e["key"]: e["value"] for e in answer["configurationKey"]} == CHANGES
    assert not answer.get("unknownKey")
    assert_clean_log(tmp_path / "run-1.log")
    assert_clean_log(tmp_path / "run-2.log")
    assert csms.violations == []


# -- unit: the state text cache and the fleet's state writer ------------------------------------


def content(path: Path) -> bytes | None:
    """The bytes of a file, None when it does not exist."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def names(directory: Path) -> list[str]:
    """The names in a directory, sorted."""
    return sorted(p.name for p in directory.iterdir())


def assert_text_is_the_full_render(station: Station) -> str:
    """The cached text is tomli_w's text of the whole state, and reads back as `to_state()`."""
    text = station.state_text()
    full = {"version": 1, **station.to_state()}
    assert text == tomli_w.dumps(full)
    assert tomllib.loads(text) == full
    return text


def test_the_cached_state_text_equals_a_full_render_after_each_kind_of_change() -> None:
    station = make_station(
        shipped_template("ac-3phase-2conn-atg.toml", ocpp_persistent_configuration=True),
        default_connect(),
    )
    assert_text_is_the_full_render(station)
    rendered = station._state_text.rendered
    assert_text_is_the_full_render(station)
    assert station._state_text.rendered == rendered  # nothing changed: nothing rendered
    profile = {
        "chargingProfileId": 5,
        "stackLevel": 1,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "startSchedule": "2026-01-01T00:00:00Z",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}],
        },
    }
    changes: list[tuple[str, Callable[[], object]]] = [
        ("configuration", lambda: station.configuration.change("MeterValueSampleInterval", "17")),
        ("vendor key", lambda: station.configuration.set("VendorThing", 'with "quotes"')),
        ("energy", lambda: setattr(station.meters[1], "energy_register_wh", 1234.5)),
        (
            "transaction",
            lambda: setattr(
                station.connectors[1],
                "transaction",
                Transaction(
                    local_id=1,
                    connector_id=1,
                    id_tag="TAG-1",
                    meter_start=10,
                    start_timestamp="2026-01-01T00:00:00.000Z",
                ),
            ),
        ),
        ("open_tx", lambda: station.tx_ids.__setitem__(1, None)),
        ("tx id", lambda: station.tx_ids.__setitem__(1, 77)),
        ("next_local_tx", lambda: setattr(station, "next_local_tx", 1)),
        ("queue", lambda: station.enqueue("StopTransaction", {"idTag": "TAG-1"}, 1)),
        ("auth cache", lambda: station.auth_cache.__setitem__("TAG-1", {"status": "Accepted"})),
        ("auth tag not bare", lambda: station.auth_cache.__setitem__("t ä\t", {"status": "x"})),
        ("availability", lambda: setattr(station.connectors[2], "availability", "Inoperative")),
        ("firmware", lambda: setattr(station, "firmware_version", "9.9")),
        (
            "local list",
            lambda: station.local_list.from_state(
                {"version": 3, "entries": [{"idTag": "TAG-9", "idTagInfo": {"status": "Blocked"}}]}
            ),
        ),
        (
            "profiles",
            lambda: station.profiles.from_state([{"connector_id": 1, "profile": profile}]),
        ),
        ("atg counter", lambda: setattr(station.atg.statuses[2], "skipped_transactions", 3)),
        ("atg date", lambda: setattr(station.atg.statuses[1], "start_date", "2026-01-01T00:00Z")),
        ("transaction ends", lambda: setattr(station.connectors[1], "transaction", None)),
        ("queue empties", lambda: station.queue.pop()),
        ("auth cache cleared", station.clear_authorization_cache),
    ]
    for what, change in changes:
        before = station.state_text()
        change()
        after = assert_text_is_the_full_render(station)
        assert after != before, what
    # A change of one connector renders that connector's table again, not the others.
    rendered = station._state_text.rendered
    station.meters[2].energy_register_wh += 1.0
    assert_text_is_the_full_render(station)
    assert station._state_text.rendered == rendered + 1


def test_a_state_without_persistent_configuration_renders_the_same_as_tomli_w() -> None:
    station = make_station(shipped_template(ocpp_persistent_configuration=False), default_connect())
    assert "configuration" not in station.to_state()
    assert_text_is_the_full_render(station)


@pytest.mark.parametrize(
    "document",
    [
        {"a": 1, "b": 2.5, "c": True, "d": "plain", "e": {"f": {"g": False}}, "h": {}},
        {"t": {"x": {}, "y": {"z": 1}}},
        {"t": {"u": 1, "v": {"w": "x"}}},
        {"s": 'quote " and \\ backslash', "c": "tab\there", "n": "new\nline", "del": "\x7f"},
        {"not bare": 1, "": 2},
        {"f": float("inf"), "g": -0.0, "h": 1e300, "i": -(2**63)},
        {"array": [1, 2], "aot": [{"a": 1}], "empty": []},
        {"u": "ünïcode ✓"},
    ],
)
def test_the_fast_table_writer_writes_what_tomli_w_writes(document: dict[str, Any]) -> None:
    text = StateText().render(document)
    assert text == tomli_w.dumps(document)
    assert tomllib.loads(text) == tomllib.loads(tomli_w.dumps(document))


async def test_concurrent_state_writes_are_batched_and_each_returns_with_its_file_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[set[Path]] = []
    on_disk: dict[Path, bytes] = {}

    def recording_write_batch(items: Mapping[Path, bytes]) -> dict[Path, OSError]:
        time.sleep(0.02)  # a slow disk: the next writes pile up meanwhile
        errors = _state_writer.write_batch(items)
        for path in items:
            on_disk[path] = path.read_bytes()
        batches.append(set(items))
        return errors

    monkeypatch.setattr(trio.to_thread, "run_sync", _threads_via(recording_write_batch))
    writer = StateWriter()
    paths = [tmp_path / "state" / f"{i:04x}.toml" for i in range(20)]

    async def write_twice(path: Path) -> None:
        for round_ in (1, 2):
            data = f"version = 1\nround = {round_}\n".encode()
            await writer.write(path, data)
            # Returned: the data is the file's, written and renamed by a finished batch.
            assert content(path) == data == on_disk[path]

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for path in paths:
                nursery.start_soon(write_twice, path)
    assert sum(len(b) for b in batches) == 40
    assert len(batches) < 10  # (one batch per write would be 40)
    assert writer.statistics() == {"batches": len(batches), "files": 40}
    for path in paths:
        assert load_state(path) == {"version": 1, "round": 2}
        # The spare keeps the previous version (the next write's temp file); startup cleans it.
        assert _state_writer.spare_path(path).read_bytes() == b"version = 1\nround = 1\n"
    assert remove_temp_files(tmp_path / "state", paths) == 20
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == sorted(p.name for p in paths)


def _threads_via(
    function: Callable[[Mapping[Path, bytes]], dict[Path, OSError]],
) -> Callable[..., Any]:
    """A stand-in for trio.to_thread.run_sync that runs `function` instead of write_batch."""
    run_sync = trio.to_thread.run_sync

    async def run(fn: Callable[..., Any], *args: Any) -> Any:
        assert fn is _state_writer.write_batch
        return await run_sync(function, *args)

    return run


async def test_a_cancelled_state_write_is_withdrawn_unless_its_batch_is_being_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = trio.Event()
    token = trio.lowlevel.current_trio_token()

    def slow_write_batch(items: Mapping[Path, bytes]) -> dict[Path, OSError]:
        token.run_sync_soon(started.set)
        time.sleep(0.1)
        return _state_writer.write_batch(items)

    monkeypatch.setattr(trio.to_thread, "run_sync", _threads_via(slow_write_batch))
    writer = StateWriter()
    first, second = tmp_path / "a.toml", tmp_path / "b.toml"
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.write, first, b"version = 1\n")
            await started.wait()  # the first batch is in the thread now
            with trio.move_on_after(0.01) as waiting:
                await writer.write(second, b"version = 1\n")  # pending behind it: withdrawn
            assert waiting.cancelled_caught
        assert first.exists()
        assert not second.exists()
        # Two writes pile up behind a batch; when theirs starts, both are cancelled: the one
        # that leads writes it, the other waits for it. Neither returns before its file is on
        # disk.
        started = trio.Event()
        third, fourth = tmp_path / "c.toml", tmp_path / "d.toml"
        seen: dict[Path, bytes | None] = {}

        async def write_seen(path: Path, scope: trio.CancelScope) -> None:
            with scope:
                try:
                    await writer.write(path, b"version = 1\nx = 2\n")
                finally:
                    seen[path] = content(path)

        scopes = {third: trio.CancelScope(), fourth: trio.CancelScope()}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.write, first, b"version = 1\nx = 1\n")
            await started.wait()
            started = trio.Event()
            for path, scope in scopes.items():
                nursery.start_soon(write_seen, path, scope)
            await trio.testing.wait_all_tasks_blocked()
            await started.wait()  # their batch is in the thread now
            for scope in scopes.values():
                scope.cancel()
        assert seen == dict.fromkeys(scopes, b"version = 1\nx = 2\n")
    assert writer.statistics() == {"batches": 3, "files": 4}


async def test_a_failed_state_write_fails_only_its_own_file(tmp_path: Path) -> None:
    writer = StateWriter()
    (tmp_path / "blocker").write_bytes(b"")  # a file where a directory should be
    good, bad = tmp_path / "good.toml", tmp_path / "blocker" / "bad.toml"
    results: dict[Path, str] = {}

    async def write(path: Path) -> None:
        try:
            await writer.write(path, b"version = 1\n")
        except OSError as exc:
            results[path] = type(exc).__name__
        else:
            results[path] = "ok"

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(write, good)
            nursery.start_soon(write, bad)
    assert results == {good: "ok", bad: "NotADirectoryError"}
    assert good.read_bytes() == b"version = 1\n"


def test_without_rename_exchange_a_state_write_renames_and_keeps_no_spare(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_state_writer, "_renameat2", None)
    path = tmp_path / "0123abcd.toml"
    for n in range(3):
        assert _state_writer.write_batch({path: f"version = 1\nn = {n}\n".encode()}) == {}
        assert load_state(path) == {"version": 1, "n": n}
        assert [p.name for p in tmp_path.iterdir()] == [path.name]


async def test_a_station_flush_is_on_disk_when_it_returns_and_a_stop_leaves_no_spare(
    tmp_path: Path,
) -> None:
    path = tmp_path / "station.toml"
    station = make_station(shipped_template(), default_connect(), state_path=path)
    with trio.fail_after(10):
        for local_id in (1, 2):
            station.next_local_tx = local_id
            station.persist()
            await station.flush_state()  # real clock: through the fleet's state writer
            assert load_state(path) == {"version": 1, **station.to_state()}
    assert _state_writer.spare_path(path).exists()
    station.save_now()
    assert names(tmp_path) == [path.name]
    assert load_state(path) == {"version": 1, **station.to_state()}


# -- unit: soon and lazy writes ------------------------------------------------------------------


async def test_lazy_changes_wait_for_their_debounce_or_ride_along_with_a_soon_one(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    from evsim_trio.station._state_io import LAZY_DEBOUNCE, PERSIST_DEBOUNCE

    path = tmp_path / "station.toml"
    station = make_station(
        shipped_template(),
        lambda url, protocols: None,
        state_path=path,  # type: ignore[arg-type,return-value]
    )

    def saved_cache() -> dict[str, Any]:
        if not path.exists():
            return {}
        return dict(tomllib.loads(path.read_text()).get("auth_cache", {}))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(station.run_persistence)
        # A lazy change alone: not written after the soon debounce, written once it is due.
        station.auth_cache["TAG-1"] = {"status": "Accepted"}
        station.persist_lazily()
        await trio.sleep(PERSIST_DEBOUNCE * 3)
        assert saved_cache() == {}
        await trio.sleep(LAZY_DEBOUNCE - PERSIST_DEBOUNCE * 3 + 0.01)
        assert saved_cache() == {"TAG-1": {"status": "Accepted"}}
        # A lazy change, then a soon one: both on disk within the soon debounce of the latter.
        station.auth_cache["TAG-2"] = {"status": "Blocked"}
        station.persist_lazily()
        await trio.sleep(1.0)
        station.firmware_version = "9.9"
        station.persist()
        await trio.sleep(PERSIST_DEBOUNCE + 0.01)
        assert "TAG-2" in saved_cache()
        assert tomllib.loads(path.read_text())["firmware_version"] == "9.9"
        # A flush takes pending lazy changes along, and the debounce starts again after it.
        station.auth_cache["TAG-3"] = {"status": "Accepted"}
        station.persist_lazily()
        await station.flush_state()
        assert "TAG-3" in saved_cache()
        station.auth_cache["TAG-4"] = {"status": "Accepted"}
        station.persist_lazily()
        await trio.sleep(LAZY_DEBOUNCE - 0.5)
        assert "TAG-4" not in saved_cache()
        await trio.sleep(1.0)
        assert "TAG-4" in saved_cache()
        nursery.cancel_scope.cancel()
