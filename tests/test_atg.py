"""The automatic transaction generator against a fake station, under MockClock(autojump)."""

from __future__ import annotations

import math
import random
import tomllib
from collections.abc import Sequence
from typing import Any

import attrs
import pytest
import tomli_w
import trio
import trio.testing

from evsim_trio.config import AtgConfig
from evsim_trio.station._atg import (
    AtgConnectorStatus,
    AtgController,
    AtgHost,
    RoundRobin,
    pick_id_tag,
    run_atg_connector,
)

HOUR = 3600.0
TAGS = ("TAG-A", "TAG-B", "TAG-C", "TAG-D")


@attrs.frozen
class Event:
    """Something the fake station saw on one connector."""

    time: float
    kind: str  # "start" | "refused" | "stop" | "skip"
    tag: str = ""


@attrs.define(eq=False)
class FakeHost:
    """An `AtgHost` whose requests answer at once and are all recorded."""

    station_id: str
    index: int
    rng: random.Random
    id_tags: tuple[str, ...] = TAGS
    connector_ids: Sequence[int] = (1, 2)
    accepted: bool = True
    reject_tags: frozenset[str] = frozenset()  # Authorize answers Invalid
    refuse_tags: frozenset[str] = frozenset()  # start_transaction returns False
    status: dict[int, str] = attrs.field(init=False)
    transactions: dict[int, str] = attrs.field(init=False, factory=dict)
    timeline: dict[int, list[Event]] = attrs.field(init=False)
    authorized: list[str] = attrs.field(init=False, factory=list)
    picked: list[str] = attrs.field(init=False, factory=list)  # tags in request order
    statuses: dict[int, AtgConnectorStatus] = attrs.field(init=False, factory=dict)
    changes: int = attrs.field(init=False, default=0)
    t0: float = attrs.field(init=False, factory=trio.current_time)  # times are relative to it
    _skips_seen: dict[int, int] = attrs.field(init=False, factory=dict)
    _event: trio.Event = attrs.field(init=False, factory=trio.Event)

    def __attrs_post_init__(self) -> None:
        self.status = dict.fromkeys(self.connector_ids, "Available")
        self.timeline = {cid: [] for cid in self.connector_ids}

    # -- test controls -------------------------------------------------------------------
    def now(self) -> float:
        return trio.current_time() - self.t0

    def _notify(self) -> None:
        self._event.set()
        self._event = trio.Event()

    def set_accepted(self, accepted: bool) -> None:
        self.accepted = accepted
        self._notify()

    def set_status(self, connector_id: int, status: str) -> None:
        self.status[connector_id] = status
        self._notify()

    def events(self, connector_id: int, *kinds: str) -> list[Event]:
        return [e for e in self.timeline[connector_id] if not kinds or e.kind in kinds]

    # -- AtgHost ---------------------------------------------------------------------------
    def is_accepted(self) -> bool:
        return self.accepted

    async def wait_accepted(self) -> None:
        while not self.accepted:
            await self._event.wait()

    def is_connector_available(self, connector_id: int) -> bool:
        return self.status[connector_id] == "Available"

    async def wait_connector_available(self, connector_id: int) -> None:
        while self.status[connector_id] != "Available":
            await self._event.wait()

    def connector_has_transaction(self, connector_id: int) -> bool:
        return connector_id in self.transactions

    async def authorize(self, id_tag: str) -> str:
        self.authorized.append(id_tag)
        self.picked.append(id_tag)
        await trio.lowlevel.checkpoint()
        return "Invalid" if id_tag in self.reject_tags else "Accepted"

    async def start_transaction(
        self, connector_id: int, id_tag: str, *, authorize: bool | None = None
    ) -> bool:
        assert authorize is False  # the ATG authorizes itself when asked to
        if not self.authorized:
            self.picked.append(id_tag)
        now = self.now()
        await trio.lowlevel.checkpoint()
        if id_tag in self.refuse_tags or connector_id in self.transactions:
            self.timeline[connector_id].append(Event(now, "refused", id_tag))
            return False
        self.timeline[connector_id].append(Event(now, "start", id_tag))
        self.transactions[connector_id] = id_tag
        self.set_status(connector_id, "Charging")
        return True

    async def stop_transaction(self, connector_id: int, reason: str = "Local") -> bool:
        assert reason == "Local"
        await trio.lowlevel.checkpoint()
        tag = self.transactions.pop(connector_id)
        self.timeline[connector_id].append(Event(self.now(), "stop", tag))
        self.set_status(connector_id, "Available")
        return True

    def atg_changed(self) -> None:
        self.changes += 1
        for cid, status in self.statuses.items():
            seen = self._skips_seen.get(cid, 0)
            for _ in range(status.skipped_transactions - seen):
                self.timeline[cid].append(Event(self.now(), "skip"))
            self._skips_seen[cid] = status.skipped_transactions


