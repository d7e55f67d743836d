"""The simulator: the embedded CSMS (when enabled) and the fleet of stations, in one nursery."""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import attrs
import trio

from evsim_trio.config import Site
from evsim_trio.csms import EmbeddedCsms
from evsim_trio.simulator._build import build_specs
from evsim_trio.simulator._fleet_metrics import FleetMetrics, fleet_metrics
from evsim_trio.simulator._statistics import FleetStatistics, collect_statistics
from evsim_trio.station import (
    Connect,
    Station,
    StationSpec,
    StationState,
    remove_temp_files,
    set_aside,
)

log = logging.getLogger(__name__)

# How long stations get to close their sockets cleanly before they are cancelled.
SHUTDOWN_GRACE = 1.5


@attrs.frozen
class FleetCounts:
    """How many stations are in each state, plus link counters summed over the fleet."""

    total: int
    connecting: int
    booted: int
    failed: int
    stopped: int
    calls_sent: int
    call_errors: int
    call_timeouts: int
    reconnects: int
    transactions_started: int = 0
    transactions_stopped: int = 0
    energy_wh: float = 0.0
    queued: int = 0

    def line(self) -> str:
        """The one-line live status."""
        return (
            f"stations {self.total}: {self.connecting} connecting, {self.booted} booted, "
            f"{self.failed} failed, {self.stopped} stopped | calls {self.calls_sent} "
            f"(errors {self.call_errors}, timeouts {self.call_timeouts}) | "
            f"sessions {self.transactions_started} | {self.energy_wh / 1000:.1f} kWh | "
            f"reconnects {self.reconnects} | queued {self.queued}"
        )


def resolve_seed(site: Site, seed: int | None) -> int:
    """`seed`, else the config's, else a random one (logged, so the run can be repeated)."""
    if seed is None:
        seed = site.config.simulator.seed
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
        log.info("no seed configured; using seed %d", seed)
    return seed


class ChangeNotifier:
    """Change notifications of a fleet: `notify_changed()` wakes `wait_changed()` waiters."""

    _changed: trio.Event

    def counts(self) -> FleetCounts:
        """Stations by state and fleet-wide counters (the subclass's)."""
        raise NotImplementedError

    def notify_changed(self) -> None:
        """Wake `wait_changed()` waiters (the UI's refresh push)."""
        self._changed.set()
        self._changed = trio.Event()

    async def wait_changed(self) -> None:
        """Wait until any station changes state (or, with workers, a worker reports)."""
        await self._changed.wait()

    async def wait_until(self, predicate: Callable[[FleetCounts], bool]) -> None:
        """Wait until `predicate(self.counts())` is true; re-checked on every change."""
        while not predicate(self.counts()):
            await self.wait_changed()

    async def wait_settled(self) -> None:
        """Wait until every station is booted."""
        await self.wait_until(lambda counts: counts.booted == counts.total)


