"""A worker process: `trio.run` over its slice of the fleet, driven over the control channel.

`worker_main` is what `trio_parallel` runs in the process. It connects back to the main
process, builds and starts its stations (a `Simulator` without a CSMS of its own), says `hello`
with its roster, then answers calls until told to shut down (see `_channel` for the messages).
If the main process goes away, the worker stops its stations and returns.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import trio

from evsim_trio._gc import freeze_when_settled, tune_for_fleet
from evsim_trio.config import LogSection, Site
from evsim_trio.simulator._channel import Channel, ChannelClosed, Message
from evsim_trio.simulator._commands import UnknownProcedure, execute
from evsim_trio.simulator._fleet_answers import performance_entries, template_statistics
from evsim_trio.simulator._simulator import Simulator

__all__ = ["WORKER_PROCEDURES", "WorkerArgs", "worker_main"]

log = logging.getLogger(__name__)

# Counts are pushed this long after a station change (changes in between ride along) ...
PUSH_DELAY = 0.25
# ... and at least this often (counters move without state changes).
PUSH_PERIOD = 1.0

Payload = dict[str, Any]


@attrs.frozen
class WorkerArgs:
    """What a worker process needs (pickled by trio_parallel)."""

    site: Site
    seed: int
    state_dir: Path
    shard: tuple[int, int] | None
    worker: tuple[int, int]
    csms_url: str | None
    address: tuple[str, int]
    token: str
    log: tuple[LogSection, str | None] | None = None


def roster(simulator: Simulator) -> list[list[Any]]:
    """`[[hashId, stationId, index, templateName], ...]` in the worker's fleet order."""
    return [
        [s.hash_id, s.station_id, s.identity.index, s.identity.template_name]
        for s in simulator.stations
    ]


async def _roster(simulator: Simulator, payload: Payload) -> Payload:
    return {"roster": roster(simulator)}


async def _template_statistics(simulator: Simulator, payload: Payload) -> Payload:
    return {"templateStatistics": template_statistics(simulator.stations)}


async def _statistics(simulator: Simulator, payload: Payload) -> Payload:
    statistics = await simulator.statistics(stations=bool(payload.get("stations", True)))
    return statistics.to_json()


async def _metrics(simulator: Simulator, payload: Payload) -> Payload:
    return simulator.metrics_now()


async def _performance_statistics(simulator: Simulator, payload: Payload) -> Payload:
    entries, statistics = performance_entries(simulator)
    return {
        "timestamp": statistics.timestamp,
        "fleet": statistics.fleet.summary(histogram=True),
        "entries": entries,
    }


async def _transaction_stations(simulator: Simulator, payload: Payload) -> Payload:
    transaction_id = int(payload["transactionId"])
    return {"hashIds": [s.hash_id for s in simulator.stations if s.transaction_for(transaction_id)]}


WORKER_PROCEDURES: dict[str, Callable[[Simulator, Payload], Awaitable[Payload]]] = {
    "_roster": _roster,
    "_templateStatistics": _template_statistics,
    "_statistics": _statistics,
    "_metrics": _metrics,
    "_performanceStatistics": _performance_statistics,
    "_transactionStations": _transaction_stations,
}
"""The main process's queries of a worker, beside the UI procedures."""


async def _answer(simulator: Simulator, channel: Channel, message: Message) -> None:
    procedure = str(message.get("procedure"))
    payload = message.get("payload") or {}
    reply: Message = {"t": "reply", "id": message.get("id")}
    try:
        query = WORKER_PROCEDURES.get(procedure)
        if query is not None:
            reply["payload"] = await query(simulator, payload)
        else:
            reply["payload"] = await execute(simulator, procedure, payload)
    except UnknownProcedure:
        reply["error"] = f"unknown procedure {procedure!r}"
    except Exception as exc:
        log.exception("worker: %s failed", procedure)
        reply["error"] = f"{procedure}: {exc!r}"
    with contextlib.suppress(ChannelClosed):  # the main process went away: _serve stops
        await channel.send(reply)


def _counts(simulator: Simulator) -> Payload:
    return attrs.asdict(simulator.counts())


async def _push_counts(simulator: Simulator, channel: Channel) -> None:
    while True:
        changed = False
        with trio.move_on_after(PUSH_PERIOD):
            await simulator.wait_changed()
            changed = True
        try:
            await channel.send({"t": "counts", "counts": _counts(simulator), "changed": changed})
        except ChannelClosed:
            return
        await trio.sleep(PUSH_DELAY)


async def _serve(simulator: Simulator, channel: Channel, nursery: trio.Nursery) -> float | None:
    """Answer calls until `shutdown` (its grace is returned) or the channel closes (None)."""
    try:
        while True:
            message = await channel.receive()
            kind = message.get("t")
            if kind == "call":
                nursery.start_soon(_answer, simulator, channel, message)
            elif kind == "shutdown":
                return float(message.get("grace", 1.5))
    except ChannelClosed as exc:
        log.warning("worker: control channel closed (%s): stopping", exc)
        return None


async def _run_worker(args: WorkerArgs) -> None:
    stream = await trio.open_tcp_stream(*args.address)
    channel = Channel(stream)
    simulator = Simulator(
        args.site,
        seed=args.seed,
        state_dir=args.state_dir,
        shard=args.shard,
        worker=args.worker,
        csms_url=args.csms_url,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(simulator.run)
        tune_for_fleet()
        nursery.start_soon(freeze_when_settled, simulator.wait_settled)
        await channel.send(
            {
                "t": "hello",
                "worker": args.worker[0],
                "token": args.token,
                "pid": os.getpid(),
                "roster": roster(simulator),
                "counts": _counts(simulator),
            }
        )
        pusher = trio.CancelScope()

        async def push() -> None:
            with pusher:
                await _push_counts(simulator, channel)

        nursery.start_soon(push)
        grace = await _serve(simulator, channel, nursery)
        pusher.cancel()
        await simulator.shutdown() if grace is None else await simulator.shutdown(grace)
        if grace is not None:
            statistics = await simulator.statistics()
            with contextlib.suppress(ChannelClosed):
                await channel.send(
                    {
                        "t": "bye",
                        "counts": _counts(simulator),
                        "statistics": statistics.to_json(),
                        "metrics": simulator.metrics_now(),
                    }
                )
        nursery.cancel_scope.cancel()
    await channel.aclose()


def worker_main(args: WorkerArgs) -> None:
    """The body of a worker process (run by trio_parallel): its own trio loop."""
    if args.log is not None:
        from evsim_trio._logsetup import setup_logging

        section, level = args.log
        # Several processes append to one log file; only the main process may rotate it.
        setup_logging(attrs.evolve(section, rotate=False), level)
    trio.run(_run_worker, args)