def _check_protocol(host: FakeHost) -> AtgHost:
    return host  # mypy: FakeHost implements the protocol


def make_config(**changes: Any) -> AtgConfig:
    values: dict[str, Any] = {
        "enable": True,
        "min_duration": 60,
        "max_duration": 600,
        "min_delay_between_two_transactions": 15,
        "max_delay_between_two_transactions": 120,
        "probability_of_start": 0.7,
        "stop_after_hours": 24.0,
        "stop_on_connection_failure": True,
        "require_authorize": True,
        "id_tag_distribution": "random",
    }
    values.update(changes)
    return AtgConfig(**values)


def make_host(index: int, seed: int = 1, **kwargs: Any) -> FakeHost:
    return FakeHost(f"ATG-{index:05d}", index, random.Random(f"{seed}/{index}"), **kwargs)


async def run_fleet(
    config: AtgConfig,
    *,
    seed: int = 1,
    stations: int = 10,
    hours: float = 24.0,
    **host_kwargs: Any,
) -> list[tuple[FakeHost, AtgController]]:
    """`stations` stations of 2 connectors, generating from t=0 for `hours` simulated hours."""
    fleet: list[tuple[FakeHost, AtgController]] = []
    async with trio.open_nursery() as nursery:
        for index in range(1, stations + 1):
            host = make_host(index, seed, **host_kwargs)
            controller = AtgController(host, config, host.connector_ids)
            host.statuses = controller.statuses
            await nursery.start(controller.run)
            assert controller.start() == [1, 2]
            fleet.append((host, controller))
        await trio.sleep(hours * HOUR)
        nursery.cancel_scope.cancel()
    return fleet


def check_timeline(
    events: list[Event], config: AtgConfig, *, begin: float = 0.0
) -> tuple[list[float], list[float]]:
    """Every delay and duration inside its range, in whole seconds; no start after the end.

    Returns the delays and the durations seen.
    """
    delays: list[float] = []
    durations: list[float] = []
    low, high = config.min_delay_between_two_transactions, config.max_delay_between_two_transactions
    ready = begin
    started: float | None = None
    for event in events:
        if event.kind in ("start", "skip"):
            assert started is None
            delay = event.time - ready
            assert delay == int(delay), event
            assert low <= delay <= high, event
            delays.append(delay)
            assert event.time < begin + config.stop_after_hours * HOUR
            if event.kind == "start":
                started = event.time
            else:
                ready = event.time
        elif event.kind == "stop":
            assert started is not None
            duration = event.time - started
            assert duration == int(duration), event
            assert config.min_duration <= duration <= config.max_duration, event
            durations.append(duration)
            started = None
            ready = event.time
        else:
            raise AssertionError(f"unexpected {event}")
    return delays, durations


# -- the fleet over 24 hours -----------------------------------------------------------------


