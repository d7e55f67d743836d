"""The automatic transaction generator (ATG): random transactions, one loop per connector.

BEHAVIOUR.md, "Automatic transaction generator". The loop runs against the small `AtgHost`
protocol, not the station class, so it is tested with a fake host under a mock clock.

Notes where the reference behaviour needed a decision:

- All waiting and the stop deadline use `trio.current_time()`; the dates in the status are OCPP
  timestamps of the station clock (`_clock.utc_now`, wall time that follows trio's clock), for
  display only.
- A transaction started before the deadline runs its whole drawn duration and is then stopped
  (as the reference does); no transaction starts at or after the deadline, and a delay that would
  end there is cut short so the loop returns at the deadline itself.
- Stopping the ATG (cancelling the loop's scope) takes effect at once. A transaction running at
  that moment is left running, as the reference leaves it: it is the station's (or the user's)
  to stop, and the ATG does not send a StopTransaction on its way out.
- An Authorize that is not Accepted counts a rejected authorize request and ends that attempt:
  no StartTransaction is sent and no start transaction counter moves (as the reference counts).
- `AtgController` gives every connector loop its own random stream, drawn from the host's
  stream when the loop is started: trio runs tasks woken at the same instant in a random order,
  so connectors sharing one stream would not replay the same schedule from the same seed.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any, Protocol

import attrs
import trio

from evsim_trio._names import camel
from evsim_trio.config import AtgConfig
from evsim_trio.station._clock import format_timestamp, utc_now

log = logging.getLogger(__name__)

__all__ = [
    "AtgConnectorStatus",
    "AtgController",
    "AtgHost",
    "RoundRobin",
    "pick_id_tag",
    "run_atg_connector",
]


class AtgHost(Protocol):
    """What the ATG needs from a station."""

    @property
    def station_id(self) -> str:
        """The station id, for log lines."""

    @property
    def index(self) -> int:
        """The station's 1-based index in its template entry (connector-affinity tags)."""

    @property
    def rng(self) -> random.Random:
        """The station's seeded random stream."""

    @property
    def id_tags(self) -> Sequence[str]:
        """The id tags of the template's authorization file."""

    def is_accepted(self) -> bool:
        """True while the station is registered Accepted and may send transaction messages."""

    async def wait_accepted(self) -> None:
        """Return once `is_accepted()` is true."""

    def is_connector_available(self, connector_id: int) -> bool:
        """True while the connector's status is Available."""

    async def wait_connector_available(self, connector_id: int) -> None:
        """Return once the connector's status is Available."""

    def connector_has_transaction(self, connector_id: int) -> bool:
        """True while a transaction runs on the connector."""

    async def authorize(self, id_tag: str) -> str:
        """Authorize `id_tag`; the idTagInfo status ("Accepted", "Invalid", ...)."""

    async def start_transaction(
        self, connector_id: int, id_tag: str, *, authorize: bool | None = None
    ) -> bool:
        """Start a transaction; False when refused (id tag rejected, connector busy...)."""

    async def stop_transaction(self, connector_id: int, reason: str = "Local") -> bool:
        """Stop the connector's transaction; False when the CSMS did not accept the id tag."""

    def atg_changed(self) -> None:
        """ATG counters or state changed: persist and refresh the UI."""


def _ocpp_now(offset_s: float = 0.0) -> str:
    """Station time now (plus `offset_s`) as an OCPP timestamp."""
    return format_timestamp(utc_now() + timedelta(seconds=offset_s))


_DATES = ("start_date", "last_run_date", "stop_date", "stopped_date")
_COUNTERS = (
    "skipped_consecutive_transactions",
    "skipped_transactions",
    "authorize_requests",
    "accepted_authorize_requests",
    "rejected_authorize_requests",
    "start_transaction_requests",
    "accepted_start_transaction_requests",
    "rejected_start_transaction_requests",
    "stop_transaction_requests",
    "accepted_stop_transaction_requests",
    "rejected_stop_transaction_requests",
)


