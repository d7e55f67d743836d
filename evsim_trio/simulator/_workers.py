"""A fleet spread over worker processes (trio-parallel), run from the main process.

The main process runs the embedded CSMS (when enabled) and the UI; each of W workers runs
`trio.run` over its slice of the fleet (`plan_fleet(..., worker=(J, W))`: stations dealt
round-robin) and talks to the main process over a control channel (`_channel`). `WorkerFleet`
offers what the UI and the CLI use of an in-process `Simulator`: the command interface (routed
to the workers that own the stations, answers merged in fleet order), counts, change
notifications, statistics merged exactly (histograms add up), `/metrics`, and shutdown.

A worker that dies (killed, out of memory) is logged; its stations are then reported `failed`,
procedures on them fail with the reason, and the other workers go on.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs
import trio
import trio_parallel

from evsim_trio.config import LogSection, Site
from evsim_trio.csms import EmbeddedCsms
from evsim_trio.simulator._channel import Channel, ChannelClosed, Message
from evsim_trio.simulator._fleet_metrics import FleetMetrics, empty_metrics, merge_metrics
from evsim_trio.simulator._simulator import (
    SHUTDOWN_GRACE,
    ChangeNotifier,
    FleetCounts,
    resolve_seed,
)
from evsim_trio.simulator._statistics import (
    FleetStatistics,
    StationFigures,
    TrafficStatistics,
)
from evsim_trio.simulator._worker import WorkerArgs, worker_main
from evsim_trio.station import ocpp_timestamp

__all__ = ["AUTO_MIN_STATIONS", "RosterEntry", "WorkerFleet", "WorkerGone", "worker_count"]

log = logging.getLogger(__name__)

# `processes = "auto"`: workers only for fleets at least this large (a worker costs a Python
# process, ~40 MiB, and a second or so to start).
AUTO_MIN_STATIONS = 1000
# How long a worker gets to connect back and start its stations.
START_TIMEOUT = 120.0
# After the stations' grace: for the workers to send their figures and exit, then they are killed.
EXIT_GRACE = 2.5
# How long the main process waits for a worker's answer (a stopped or hung worker must not hang
# the UI): the longest procedure, a stop, waits 3 s for its stations.
CALL_TIMEOUT = 60.0


def worker_count(processes: int | str, stations: int) -> int:
    """How many worker processes `[workers] processes` means for a fleet of `stations`."""
    if processes == "auto":
        if stations < AUTO_MIN_STATIONS:
            return 0
        return max(1, min(os.cpu_count() or 1, stations))
    return min(int(processes), max(stations, 1))


class WorkerGone(Exception):
    """The worker process of these stations is not running (anymore)."""


def _retire() -> bool:
    """trio_parallel: a worker process serves one fleet slice, then exits."""
    return True


@attrs.define
class RosterEntry:
    """What the main process knows of a station that lives in a worker."""

    hash_id: str
    station_id: str
    index: int
    template_name: str
    worker: int
    order: int


@attrs.define(eq=False)
class _Pending:
    event: trio.Event = attrs.field(factory=trio.Event)
    reply: Message | None = None


@attrs.define(eq=False)
class Worker:
    """One worker process, as the main process sees it."""

    index: int
    channel: Channel | None = None
    pid: int | None = None
    started: trio.Event = attrs.field(factory=trio.Event)
    counts: dict[str, Any] = attrs.field(factory=dict)
    pending: dict[int, _Pending] = attrs.field(factory=dict)
    error: str | None = None  # set when the worker died
    final: Message | None = None  # its `bye`
    last_statistics: dict[str, Any] | None = None
    last_metrics: FleetMetrics | None = None

    @property
    def alive(self) -> bool:
        """Whether calls can be sent to it."""
        return self.channel is not None and self.error is None and self.final is None


class WorkerFleet(ChangeNotifier):
    """The fleet of a site config, spread over `processes` worker processes."""

    def __init__(
        self,
        site: Site,
        *,
        processes: int,
        seed: int | None = None,
        state_dir: Path | None = None,
        shard: tuple[int, int] | None = None,
        log_setup: tuple[LogSection, str | None] | None = None,
    ) -> None:
        if processes < 1:
            raise ValueError("a worker fleet needs at least one process")
        self.site = site
        self.shard = shard
        self.processes = processes
        self.seed = resolve_seed(site, seed)
        self.state_dir = state_dir or Path(site.config.simulator.state_dir)
        self._log_setup = log_setup
        self.call_timeout = CALL_TIMEOUT
        self.csms: EmbeddedCsms | None = None
        self.workers = [Worker(j) for j in range(processes)]
        self.roster: dict[str, RosterEntry] = {}
        self._ids = itertools.count(1)
        self._orders = itertools.count(10**9)  # stations added at run time come last
        self._changed = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._metrics: FleetMetrics = empty_metrics()
        self._token = secrets.token_hex(16)
        self._all_done = trio.Event()

    # -- what the UI and the CLI use -----------------------------------------------------

    @property
    def csms_url(self) -> str | None:
        """The embedded CSMS URL once it serves, else None."""
        return self.csms.url if self.csms is not None and self.csms.port is not None else None

    @property
    def running(self) -> bool:
        """Whether `run()` is running."""
        return self._nursery is not None

    def counts(self) -> FleetCounts:
        """The sum of the workers' latest counts; a dead worker's stations count as failed."""
        total: dict[str, Any] = {field.name: 0 for field in attrs.fields(FleetCounts)}
        total["energy_wh"] = 0.0
        for worker in self.workers:
            counts = dict(worker.final["counts"] if worker.final else worker.counts)
            if worker.error is not None:
                owned = len(self.owned_by(worker))
                counts.update(total=owned, failed=owned, connecting=0, booted=0, stopped=0)
            for name, value in counts.items():
                if name in total:
                    total[name] += value
        return FleetCounts(**total)

    def metrics_now(self) -> FleetMetrics:
        """The figures `refresh_metrics` fetched last."""
        return self._metrics

    async def refresh_metrics(self) -> None:
        """Fetch every worker's `/metrics` figures and merge them."""
        snapshots = await self.gather("_metrics", {})
        for worker, snapshot in snapshots:
            if snapshot is not None:
                worker.last_metrics = snapshot
        parts = []
        for worker in self.workers:
            part = worker.final["metrics"] if worker.final else worker.last_metrics
            if worker.error is not None:
                part = self._dead_metrics(worker)
            if part is not None:
                parts.append(part)
        self._metrics = merge_metrics(parts)

    def _dead_metrics(self, worker: Worker) -> FleetMetrics:
        """A dead worker's last figures, its stations failed and closed now."""
        owned = len(self.owned_by(worker))
        snapshot = merge_metrics([worker.last_metrics] if worker.last_metrics else [])
        snapshot["stations"] = {**dict.fromkeys(snapshot["stations"], 0), "failed": owned}
        snapshot["ws_states"] = {**dict.fromkeys(snapshot["ws_states"], 0), "closed": owned}
        snapshot["statuses"] = {}
        snapshot["sums"].update(active=0.0, power=0.0)
        return snapshot

    async def statistics(self, *, stations: bool = True) -> FleetStatistics:
        """Every worker's figures merged (a dead worker's: as last fetched)."""
        answers = await self.gather("_statistics", {"stations": stations})
        for worker, answer in answers:
            if answer is not None:
                worker.last_statistics = answer
        fleet = TrafficStatistics()
        figures: list[StationFigures] = []
        for worker in self.workers:
            data = worker.final["statistics"] if worker.final else worker.last_statistics
            if data is None:
                continue
            part = FleetStatistics.from_json(data)
            fleet.merge(part.fleet)
            figures += part.stations
        figures.sort(key=lambda f: self.order_of(f.hash_id))
        return FleetStatistics(ocpp_timestamp(), fleet, tuple(figures) if stations else ())

    def order_of(self, hash_id: str) -> int:
        """A station's place in fleet order (unknown ones last)."""
        entry = self.roster.get(hash_id)
        return entry.order if entry is not None else math.inf  # type: ignore[return-value]

    def owned_by(self, worker: Worker) -> list[str]:
        """The hashIds of the stations `worker` runs."""
        return [h for h, entry in self.roster.items() if entry.worker == worker.index]

    def ordered(self, hash_ids: Iterable[str]) -> list[str]:
        """`hash_ids` in fleet order."""
        return sorted(hash_ids, key=self.order_of)

    def worker_pids(self) -> list[int | None]:
        """The workers' process ids (None before a worker said hello)."""
        return [worker.pid for worker in self.workers]

    # -- talking to workers --------------------------------------------------------------

    async def call(self, worker: Worker, procedure: str, payload: dict[str, Any]) -> Any:
        """Run `procedure` in `worker`; its answer payload. Raises WorkerGone."""
        if not worker.alive or worker.channel is None:
            raise WorkerGone(self.gone_reason(worker))
        ident = next(self._ids)
        slot = worker.pending[ident] = _Pending()
        try:
            with trio.fail_after(self.call_timeout):
                await worker.channel.send(
                    {"t": "call", "id": ident, "procedure": procedure, "payload": payload}
                )
                await slot.event.wait()
        except ChannelClosed:
            raise WorkerGone(self.gone_reason(worker)) from None
        except trio.TooSlowError:
            raise WorkerGone(
                f"worker process {worker.index + 1} did not answer {procedure} "
                f"within {self.call_timeout:g} s"
            ) from None
        finally:
            worker.pending.pop(ident, None)
        reply = slot.reply
        if reply is None:
            raise WorkerGone(self.gone_reason(worker))
        if "error" in reply:
            raise RuntimeError(f"worker {worker.index + 1}: {reply['error']}")
        return reply.get("payload")

    def gone_reason(self, worker: Worker) -> str:
        """Why calls to `worker` cannot be made."""
        if worker.error is not None:
            return worker.error
        if worker.final is not None:
            return f"worker process {worker.index + 1} has stopped"
        return f"worker process {worker.index + 1} is not running"

    async def gather(
        self, procedure: str, payload: dict[str, Any], workers: Iterable[Worker] | None = None
    ) -> list[tuple[Worker, Any]]:
        """Call `procedure` on every live worker at once; `(worker, answer or None if gone)`."""
        targets = [w for w in (self.workers if workers is None else workers) if w.alive]
        answers: dict[int, Any] = {}

        async def one(worker: Worker) -> None:
            try:
                answers[worker.index] = await self.call(worker, procedure, payload)
            except WorkerGone:
                answers[worker.index] = None

        async with trio.open_nursery() as nursery:
            for worker in targets:
                nursery.start_soon(one, worker)
        return [(w, answers.get(w.index)) for w in targets]

    def adopt_roster(self, worker: Worker, roster: list[list[Any]]) -> None:
        """Make `roster` (the worker's stations, in its order) the worker's part of the fleet."""
        known = set(self.owned_by(worker))
        listed = set()
        for position, (hash_id, station_id, index, template_name) in enumerate(roster):
            listed.add(hash_id)
            entry = self.roster.get(hash_id)
            if entry is None:
                # At start: the position in the fleet plan (stations dealt round-robin).
                order = (
                    position * self.processes + worker.index
                    if worker.pid is None
                    else next(self._orders)
                )
                self.roster[hash_id] = RosterEntry(
                    hash_id, station_id, index, template_name, worker.index, order
                )
        for hash_id in known - listed:
            del self.roster[hash_id]

    # -- running -------------------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[WorkerFleet] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Start the CSMS and the workers; `task_status.started(self)` once every worker runs.

        Runs until cancelled, or until `shutdown()`. A worker that fails before it runs (a bad
        config, a state directory it cannot write) fails the whole run with its exception.
        """
        config = self.site.config
        async with (
            trio_parallel.open_worker_context(
                retire=_retire, grace_period=EXIT_GRACE, idle_timeout=math.inf
            ) as context,
            trio.open_nursery() as nursery,
        ):
            self._nursery = nursery
            if config.csms.enabled:
                self.csms = EmbeddedCsms(heartbeat_interval=config.csms.heartbeat_interval)
                await nursery.start(self.csms.serve, config.csms.host, config.csms.port)
                log.info("embedded CSMS listening on %s", self.csms_url)
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            address = listeners[0].socket.getsockname()[:2]
            nursery.start_soon(trio.serve_listeners, self._accept, listeners)
            limiter = trio.CapacityLimiter(self.processes)
            remaining = [len(self.workers)]
            for worker in self.workers:
                args = WorkerArgs(
                    site=self.site,
                    seed=self.seed,
                    state_dir=self.state_dir,
                    shard=self.shard,
                    worker=(worker.index + 1, self.processes),
                    csms_url=self.csms_url,
                    address=(str(address[0]), int(address[1])),
                    token=self._token,
                    log=self._log_setup,
                )
                nursery.start_soon(self._run_worker, context, limiter, worker, args, remaining)
            with trio.fail_after(START_TIMEOUT):
                for worker in self.workers:
                    await worker.started.wait()
            log.info(
                "%d stations in %d worker processes, seed %d",
                len(self.roster),
                self.processes,
                self.seed,
            )
            task_status.started(self)
            await trio.sleep_forever()

    async def _run_worker(
        self,
        context: trio_parallel.WorkerContext,
        limiter: trio.CapacityLimiter,
        worker: Worker,
        args: WorkerArgs,
        remaining: list[int],
    ) -> None:
        try:
            await context.run_sync(worker_main, args, kill_on_cancel=True, limiter=limiter)
        except trio_parallel.BrokenWorkerError as exc:
            self._died(worker, f"worker process {worker.index + 1} died ({exc})")
            if not worker.started.is_set():
                raise
        except Exception as exc:
            if not worker.started.is_set():
                raise  # e.g. BuildError: the run fails as it would in-process
            self._died(worker, f"worker process {worker.index + 1} failed: {exc!r}")
        else:
            if worker.final is None:
                self._died(worker, f"worker process {worker.index + 1} exited")
        finally:
            remaining[0] -= 1
            if remaining[0] == 0:
                self._all_done.set()

    def _died(self, worker: Worker, reason: str) -> None:
        if worker.error is not None or worker.final is not None:
            return
        worker.error = reason
        owned = len(self.owned_by(worker))
        log.error("%s: its %d stations are marked failed", reason, owned)
        self._fail_pending(worker)
        self.notify_changed()

    def _fail_pending(self, worker: Worker) -> None:
        for slot in worker.pending.values():
            slot.event.set()
        worker.pending.clear()

    async def _accept(self, stream: trio.SocketStream) -> None:
        channel = Channel(stream)
        try:
            hello = await channel.receive()
        except ChannelClosed:
            return
        index = hello.get("worker")
        if (
            hello.get("t") != "hello"
            or hello.get("token") != self._token
            or not isinstance(index, int)
            or not 1 <= index <= len(self.workers)
        ):
            log.warning("control channel: unexpected first message; closed")
            await channel.aclose()
            return
        worker = self.workers[index - 1]
        self.adopt_roster(worker, hello.get("roster") or [])
        worker.channel = channel
        worker.pid = int(hello.get("pid") or 0)
        worker.counts = hello.get("counts") or {}
        worker.started.set()
        try:
            while True:
                message = await channel.receive()
                self._on_message(worker, message)
        except ChannelClosed:
            pass
        finally:
            if worker.final is None:
                self._died(worker, f"worker process {worker.index + 1} lost (control channel)")
            self._fail_pending(worker)
            await channel.aclose()

    def _on_message(self, worker: Worker, message: Message) -> None:
        kind = message.get("t")
        if kind == "reply":
            slot = worker.pending.get(message.get("id", -1))
            if slot is not None:
                slot.reply = message
                slot.event.set()
        elif kind == "counts":
            counts = message.get("counts") or {}
            moved, worker.counts = counts != worker.counts, counts
            if moved or message.get("changed"):
                self.notify_changed()
        elif kind == "bye":
            worker.final = message
            self._fail_pending(worker)
            self.notify_changed()

    async def shutdown(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Stop every worker's stations (close frames), collect their figures, end the run.

        Workers that do not answer within `grace` + EXIT_GRACE seconds are killed.
        """
        for worker in self.workers:
            if worker.alive and worker.channel is not None:
                with contextlib.suppress(ChannelClosed):
                    await worker.channel.send({"t": "shutdown", "grace": grace})
        with trio.move_on_after(grace + EXIT_GRACE):
            await self._all_done.wait()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
