"""/metrics: Prometheus text that parses, counters that move as messages flow, per-app registry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from uiclient import Ui, http_request, open_ui

from evsim_trio.ui import FleetCollector, UiStatistics, make_registry

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
async def ui(tmp_path: Path) -> AsyncIterator[Ui]:
    async with open_ui(tmp_path) as running:
        yield running


async def scrape(ui: Ui) -> Samples:
    response = await http_request(ui.url, "GET", "/metrics")
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.body.decode())


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.mark.integration
async def test_metrics_describe_the_fleet(ui: Ui) -> None:
    with trio.fail_after(10):
        samples = await scrape(ui)
    assert value(samples, "evsim_stations", state="booted") == 2
    assert value(samples, "evsim_stations", state="failed") == 0
    assert value(samples, "evsim_station_websockets", ws_state="open") == 2
    assert value(samples, "evsim_connectors", status="Available") == 2
    assert value(samples, "evsim_connectors", status="Charging") == 0
    assert value(samples, "evsim_transactions_active") == 0
    assert value(samples, "evsim_energy_active_import_wh_total") == 0
    assert value(samples, "evsim_energy_delivered_wh_total") == 0
    assert value(samples, "evsim_queue_depth") == 0
    assert value(samples, "evsim_reconnects_total") == 0
    assert value(samples, "evsim_connects_total") == 2
    assert value(samples, "evsim_ui_clients") == 0


@pytest.mark.integration
async def test_counters_move_as_messages_flow(ui: Ui) -> None:
    with trio.fail_after(10):
        before = await scrape(ui)
        assert (await ui.post("heartbeat")).status == 200
        after = await scrape(ui)
    calls = "evsim_calls_sent_total"
    assert value(after, calls) == value(before, calls) + 2
    assert value(after, "evsim_ui_requests_total", procedure="heartbeat", status="success") == 1


@pytest.mark.integration
async def test_messages_are_counted_by_action(ui: Ui) -> None:
    # Needs per-action counters on StationStatistics (`sent_by_action`), see the UI report.
    with trio.fail_after(10):
        before = await scrape(ui)
        assert (await ui.post("heartbeat")).status == 200
        after = await scrape(ui)
    name = "evsim_messages_sent_total"
    assert (
        value(after, name, action="Heartbeat")
        == before.get((name, (("action", "Heartbeat"),)), 0) + 2
    )


@pytest.mark.integration
async def test_transactions_and_energy_show_up(ui: Ui) -> None:
    station = ui.stations[0]
    with trio.fail_after(10):
        response = await ui.post(
            "startTransaction", {"hashIds": [station.hash_id], "connectorId": 1, "idTag": "T-1"}
        )
        assert response.status == 200, response.json()
        samples = await scrape(ui)
    assert value(samples, "evsim_transactions_active") == 1
    assert value(samples, "evsim_transactions_started_total") == 1
    assert value(samples, "evsim_connectors", status="Charging") == 1
    assert value(samples, "evsim_power_active_import_w") >= 0


@pytest.mark.integration
async def test_each_app_has_its_own_registry(ui: Ui) -> None:
    with trio.fail_after(10):
        samples = await scrape(ui)
    assert ("evsim_stations", (("state", "booted"),)) in samples
    assert b"evsim_stations" not in generate_latest(REGISTRY)


@attrs.define
class FakeHistogram:
    bounds: tuple[float, ...]
    counts: list[int]
    total: float


@attrs.define
class FakeStats:
    calls_sent: int = 3
    call_errors: int = 0
    call_timeouts: int = 0
    connects: int = 3
    connect_failures: int = 2
    boot_attempts: int = 1
    transactions_started: int = 1
    transactions_stopped: int = 0
    sent_by_action: dict[str, int] = attrs.field(factory=lambda: {"Heartbeat": 2})
    received_by_action: dict[str, int] = attrs.field(factory=lambda: {"Reset": 1})
    latency: dict[str, Any] = attrs.field(
        factory=lambda: {"Heartbeat": FakeHistogram((0.01, 0.1), [1, 2, 1], 0.5)}
    )


def test_the_collector_reads_per_action_counters_and_latency_histograms() -> None:
    from evsim_trio.simulator import fleet_metrics
    from evsim_trio.station import StationState, WsState

    @attrs.define
    class FakeQueue:
        dropped: int = 4

        def __len__(self) -> int:
            return 5

    @attrs.define
    class FakeStation:
        state: StationState = StationState.BOOTED
        ws_state: WsState = WsState.OPEN
        connectors: dict[int, Any] = attrs.field(factory=dict)
        meters: dict[int, Any] = attrs.field(factory=dict)
        stats: FakeStats = attrs.field(factory=FakeStats)
        queue: FakeQueue = attrs.field(factory=FakeQueue)

        def energy_delivered_wh(self) -> float:
            return 1.5

    @attrs.define
    class FakeSimulator:
        stations: list[FakeStation]

        def metrics_now(self) -> dict[str, Any]:
            return fleet_metrics(self.stations)

    fleet = FakeSimulator([FakeStation(), FakeStation()])
    registry = make_registry(fleet, UiStatistics())  # type: ignore[arg-type]
    samples = parse(generate_latest(registry).decode())
    assert value(samples, "evsim_messages_sent_total", action="Heartbeat") == 4
    assert value(samples, "evsim_messages_received_total", action="Reset") == 2
    bucket = "evsim_csms_response_seconds_bucket"
    assert value(samples, bucket, action="Heartbeat", le="0.01") == 2
    assert value(samples, bucket, action="Heartbeat", le="0.1") == 6
    assert value(samples, bucket, action="Heartbeat", le="+Inf") == 8
    assert value(samples, "evsim_csms_response_seconds_count", action="Heartbeat") == 8
    assert value(samples, "evsim_csms_response_seconds_sum", action="Heartbeat") == 1.0
    assert value(samples, "evsim_reconnects_total") == 4
    assert value(samples, "evsim_queue_depth") == 10
    assert value(samples, "evsim_queue_dropped_total") == 8
    assert value(samples, "evsim_transactions_started_total") == 2
    assert value(samples, "evsim_energy_delivered_wh_total") == 3.0
    assert isinstance(FleetCollector(fleet, UiStatistics()), FleetCollector)  # type: ignore[arg-type]