class Simulator(ChangeNotifier):
    """Builds the fleet from a site config and runs it, with the embedded CSMS if enabled."""

    def __init__(
        self,
        site: Site,
        *,
        seed: int | None = None,
        state_dir: Path | None = None,
        connect: Connect | None = None,
        shard: tuple[int, int] | None = None,
        worker: tuple[int, int] | None = None,
        csms_url: str | None = None,
    ) -> None:
        self.site = site
        # (K, N): run only the K-th of N disjoint slices of the fleet (see `plan_fleet`).
        self.shard = shard
        # (J, W): in a worker process, the J-th of W slices of that shard.
        self.worker = worker
        # In a worker process: the main process's embedded CSMS (none is started here).
        self._csms_url = csms_url
        self.seed = resolve_seed(site, seed)
        self.state_dir = state_dir or Path(site.config.simulator.state_dir)
        self._connect = connect
        self.csms: EmbeddedCsms | None = None
        self.stations: list[Station] = []
        self._changed = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._running = 0
        self._idle = trio.Event()
        self._idle.set()
        self._ramp: set[int] = set()  # ids of the stations the start ramp has yet to start

    @property
    def csms_url(self) -> str | None:
        """The embedded CSMS URL once it serves, else None."""
        if self._csms_url is not None:
            return self._csms_url
        return self.csms.url if self.csms is not None and self.csms.port is not None else None

    async def run(
        self, *, task_status: trio.TaskStatus[Simulator] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Start the CSMS, build and start the stations; `task_status.started(self)` once all run.

        Runs until cancelled, or until `shutdown()`.
        """
        config = self.site.config
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if config.csms.enabled and self._csms_url is None:
                self.csms = EmbeddedCsms(heartbeat_interval=config.csms.heartbeat_interval)
                await nursery.start(self.csms.serve, config.csms.host, config.csms.port)
                log.info("embedded CSMS listening on %s", self.csms_url)
            specs = await trio.to_thread.run_sync(
                lambda: build_specs(
                    self.site,
                    seed=self.seed,
                    state_dir=self.state_dir,
                    embedded_csms_url=self.csms_url,
                    shard=self.shard,
                    worker=self.worker,
                )
            )
            # Before any station runs: temporary files its writes left when a kill cut them.
            paths = [spec.state_path for spec in specs if spec.state_path is not None]
            if paths and self.state_dir.is_dir():
                removed = remove_temp_files(self.state_dir, paths)
                if removed:
                    log.info("removed %d temporary files of interrupted writes", removed)
            self.stations = [self.make_station(spec) for spec in specs]
            auto = [station for station in self.stations if station.spec.auto_start]
            rate = config.simulator.ramp_per_second
            if rate > 0:
                # A worker process starts its share of the fleet at its share of the rate.
                share = rate / self.worker[1] if self.worker is not None else rate
                nursery.start_soon(self._start_ramped, auto, share)
            else:
                for station in auto:
                    self.start_station(station)
            log.info("%d stations built, seed %d", len(self.stations), self.seed)
            task_status.started(self)
            await trio.sleep_forever()

    async def _start_ramped(self, stations: list[Station], per_second: float) -> None:
        """Start `stations` in order, `per_second` of them per second (on a steady schedule:
        a late tick starts the stations it owes at once)."""
        self._ramp.update(map(id, stations))
        began = trio.current_time()
        for count, station in enumerate(stations):
            await trio.sleep_until(began + count / per_second)
            if id(station) in self._ramp:
                self._ramp.discard(id(station))
                self.start_station(station)

    def leave_ramp(self, station: Station) -> None:
        """The UI started, stopped or deleted `station`: the start ramp leaves it alone."""
        self._ramp.discard(id(station))

    @property
    def running(self) -> bool:
        """Whether `run()` is running (stations can be started)."""
        return self._nursery is not None

    def make_station(self, spec: StationSpec) -> Station:
        """A station of this fleet (not started, not added to `stations`)."""
        try:
            station = Station(spec, connect=self._connect)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # A state file that parses but does not have the expected shape.
            if spec.state_path is None or spec.state is None:
                raise
            set_aside(spec.state_path, ".damaged", f"station state not usable ({exc!r})")
            station = Station(attrs.evolve(spec, state=None), connect=self._connect)
        station.on_change = self._on_station_change
        return station

    def start_station(self, station: Station) -> None:
        """Run `station` in the simulator's nursery (the caller checks it is not running)."""
        assert self._nursery is not None, "the simulator is not running"
        if self._running == 0:
            self._idle = trio.Event()
        self._running += 1
        self._nursery.start_soon(self._run_station, station, name=f"station {station.station_id}")

    async def _run_station(self, station: Station) -> None:
        try:
            await station.run()
        finally:
            self._running -= 1
            if self._running == 0:
                self._idle.set()

    def _on_station_change(self, station: Station) -> None:
        del station
        self.notify_changed()

    def counts(self) -> FleetCounts:
        """Stations by state and fleet-wide link counters."""
        states: Counter[StationState] = Counter()
        calls = errors = timeouts = reconnects = started = stopped = queued = 0
        energy = 0.0
        for station in self.stations:
            states[station.state] += 1
            stats = station.stats
            calls += stats.calls_sent
            errors += stats.call_errors
            timeouts += stats.call_timeouts
            reconnects += max(0, stats.connects - 1)
            started += stats.transactions_started
            stopped += stats.transactions_stopped
            queued += len(station.queue)
            energy += station.energy_delivered_wh()
        return FleetCounts(
            total=len(self.stations),
            connecting=states[StationState.CONNECTING],
            booted=states[StationState.BOOTED],
            failed=states[StationState.FAILED],
            stopped=states[StationState.STOPPED],
            calls_sent=calls,
            call_errors=errors,
            call_timeouts=timeouts,
            reconnects=reconnects,
            transactions_started=started,
            transactions_stopped=stopped,
            energy_wh=energy,
            queued=queued,
        )

    def metrics_now(self) -> FleetMetrics:
        """The fleet's `/metrics` figures now."""
        return fleet_metrics(self.stations)

    async def refresh_metrics(self) -> None:
        """Nothing to fetch: `metrics_now` reads the stations (worker fleets fetch here)."""

    async def statistics(self, *, stations: bool = True) -> FleetStatistics:
        """Every station's figures and the fleet's, now (`stations=False`: the fleet's only)."""
        return collect_statistics(self.stations, stations_too=stations)

    async def shutdown(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Stop every station (clean close frames), waiting at most `grace` s, then cancel all."""
        for station in self.stations:
            station.stop()
        with trio.move_on_after(grace):
            await self._idle.wait()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