@attrs.define
class AtgConnectorStatus:
    """One connector's ATG state and counters; persisted, and shown by the UI in camelCase."""

    start: bool = False
    start_date: str | None = None
    last_run_date: str | None = None
    stop_date: str | None = None
    stopped_date: str | None = None
    skipped_consecutive_transactions: int = 0
    skipped_transactions: int = 0
    authorize_requests: int = 0
    accepted_authorize_requests: int = 0
    rejected_authorize_requests: int = 0
    start_transaction_requests: int = 0
    accepted_start_transaction_requests: int = 0
    rejected_start_transaction_requests: int = 0
    stop_transaction_requests: int = 0
    accepted_stop_transaction_requests: int = 0
    rejected_stop_transaction_requests: int = 0

    def to_state(self) -> dict[str, Any]:
        """Plain snake_case dict for the state file; unset dates are left out (TOML has no null)."""
        state: dict[str, Any] = {"start": self.start}
        state.update((name, getattr(self, name)) for name in _DATES if getattr(self, name))
        state.update((name, getattr(self, name)) for name in _COUNTERS)
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> AtgConnectorStatus:
        """Rebuild from `to_state()` output; missing keys take defaults, unknown keys are ignored.

        Raises ValueError naming the key when a value has the wrong type.
        """
        values: dict[str, Any] = {}
        start = state.get("start", False)
        if not isinstance(start, bool):
            raise ValueError(f"start: expected a boolean, got {start!r}")
        values["start"] = start
        for name in _DATES:
            value = state.get(name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name}: expected a timestamp string, got {value!r}")
            values[name] = value
        for name in _COUNTERS:
            value = state.get(name, 0)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}: expected an integer >= 0, got {value!r}")
            values[name] = value
        return cls(**values)

    def snapshot(self) -> dict[str, Any]:
        """The UI's view (camelCase, as the reference UI reads it); unset dates are left out."""
        view: dict[str, Any] = {"start": self.start}
        view.update((camel(name), getattr(self, name)) for name in _DATES if getattr(self, name))
        view.update((camel(name), getattr(self, name)) for name in _COUNTERS)
        return view


@attrs.define
class RoundRobin:
    """A station's place in its id tags for `round-robin`, shared by its connectors."""

    next_index: int = 0


def pick_id_tag(
    distribution: str,
    id_tags: Sequence[str],
    *,
    station_index: int,
    connector_id: int,
    rng: random.Random,
    rr_state: RoundRobin,
) -> str:
    """The idTag for the next ATG transaction.

    `round-robin` walks the station's tags in order (state in `rr_state`), `random` draws one
    from `rng`, `connector-affinity` always gives tag[(station index - 1 + connector id - 1) mod n].
    """
    if not id_tags:
        raise ValueError("no id tags to pick from")
    n = len(id_tags)
    if distribution == "round-robin":
        index = rr_state.next_index % n
        rr_state.next_index = (index + 1) % n
        return id_tags[index]
    if distribution == "random":
        return rng.choice(id_tags)
    if distribution == "connector-affinity":
        return id_tags[(station_index - 1 + connector_id - 1) % n]
    raise ValueError(f"unknown id tag distribution {distribution!r}")


def _mark_started(status: AtgConnectorStatus, stop_at: float) -> None:
    status.start = True
    status.start_date = _ocpp_now()
    status.stop_date = _ocpp_now(stop_at - trio.current_time())
    status.stopped_date = None
    status.skipped_consecutive_transactions = 0


def _mark_stopped(status: AtgConnectorStatus) -> None:
    status.start = False
    status.stopped_date = _ocpp_now()


async def _wait_ready(host: AtgHost, connector_id: int) -> None:
    """Until the station is Accepted and the connector Available, both at once."""
    while not (host.is_accepted() and host.is_connector_available(connector_id)):
        await host.wait_accepted()
        await host.wait_connector_available(connector_id)