async def test_starts_and_skips_follow_probability_with_delays_and_durations_in_range(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = make_config(probability_of_start=0.7)
    with trio.fail_after(48 * HOUR):
        fleet = await run_fleet(config, hours=25.0)
    starts = skips = 0
    delays: set[float] = set()
    for host, controller in fleet:
        for cid in (1, 2):
            events = host.events(cid)
            delays.update(check_timeline(events, config)[0])
            status = controller.statuses[cid]
            n_starts = len(host.events(cid, "start"))
            n_skips = len(host.events(cid, "skip"))
            assert status.skipped_transactions == n_skips
            assert status.authorize_requests == status.accepted_authorize_requests == n_starts
            assert status.start_transaction_requests == n_starts
            assert status.accepted_start_transaction_requests == n_starts
            assert status.stop_transaction_requests == len(host.events(cid, "stop")) == n_starts
            assert status.accepted_stop_transaction_requests == n_starts
            assert status.rejected_start_transaction_requests == 0
            # The 24 h run ended by itself.
            assert not status.start
            assert status.stopped_date is not None
            assert events[-1].time <= 24 * HOUR + config.max_duration
            starts += n_starts
            skips += n_skips
        assert controller.running == frozenset()
    n = starts + skips
    p = config.probability_of_start
    assert n > 4000
    # Uniform whole seconds, both ends included.
    low, high = config.min_delay_between_two_transactions, config.max_delay_between_two_transactions
    assert delays == set(map(float, range(low, high + 1)))
    assert abs(starts - n * p) <= 4 * math.sqrt(n * p * (1 - p))


async def test_same_seed_same_schedule_and_only_the_host_rng_is_used(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the module-level random stream was used")

    for name in ("random", "randint", "randrange", "choice", "uniform", "shuffle", "getrandbits"):
        monkeypatch.setattr(random, name, forbidden)
    config = make_config(id_tag_distribution="random", stop_after_hours=6.0)
    with trio.fail_after(48 * HOUR):
        first = await run_fleet(config, seed=7, hours=6.5)
        second = await run_fleet(config, seed=7, hours=6.5)
        other = await run_fleet(config, seed=8, hours=6.5)

    def schedule(fleet: list[tuple[FakeHost, AtgController]]) -> list[Any]:
        return [(host.station_id, host.timeline) for host, _ in fleet]

    assert schedule(first) == schedule(second)
    assert schedule(first) != schedule(other)
    tags = {e.tag for host, _ in first for cid in (1, 2) for e in host.events(cid, "start")}
    assert tags == set(TAGS)


async def test_connector_affinity_gives_each_connector_its_tag(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = make_config(id_tag_distribution="connector-affinity", stop_after_hours=4.0)
    with trio.fail_after(48 * HOUR):
        fleet = await run_fleet(config, hours=4.5)
    for host, _ in fleet:
        for cid in (1, 2):
            expected = TAGS[(host.index - 1 + cid - 1) % len(TAGS)]
            tags = {e.tag for e in host.events(cid, "start")}
            assert tags == {expected}, (host.index, cid)


async def test_round_robin_cycles_through_tags_per_station(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = make_config(id_tag_distribution="round-robin", stop_after_hours=4.0)
    with trio.fail_after(48 * HOUR):
        fleet = await run_fleet(config, stations=3, hours=4.5)
    for host, _ in fleet:
        assert len(host.picked) > 2 * len(TAGS)
        assert host.picked == [TAGS[i % len(TAGS)] for i in range(len(host.picked))]


# -- authorization and refusals ----------------------------------------------------------------


async def test_rejected_tags_are_counted_and_never_start(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = make_config(
        id_tag_distribution="round-robin", probability_of_start=1.0, stop_after_hours=4.0
    )
    tags = ("OK-1", "BAD-1", "OK-2", "REFUSED")
    with trio.fail_after(48 * HOUR):
        fleet = await run_fleet(
            config,
            stations=2,
            hours=4.5,
            id_tags=tags,
            reject_tags=frozenset({"BAD-1"}),
            refuse_tags=frozenset({"REFUSED"}),
        )
    for host, controller in fleet:
        assert host.picked == [tags[i % len(tags)] for i in range(len(host.picked))]
        statuses = [controller.statuses[cid] for cid in (1, 2)]
        starts = [e for cid in (1, 2) for e in host.events(cid, "start")]
        refused = [e for cid in (1, 2) for e in host.events(cid, "refused")]
        assert {e.tag for e in starts} == {"OK-1", "OK-2"}
        assert {e.tag for e in refused} == {"REFUSED"}
        authorize = sum(s.authorize_requests for s in statuses)
        rejected = sum(s.rejected_authorize_requests for s in statuses)
        accepted = sum(s.accepted_authorize_requests for s in statuses)
        assert authorize == len(host.authorized) == accepted + rejected
        assert rejected == host.authorized.count("BAD-1") > 0
        assert sum(s.start_transaction_requests for s in statuses) == accepted
        assert sum(s.accepted_start_transaction_requests for s in statuses) == len(starts)
        assert sum(s.rejected_start_transaction_requests for s in statuses) == len(refused) > 0
        assert sum(s.stop_transaction_requests for s in statuses) == len(starts)
        assert sum(s.skipped_transactions for s in statuses) == 0


async def test_without_require_authorize_no_authorize_is_sent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = make_config(require_authorize=False, probability_of_start=1.0, stop_after_hours=2.0)
    with trio.fail_after(48 * HOUR):
        fleet = await run_fleet(config, stations=1, hours=2.5)
    host, controller = fleet[0]
    assert host.authorized == []
    assert controller.statuses[1].authorize_requests == 0
    assert controller.statuses[1].accepted_start_transaction_requests > 0


async def test_skips_count_consecutively_and_reset_on_a_start(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = make_config(probability_of_start=0.3, stop_after_hours=6.0)
    consecutive: list[int] = []

    class Host(FakeHost):
        def atg_changed(self) -> None:
            super().atg_changed()
            consecutive.append(status.skipped_consecutive_transactions)

    host = Host("ATG-00001", 1, random.Random(1))
    status = AtgConnectorStatus()
    host.statuses = {1: status}
    with trio.fail_after(48 * HOUR):
        await run_atg_connector(host, config, 1, status)
    kinds = [e.kind for e in host.events(1, "start", "skip")]
    run = longest = 0
    for kind in kinds:
        run = run + 1 if kind == "skip" else 0
        longest = max(longest, run)
    assert longest >= 2
    assert max(consecutive) == longest
    assert status.skipped_consecutive_transactions == run
    assert status.skipped_transactions == kinds.count("skip")


# -- deadline ----------------------------------------------------------------------------------


async def test_loop_returns_at_stop_after_hours_without_starting_late(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = make_config(
        stop_after_hours=0.5,
        min_delay_between_two_transactions=100,
        max_delay_between_two_transactions=200,
        min_duration=300,
        max_duration=600,
        probability_of_start=1.0,
    )
    host = make_host(1)
    status = AtgConnectorStatus()
    with trio.fail_after(48 * HOUR):
        await run_atg_connector(host, config, 1, status)
    ended = trio.current_time()
    assert 1800.0 <= ended <= 1800.0 + 600.0
    check_timeline(host.events(1), config)
    assert all(e.time < 1800.0 for e in host.events(1, "start"))
    assert 1 not in host.transactions  # the last one ran its course and was stopped
    assert not status.start
    assert status.start_date is not None
    assert status.stopped_date is not None
    assert status.stop_date is not None


async def test_delay_crossing_the_deadline_ends_the_loop_at_the_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = make_config(
        stop_after_hours=0.5,
        min_delay_between_two_transactions=1000,
        max_delay_between_two_transactions=1000,
        min_duration=500,
        max_duration=500,
        probability_of_start=1.0,
    )
    host = make_host(1)
    with trio.fail_after(48 * HOUR):
        await run_atg_connector(host, config, 1, AtgConnectorStatus())
    assert trio.current_time() == 1800.0
    assert [(e.time, e.kind) for e in host.events(1)] == [(1000.0, "start"), (1500.0, "stop")]


async def test_explicit_stop_at_is_kept_by_a_restarted_loop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = make_config(
        stop_after_hours=10.0,
        min_delay_between_two_transactions=100,
        max_delay_between_two_transactions=100,
        min_duration=100,
        max_duration=100,
        probability_of_start=1.0,
    )
    host = make_host(1)
    status = AtgConnectorStatus()
    with trio.fail_after(48 * HOUR):
        with trio.move_on_after(250):
            await run_atg_connector(host, config, 1, status, stop_at=1000.0)
        await run_atg_connector(host, config, 1, status, stop_at=1000.0)
    # Cancelled at 250 during a delay; resumed: starts every 200 s from 350, the last one
    # before the deadline runs its whole 100 s, then the loop returns.
    assert [e.time for e in host.events(1, "start")] == [100.0, 350.0, 550.0, 750.0, 950.0]
    assert trio.current_time() == 1050.0


async def test_no_id_tags_ends_the_loop_at_once(autojump_clock: trio.testing.MockClock) -> None:
    host = make_host(1, id_tags=())
    status = AtgConnectorStatus()
    with trio.fail_after(10):
        await run_atg_connector(host, make_config(), 1, status)
    assert trio.current_time() == 0.0
    assert not status.start
    assert status.stopped_date is not None


# -- stop, waits, reconnects -----------------------------------------------------------------

FIXED = {
    "min_delay_between_two_transactions": 100,
    "max_delay_between_two_transactions": 100,
    "min_duration": 500,
    "max_duration": 500,
    "probability_of_start": 1.0,
}


async def test_cancelling_the_loop_takes_effect_during_a_delay_or_a_transaction(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = make_config(**FIXED)
    for cancel_at, running in ((30.0, False), (300.0, True)):
        host = make_host(1)
        status = AtgConnectorStatus()
        with trio.fail_after(HOUR):
            start = trio.current_time()
            with trio.move_on_at(start + cancel_at):
                await run_atg_connector(host, config, 1, status)
            assert trio.current_time() == start + cancel_at
        assert not status.start
        assert status.stopped_date is not None
        # A transaction running when the ATG stops is left running (as the reference does).
        assert (1 in host.transactions) is running
        assert host.events(1, "stop") == []


async def test_controller_stop_is_immediate_and_restart_begins_afresh(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    config = make_config(**FIXED)
    host = make_host(1)
    controller = AtgController(host, config, [1, 2])
    await nursery.start(controller.run)
    with trio.fail_after(10 * HOUR):
        controller.start()
        assert controller.running == {1, 2}
        assert controller.statuses[1].start
        await trio.sleep(50)
        assert controller.stop([1]) == [1]
        # At once, without a checkpoint: the status says so and the loop counts as stopped.
        assert not controller.statuses[1].start
        assert controller.statuses[1].stopped_date is not None
        assert controller.running == {2}
        assert controller.stop([1]) == []
        await trio.sleep(1000)
        assert host.events(1) == []
        assert host.events(2, "start")[0].time == 100.0
        assert controller.start([1]) == [1]
        assert controller.start([1]) == []  # already running
        await trio.sleep(200)
        assert host.events(1, "start")[0].time == 1050.0 + 100.0
        with pytest.raises(ValueError, match="connector"):
            controller.start([3])


async def test_stop_then_start_in_the_same_instant_runs_one_loop(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    config = make_config(**FIXED)
    host = make_host(1)
    controller = AtgController(host, config, [1])
    await nursery.start(controller.run)
    with trio.fail_after(10 * HOUR):
        controller.start()
        await trio.sleep(50)
        controller.stop()
        controller.start()
        await trio.testing.wait_all_tasks_blocked()
        assert controller.statuses[1].start
        assert controller.statuses[1].stopped_date is None
        assert controller.running == {1}
        await trio.sleep(2000)
    starts = [e.time for e in host.events(1, "start")]
    assert starts == [150.0, 750.0, 1350.0, 1950.0]


async def test_loop_waits_while_not_accepted_or_connector_not_available(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    config = make_config(**FIXED)
    host = make_host(1)
    host.set_accepted(False)
    host.set_status(2, "Unavailable")
    controller = AtgController(host, config, [1, 2])
    await nursery.start(controller.run)
    with trio.fail_after(10 * HOUR):
        controller.start()
        await trio.sleep(1000)
        assert host.timeline == {1: [], 2: []}
        host.set_accepted(True)
        await trio.sleep(1000)
        assert host.events(1, "start")[0].time == 1100.0
        assert host.events(2) == []
        host.set_status(2, "Available")
        await trio.sleep(200)
        assert host.events(2, "start")[0].time == 2100.0


async def test_connector_unavailable_at_the_end_of_the_delay_waits_again(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    config = make_config(**FIXED)
    host = make_host(1)
    controller = AtgController(host, config, [1])
    await nursery.start(controller.run)
    with trio.fail_after(10 * HOUR):
        controller.start()
        await trio.sleep(50)
        host.set_status(1, "Unavailable")
        await trio.sleep(250)
        host.set_status(1, "Available")
        await trio.sleep(200)
    assert host.events(1, "start")[0].time == 300.0 + 100.0
    assert controller.statuses[1].skipped_transactions == 0


async def test_connection_failure_stops_and_reconnect_resumes_with_the_same_stop_time(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    config = make_config(**FIXED, stop_after_hours=1.0, stop_on_connection_failure=True)
    host = make_host(1)
    controller = AtgController(host, config, [1, 2])
    await nursery.start(controller.run)
    with trio.fail_after(10 * HOUR):
        controller.start()
        stop_date = controller.statuses[1].stop_date
        await trio.sleep(50)
        host.set_accepted(False)
        controller.connection_lost()
        assert controller.running == frozenset()
        assert not controller.statuses[1].start
        await trio.sleep(950)
        host.set_accepted(True)
        controller.connection_restored()
        assert controller.running == {1, 2}
        assert controller.statuses[1].stop_date == stop_date
        await trio.sleep(5 * HOUR)
    starts = [e.time for e in host.events(1, "start")]
    assert starts[0] == 1100.0
    assert max(starts) < HOUR
    assert controller.running == frozenset()


async def test_connection_failure_without_stop_option_pauses_the_loop(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    config = make_config(**FIXED, stop_on_connection_failure=False)
    host = make_host(1)
    controller = AtgController(host, config, [1])
    await nursery.start(controller.run)
    with trio.fail_after(10 * HOUR):
        controller.start()
        await trio.sleep(50)
        host.set_accepted(False)
        controller.connection_lost()
        assert controller.running == {1}
        await trio.sleep(950)
        assert host.events(1) == []
        host.set_accepted(True)
        controller.connection_restored()
        await trio.sleep(200)
    assert host.events(1, "start")[0].time == 1100.0


async def test_start_needs_the_controller_running() -> None:
    controller = AtgController(make_host(1), make_config(), [1])
    with pytest.raises(RuntimeError, match="run"):
        controller.start()


# -- pure parts --------------------------------------------------------------------------------


def test_pick_id_tag_distributions() -> None:
    rng = random.Random(3)
    state = RoundRobin()
    tags = ("a", "b", "c")

    def pick(distribution: str, station: int = 1, connector: int = 1) -> str:
        return pick_id_tag(
            distribution,
            tags,
            station_index=station,
            connector_id=connector,
            rng=rng,
            rr_state=state,
        )

    assert [pick("round-robin") for _ in range(7)] == list("abcabca")
    assert pick("connector-affinity", station=1, connector=1) == "a"
    assert pick("connector-affinity", station=2, connector=2) == "c"
    assert pick("connector-affinity", station=3, connector=2) == "a"
    expected = random.Random(5)
    rng.seed(5)
    assert [pick("random") for _ in range(10)] == [expected.choice(tags) for _ in range(10)]
    with pytest.raises(ValueError, match="distribution"):
        pick("sequential")
    with pytest.raises(ValueError, match="no id tags"):
        pick_id_tag("random", (), station_index=1, connector_id=1, rng=rng, rr_state=state)


def test_status_state_round_trips_through_toml() -> None:
    status = AtgConnectorStatus(
        start=True,
        start_date="2024-01-01T00:00:00.000Z",
        stop_date="2024-01-01T01:00:00.000Z",
        skipped_transactions=3,
        accepted_stop_transaction_requests=2,
    )
    state = tomllib.loads(tomli_w.dumps({"atg": status.to_state()}))["atg"]
    assert "stopped_date" not in state
    assert AtgConnectorStatus.from_state(state) == status
    assert AtgConnectorStatus.from_state({}) == AtgConnectorStatus()
    assert AtgConnectorStatus.from_state({"future_key": 1}) == AtgConnectorStatus()
    with pytest.raises(ValueError, match="skipped_transactions"):
        AtgConnectorStatus.from_state({"skipped_transactions": "3"})
    with pytest.raises(ValueError, match="start_date"):
        AtgConnectorStatus.from_state({"start_date": 5})


def test_status_snapshot_is_camel_case() -> None:
    status = AtgConnectorStatus(start_date="2024-01-01T00:00:00.000Z", stopped_date="x")
    status.rejected_authorize_requests = 4
    snapshot = status.snapshot()
    assert set(snapshot) == {
        "start",
        "startDate",
        "stoppedDate",
        "skippedConsecutiveTransactions",
        "skippedTransactions",
        "authorizeRequests",
        "acceptedAuthorizeRequests",
        "rejectedAuthorizeRequests",
        "startTransactionRequests",
        "acceptedStartTransactionRequests",
        "rejectedStartTransactionRequests",
        "stopTransactionRequests",
        "acceptedStopTransactionRequests",
        "rejectedStopTransactionRequests",
    }
    assert snapshot["rejectedAuthorizeRequests"] == 4
    full = AtgConnectorStatus(last_run_date="a", stop_date="b").snapshot()
    assert {"lastRunDate", "stopDate"} <= set(full)


async def test_controller_statuses_loaded_from_state_are_not_running() -> None:
    loaded = AtgConnectorStatus(start=True, skipped_transactions=9)
    controller = AtgController(make_host(1), make_config(), [1, 2], statuses={1: loaded})
    assert controller.statuses[1] is loaded
    assert not loaded.start
    assert loaded.skipped_transactions == 9
    assert controller.statuses[2] == AtgConnectorStatus()
    assert controller.running == frozenset()