async def run_atg_connector(
    host: AtgHost,
    config: AtgConfig,
    connector_id: int,
    status: AtgConnectorStatus,
    *,
    stop_at: float | None = None,
    rng: random.Random | None = None,
    round_robin: RoundRobin | None = None,
) -> None:
    """Generate transactions on one connector until `stop_at` (trio time); then return.

    `stop_at` defaults to now + `stop_after_hours`; pass the original one to resume a loop with
    its deadline. `rng` defaults to the host's stream; `round_robin` is the station's shared
    position (a private one if None). Cancel the caller's scope to stop at once.
    """
    label = f"{host.station_id}: ATG connector {connector_id}"
    if stop_at is None:
        stop_at = trio.current_time() + config.stop_after_hours * 3600.0
    rng = host.rng if rng is None else rng
    round_robin = RoundRobin() if round_robin is None else round_robin
    if not status.start:
        _mark_started(status, stop_at)
        host.atg_changed()
    log.info("%s: started, %.0f s to run", label, max(0.0, stop_at - trio.current_time()))
    try:
        if not host.id_tags:
            log.error("%s: no id tags in the authorization file; not starting", label)
            return
        if host.connector_has_transaction(connector_id):
            # A transaction resumed after a restart: the ATG adopts it, lets it run one drawn
            # duration and stops it, so that the connector joins the cycle again.
            await trio.sleep(rng.randint(config.min_duration, config.max_duration))
            if host.connector_has_transaction(connector_id):
                status.stop_transaction_requests += 1
                if await host.stop_transaction(connector_id, "Local"):
                    status.accepted_stop_transaction_requests += 1
                else:
                    status.rejected_stop_transaction_requests += 1
                host.atg_changed()
        while trio.current_time() < stop_at:
            with trio.move_on_at(stop_at):
                await _wait_ready(host, connector_id)
            if trio.current_time() >= stop_at:
                break
            delay = rng.randint(
                config.min_delay_between_two_transactions,
                config.max_delay_between_two_transactions,
            )
            if trio.current_time() + delay >= stop_at:
                await trio.sleep_until(stop_at)
                break
            await trio.sleep(delay)
            if not (host.is_accepted() and host.is_connector_available(connector_id)):
                continue  # things changed during the delay: wait again, then a fresh delay
            if rng.random() < config.probability_of_start:
                status.skipped_consecutive_transactions = 0
                id_tag = pick_id_tag(
                    config.id_tag_distribution,
                    host.id_tags,
                    station_index=host.index,
                    connector_id=connector_id,
                    rng=rng,
                    rr_state=round_robin,
                )
                await _transaction(host, config, connector_id, status, id_tag, rng, label)
            else:
                status.skipped_consecutive_transactions += 1
                status.skipped_transactions += 1
                log.debug(
                    "%s: skipped (%d in a row, %d in all)",
                    label,
                    status.skipped_consecutive_transactions,
                    status.skipped_transactions,
                )
            status.last_run_date = _ocpp_now()
            host.atg_changed()
        log.info("%s: stop time reached", label)
    finally:
        if status.start:
            _mark_stopped(status)
            host.atg_changed()
        log.info("%s: stopped", label)


async def _transaction(
    host: AtgHost,
    config: AtgConfig,
    connector_id: int,
    status: AtgConnectorStatus,
    id_tag: str,
    rng: random.Random,
    label: str,
) -> None:
    """Authorize (when required), start, run for a drawn duration, stop with reason Local."""
    if config.require_authorize:
        status.authorize_requests += 1
        if await host.authorize(id_tag) != "Accepted":
            status.rejected_authorize_requests += 1
            log.info("%s: id tag %s not authorized", label, id_tag)
            return
        status.accepted_authorize_requests += 1
    status.start_transaction_requests += 1
    # Authorization, when wanted, was done just above: the station must not ask again.
    started = await host.start_transaction(connector_id, id_tag, authorize=False)
    if not started:
        status.rejected_start_transaction_requests += 1
        log.info("%s: transaction with id tag %s refused", label, id_tag)
        return
    status.accepted_start_transaction_requests += 1
    host.atg_changed()
    duration = rng.randint(config.min_duration, config.max_duration)
    log.info("%s: transaction with id tag %s for %d s", label, id_tag, duration)
    await trio.sleep(duration)
    if not host.connector_has_transaction(connector_id):
        log.info("%s: transaction already ended elsewhere", label)
        return
    status.stop_transaction_requests += 1
    if await host.stop_transaction(connector_id, "Local"):
        status.accepted_stop_transaction_requests += 1
    else:
        status.rejected_stop_transaction_requests += 1


@attrs.define(eq=False)
class _Run:
    scope: trio.CancelScope
    done: trio.Event = attrs.field(factory=trio.Event)

    @property
    def live(self) -> bool:
        return not (self.scope.cancel_called or self.done.is_set())


class AtgController:
    """A station's ATG: one restartable loop per connector, in the nursery of `run()`.

    Start it with `await nursery.start(controller.run)`; then `start()` / `stop()` act at once
    (synchronously) on all or some connectors. The station calls `connection_lost()` when its
    link drops and `connection_restored()` after the next Accepted boot; with
    `stop_on_connection_failure` the loops stop on the first and resume on the second, keeping
    their original stop time.
    """

    def __init__(
        self,
        host: AtgHost,
        config: AtgConfig,
        connector_ids: Iterable[int],
        *,
        statuses: Mapping[int, AtgConnectorStatus] | None = None,
    ) -> None:
        self.host = host
        self.config = config
        self.round_robin = RoundRobin()
        given = statuses or {}
        self.statuses: dict[int, AtgConnectorStatus] = {}
        for cid in sorted(connector_ids):
            if cid > 0:
                status = given.get(cid)
                self.statuses[cid] = AtgConnectorStatus() if status is None else status
        for status in self.statuses.values():
            status.start = False  # a loaded status may say so, but no loop runs yet
        self._runs: dict[int, _Run] = {}
        self._deadlines: dict[int, float] = {}
        self._suspended: set[int] = set()
        self._nursery: trio.Nursery | None = None

    @property
    def running(self) -> frozenset[int]:
        """Connector ids whose loop is running (not stopped, not finished)."""
        return frozenset(cid for cid, run in self._runs.items() if run.live)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host the connector loops until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None

    def _ids(self, connector_ids: Iterable[int] | None) -> list[int]:
        if connector_ids is None:
            return list(self.statuses)
        ids = list(connector_ids)
        unknown = [cid for cid in ids if cid not in self.statuses]
        if unknown:
            raise ValueError(f"no ATG on connector(s) {', '.join(map(str, unknown))}")
        return ids

    def start(
        self, connector_ids: Iterable[int] | None = None, *, keep_deadline: bool = False
    ) -> list[int]:
        """Start the loops (all connectors by default); the ids actually started.

        A fresh start runs for `stop_after_hours` from now; `keep_deadline` reuses the stop time
        of the connector's previous run, if it had one. Raises ValueError for unknown ids and
        RuntimeError when `run()` is not running.
        """
        nursery = self._nursery
        if nursery is None:
            raise RuntimeError("AtgController.run() is not running")
        started: list[int] = []
        for cid in self._ids(connector_ids):
            self._suspended.discard(cid)
            previous = self._runs.get(cid)
            if previous is not None and previous.live:
                log.info("%s: ATG connector %d: already running", self.host.station_id, cid)
                continue
            stop_at = self._deadlines.get(cid) if keep_deadline else None
            if stop_at is None:
                stop_at = trio.current_time() + self.config.stop_after_hours * 3600.0
            self._deadlines[cid] = stop_at
            pending = previous if previous is not None and not previous.done.is_set() else None
            if pending is None:
                # Shown at once; with a loop still winding down, the new loop marks it itself.
                _mark_started(self.statuses[cid], stop_at)
            run = _Run(trio.CancelScope())
            self._runs[cid] = run
            rng = random.Random(self.host.rng.getrandbits(64))
            nursery.start_soon(self._run_connector, cid, run, pending, stop_at, rng)
            started.append(cid)
        if started:
            self.host.atg_changed()
        return started

    def stop(self, connector_ids: Iterable[int] | None = None) -> list[int]:
        """Stop the loops at once (all connectors by default); the ids actually stopped.

        Running transactions are left running.
        """
        stopped: list[int] = []
        for cid in self._ids(connector_ids):
            self._suspended.discard(cid)
            run = self._runs.get(cid)
            if run is None or not run.live:
                continue
            run.scope.cancel()
            _mark_stopped(self.statuses[cid])
            stopped.append(cid)
        if stopped:
            self.host.atg_changed()
        return stopped

    def connection_lost(self) -> None:
        """The link dropped: with `stop_on_connection_failure`, stop the loops until restored."""
        if not self.config.stop_on_connection_failure:
            return  # loops pause by themselves until the station is Accepted again
        running = self.running
        self.stop(running)
        self._suspended |= running

    def connection_restored(self) -> None:
        """Accepted again: resume the loops `connection_lost()` stopped, with their stop time."""
        suspended = sorted(self._suspended)
        self._suspended.clear()
        if suspended and self._nursery is not None:
            self.start(suspended, keep_deadline=True)

    async def _run_connector(
        self,
        connector_id: int,
        run: _Run,
        pending: _Run | None,
        stop_at: float,
        rng: random.Random,
    ) -> None:
        try:
            with run.scope:
                if pending is not None:
                    await pending.done.wait()  # its last status writes come before ours
                await run_atg_connector(
                    self.host,
                    self.config,
                    connector_id,
                    self.statuses[connector_id],
                    stop_at=stop_at,
                    rng=rng,
                    round_robin=self.round_robin,
                )
        finally:
            run.done.set()
            if self._runs.get(connector_id) is run:
                del self._runs[connector_id]
