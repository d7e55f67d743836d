"""Reservation profile (OCPP 1.6 §5.13 ReserveNow, §5.1 CancelReservation): MockClock, in memory."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from memlink import MemoryNetwork, make_station, record_calls, running, shipped_template

from evsim_trio.csms import EmbeddedCsms, StationRecord
from evsim_trio.station import Station, load_state, utc_now
from evsim_trio.station._clock import format_timestamp
from evsim_trio.station._connector import Connector
from evsim_trio.station._reservations import (
    Reservation,
    ReservationStore,
    reserve_now_status,
)

HOUR = 3600.0
Calls = list[tuple[float, str, dict[str, Any]]]


def station_for(network: MemoryNetwork, **kwargs: Any) -> Station:
    station = make_station(shipped_template(), network.connect(), **kwargs)
    station.configuration.set("WebSocketPingInterval", "0")
    station.configuration.set("MeterValueSampleInterval", "600")
    return station


async def reserve(
    csms: EmbeddedCsms,
    station: Station,
    reservation_id: int,
    connector_id: int,
    id_tag: str,
    *,
    hours: float = 1.0,
    parent: str | None = None,
) -> str:
    """ReserveNow from the CSMS, expiring `hours` from now on the station clock; the status."""
    payload: dict[str, Any] = {
        "connectorId": connector_id,
        "expiryDate": format_timestamp(utc_now() + timedelta(hours=hours)),
        "idTag": id_tag,
        "reservationId": reservation_id,
    }
    if parent is not None:
        payload["parentIdTag"] = parent
    answer = await csms.call(station.station_id, "ReserveNow", payload)
    return str(answer["status"])


async def cancel(csms: EmbeddedCsms, station: Station, reservation_id: int) -> str:
    answer = await csms.call(
        station.station_id, "CancelReservation", {"reservationId": reservation_id}
    )
    return str(answer["status"])


async def wait_notified(
    csms: EmbeddedCsms, station: Station, connector_id: int, status: str
) -> None:
    """Until the CSMS has been told `status` for the connector."""
    record = csms.stations[station.station_id]
    await csms.wait_until(lambda: record.connector_status.get(connector_id) == status)


def statuses(calls: Calls, connector_id: int) -> list[str]:
    return [
        p["status"]
        for _, a, p in calls
        if a == "StatusNotification" and p["connectorId"] == connector_id
    ]


def started(calls: Calls) -> list[dict[str, Any]]:
    return [p for _, a, p in calls if a == "StartTransaction"]


# -- ReserveNow statuses ---------------------------------------------------------------------------
async def test_reserve_now_accepted_reserves_the_connector_until_its_expiry_date(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    calls = record_calls(csms)
    station = station_for(network)
    with trio.fail_after(10 * HOUR):
        async with running(station, csms):
            reserved_at = trio.current_time()
            assert await reserve(csms, station, 11, 1, "TAG-1", hours=2) == "Accepted"
            await wait_notified(csms, station, 1, "Reserved")
            assert station.connectors[1].status == "Reserved"
            assert station.reservations.get(11) is not None
            await wait_notified(csms, station, 1, "Available")
            assert station.reservations.get(11) is None
            await trio.sleep(HOUR)
    expired_at = next(
        t
        for t, a, p in calls
        if a == "StatusNotification" and p["connectorId"] == 1 and t > reserved_at
        if p["status"] == "Available"
    )
    # expiryDate is carried with millisecond precision.
    assert expired_at - reserved_at == pytest.approx(2 * HOUR, abs=0.01)
    assert statuses(calls, 1)[-2:] == ["Reserved", "Available"]
    assert statuses(calls, 2) == ["Available"]  # the other connector is untouched
    assert not csms.violations


async def _faulted(csms: EmbeddedCsms, station: Station) -> None:
    await station.send_status(1, "Faulted", "GroundFailure")


async def _inoperative(csms: EmbeddedCsms, station: Station) -> None:
    answer = await csms.call(
        station.station_id, "ChangeAvailability", {"connectorId": 1, "type": "Inoperative"}
    )
    assert answer == {"status": "Accepted"}
    await station.connectors[1].wait_status("Unavailable")


async def _transaction(csms: EmbeddedCsms, station: Station) -> None:
    assert await station.start_transaction(1, "TAG-2")


async def _preparing(csms: EmbeddedCsms, station: Station) -> None:
    await station.send_status(1, "Preparing")


async def _reserved_by_another_id(csms: EmbeddedCsms, station: Station) -> None:
    assert await reserve(csms, station, 99, 1, "TAG-2") == "Accepted"


async def _nothing(csms: EmbeddedCsms, station: Station) -> None:
    pass


Setup = Callable[[EmbeddedCsms, Station], Awaitable[None]]


@pytest.mark.parametrize(
    ("setup", "connector_id", "hours", "expected"),
    [
        pytest.param(_nothing, 1, 1.0, "Accepted", id="available"),
        pytest.param(_faulted, 1, 1.0, "Faulted", id="faulted"),
        pytest.param(_inoperative, 1, 1.0, "Unavailable", id="inoperative"),
        pytest.param(_transaction, 1, 1.0, "Occupied", id="transaction"),
        pytest.param(_preparing, 1, 1.0, "Occupied", id="preparing"),
        pytest.param(_reserved_by_another_id, 1, 1.0, "Occupied", id="reserved-by-another-id"),
        pytest.param(_nothing, 9, 1.0, "Rejected", id="unknown-connector"),
        pytest.param(_nothing, 0, 1.0, "Rejected", id="connector-0-unsupported"),
        pytest.param(_nothing, 1, -1.0, "Rejected", id="expiry-in-the-past"),
    ],
)
async def test_reserve_now_answers_each_status(
    autojump_clock: trio.testing.MockClock,
    csms_network: tuple[EmbeddedCsms, MemoryNetwork],
    setup: Setup,
    connector_id: int,
    hours: float,
    expected: str,
) -> None:
    csms, network = csms_network
    station = station_for(network)
    with trio.fail_after(HOUR):
        async with running(station, csms):
            await setup(csms, station)
            before = station.connectors[1].status
            status = await reserve(csms, station, 1, connector_id, "TAG-1", hours=hours)
            assert status == expected
            if expected == "Accepted":
                assert station.connectors[1].status == "Reserved"
                assert station.reservations.get(1) is not None
            else:
                assert station.connectors[1].status == before
                assert station.reservations.get(1) is None
    assert not csms.violations


async def test_a_reservation_ends_when_its_connector_becomes_unavailable(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    station = station_for(network)
    with trio.fail_after(HOUR):
        async with running(station, csms):
            assert await reserve(csms, station, 4, 1, "TAG-1") == "Accepted"
            await _inoperative(csms, station)
            await wait_notified(csms, station, 1, "Unavailable")
            await csms.wait_until(lambda: station.reservations.get(4) is None)
            assert await cancel(csms, station, 4) == "Rejected"


# -- CancelReservation -----------------------------------------------------------------------------
async def test_cancel_reservation_frees_the_connector_then_rejects_the_unknown_id(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    calls = record_calls(csms)
    station = station_for(network)
    with trio.fail_after(10 * HOUR):
        async with running(station, csms):
            assert await reserve(csms, station, 3, 2, "TAG-1") == "Accepted"
            await wait_notified(csms, station, 2, "Reserved")
            assert await cancel(csms, station, 3) == "Accepted"
            assert station.connectors[2].status == "Available"
            await wait_notified(csms, station, 2, "Available")
            assert await cancel(csms, station, 3) == "Rejected"
            assert await cancel(csms, station, 12345) == "Rejected"
            # The cancelled reservation's expiry no longer fires.
            await trio.sleep(2 * HOUR)
    assert statuses(calls, 2) == ["Available", "Reserved", "Available"]
    assert not csms.violations


# -- consumption -----------------------------------------------------------------------------------
async def test_the_reserved_id_tag_consumes_the_reservation(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    calls = record_calls(csms)
    station = station_for(network)
    with trio.fail_after(10 * HOUR):
        async with running(station, csms):
            assert await reserve(csms, station, 21, 1, "TAG-1") == "Accepted"
            await wait_notified(csms, station, 1, "Reserved")
            assert await station.start_transaction(1, "TAG-1")
            connector = station.connectors[1]
            assert connector.status == "Charging"
            assert connector.transaction is not None
            assert connector.transaction.reservation_id == 21
            assert station.reservations.get(21) is None
            await trio.sleep(2 * HOUR)  # past the expiry: nothing happens to the transaction
            assert connector.status == "Charging"
    [start] = started(calls)
    assert start["reservationId"] == 21
    assert start["idTag"] == "TAG-1"
    assert statuses(calls, 1) == ["Available", "Reserved", "Preparing", "Charging"]
    assert not csms.violations


async def test_an_id_tag_of_the_reserved_parent_consumes_the_reservation(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network

    def authorize(record: StationRecord, payload: dict[str, Any]) -> dict[str, Any]:
        return {"idTagInfo": {"status": "Accepted", "parentIdTag": "FLEET-7"}}

    csms.handlers["Authorize"] = authorize
    calls = record_calls(csms)
    station = station_for(network)
    with trio.fail_after(HOUR):
        async with running(station, csms):
            status = await reserve(csms, station, 31, 2, "DRIVER-A", parent="FLEET-7")
            assert status == "Accepted"
            await wait_notified(csms, station, 2, "Reserved")
            assert await station.start_transaction(2, "DRIVER-B")
            assert station.connectors[2].status == "Charging"
            assert station.reservations.get(31) is None
    [start] = started(calls)
    assert start["reservationId"] == 31
    assert start["idTag"] == "DRIVER-B"
    # The parent came with the Authorize answer (cached): one Authorize only.
    assert [a for _, a, _ in calls].count("Authorize") == 1
    assert not csms.violations


async def test_without_authorization_the_parent_is_asked_with_authorize(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network

    def authorize(record: StationRecord, payload: dict[str, Any]) -> dict[str, Any]:
        return {"idTagInfo": {"status": "Accepted", "parentIdTag": "FLEET-7"}}

    csms.handlers["Authorize"] = authorize
    calls = record_calls(csms)
    station = station_for(network)
    station.configuration.set("AuthorizeRemoteTxRequests", "false")
    with trio.fail_after(HOUR):
        async with running(station, csms):
            assert await reserve(csms, station, 32, 1, "DRIVER-A", parent="FLEET-7") == "Accepted"
            assert await station.start_transaction(1, "DRIVER-B", remote=True)
    assert [p["idTag"] for _, a, p in calls if a == "Authorize"] == ["DRIVER-B"]
    [start] = started(calls)
    assert start["reservationId"] == 32
    assert not csms.violations


async def test_another_id_tag_is_refused_on_the_reserved_connector(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    calls = record_calls(csms)  # Authorize answers carry no parentIdTag
    station = station_for(network)
    with trio.fail_after(HOUR):
        async with running(station, csms):
            assert await reserve(csms, station, 41, 1, "TAG-1") == "Accepted"
            assert await reserve(csms, station, 42, 2, "TAG-1", parent="FLEET-7") == "Accepted"
            await wait_notified(csms, station, 2, "Reserved")
            assert not await station.start_transaction(1, "TAG-2")
            assert not await station.start_transaction(1, "TAG-2", remote=True)
            assert not await station.start_transaction(2, "TAG-3")  # its parent is not FLEET-7
            for cid in (1, 2):
                assert station.connectors[cid].status == "Reserved"
                assert station.connectors[cid].transaction is None
            assert station.reservations.get(41) is not None
            assert station.reservations.get(42) is not None
            # The reserved tag still can.
            assert await station.start_transaction(1, "TAG-1")
    [start] = started(calls)
    assert start["reservationId"] == 41
    # A refused tag never takes the connector out of Reserved.
    assert statuses(calls, 1) == ["Available", "Reserved", "Preparing", "Charging"]
    assert statuses(calls, 2) == ["Available", "Reserved"]
    assert not csms.violations


async def test_reserve_now_with_an_existing_id_replaces_the_reservation(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    calls = record_calls(csms)
    station = station_for(network)
    with trio.fail_after(10 * HOUR):
        async with running(station, csms):
            assert await reserve(csms, station, 5, 1, "TAG-1", hours=1) == "Accepted"
            # Same id, same connector: a new tag and a later expiry.
            assert await reserve(csms, station, 5, 1, "TAG-2", hours=3) == "Accepted"
            reservation = station.reservations.get(5)
            assert reservation is not None
            assert reservation.id_tag == "TAG-2"
            # Same id, another connector: the first connector is free again.
            assert await reserve(csms, station, 5, 2, "TAG-3", hours=3) == "Accepted"
            await wait_notified(csms, station, 2, "Reserved")
            await wait_notified(csms, station, 1, "Available")
            assert station.connectors[1].status == "Available"
            assert len(station.reservations) == 1
            moved_at = trio.current_time()
            # The first expiry (1 h) was replaced: connector 2 stays Reserved until 3 h.
            await wait_notified(csms, station, 2, "Available")
            assert trio.current_time() - moved_at == pytest.approx(3 * HOUR, abs=0.01)
    assert statuses(calls, 1) == ["Available", "Reserved", "Available"]
    assert statuses(calls, 2) == ["Available", "Reserved", "Available"]
    assert not csms.violations


async def test_a_connector_zero_reservation_keeps_a_connector_for_its_tag(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    calls = record_calls(csms)
    station = station_for(network)
    station.configuration.set("ReserveConnectorZeroSupported", "true")
    with trio.fail_after(HOUR):
        async with running(station, csms):
            assert await reserve(csms, station, 7, 0, "TAG-Z") == "Accepted"
            # Two connectors, one promised: a second connector-0 reservation does not fit.
            assert await reserve(csms, station, 8, 0, "TAG-Y") == "Accepted"
            assert await reserve(csms, station, 9, 0, "TAG-X") == "Occupied"
            assert await cancel(csms, station, 8) == "Accepted"
            assert all(c.status == "Available" for c in station.connectors.values())
            # Another tag may take one connector, not the last free one.
            assert await station.start_transaction(1, "TAG-1")
            assert not await station.start_transaction(2, "TAG-2")
            assert station.connectors[2].status == "Available"
            assert await reserve(csms, station, 10, 2, "TAG-2") == "Occupied"
            # The reserved tag consumes it on any connector.
            assert await station.start_transaction(2, "TAG-Z")
            assert len(station.reservations) == 0
    starts = started(calls)
    assert [p["idTag"] for p in starts] == ["TAG-1", "TAG-Z"]
    assert "reservationId" not in starts[0]
    assert starts[1]["reservationId"] == 7
    assert "Reserved" not in statuses(calls, 1) + statuses(calls, 2)
    assert not csms.violations


# -- persistence -----------------------------------------------------------------------------------
async def test_reservations_survive_a_restart_and_expired_ones_are_dropped(
    autojump_clock: trio.testing.MockClock,
    csms_network: tuple[EmbeddedCsms, MemoryNetwork],
    tmp_path: Path,
) -> None:
    csms, network = csms_network
    calls = record_calls(csms)
    path = tmp_path / "station.toml"
    station = station_for(network, state_path=path)
    with trio.fail_after(20 * HOUR):
        async with running(station, csms):
            reserved_at = trio.current_time()
            assert await reserve(csms, station, 1, 1, "TAG-1", hours=10, parent="P") == "Accepted"
            assert await reserve(csms, station, 2, 2, "TAG-2", hours=1) == "Accepted"
            await wait_notified(csms, station, 2, "Reserved")
        await trio.sleep(2 * HOUR)  # reservation 2 expires while the station is down
        state = load_state(path)
        assert state is not None
        again = station_for(network, state_path=path, state=state)
        kept = again.reservations.get(1)
        assert kept == station.reservations.get(1)
        assert kept is not None
        assert kept.parent_id_tag == "P"
        assert again.reservations.get(2) is None
        assert again.connectors[1].status == "Reserved"
        assert again.connectors[2].status == "Available"
        boot_index = len(calls)
        async with running(again, csms):
            await wait_notified(csms, again, 1, "Available")  # its original expiry
            expired_at = trio.current_time()
    assert expired_at - reserved_at == pytest.approx(10 * HOUR, abs=0.01)
    reboot = [
        (p["connectorId"], p["status"])
        for _, a, p in calls[boot_index:]
        if a == "StatusNotification" and p["connectorId"] > 0
    ]
    assert reboot[:2] == [(1, "Reserved"), (2, "Available")]
    assert reboot[-1] == (1, "Available")
    assert not csms.violations


async def test_a_reservation_still_expires_after_a_reset(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    station = station_for(network)
    with trio.fail_after(10 * HOUR):
        async with running(station, csms):
            reserved_at = trio.current_time()
            assert await reserve(csms, station, 6, 1, "TAG-1", hours=2) == "Accepted"
            await wait_notified(csms, station, 1, "Reserved")
            assert await csms.call(station.station_id, "Reset", {"type": "Soft"}) == {
                "status": "Accepted"
            }
            record = csms.stations[station.station_id]
            await csms.wait_until(lambda: record.boot_count == 2)
            assert station.connectors[1].status == "Reserved"
            await wait_notified(csms, station, 1, "Available")
            assert trio.current_time() - reserved_at == pytest.approx(2 * HOUR, abs=0.01)


# -- feature profile -------------------------------------------------------------------------------
async def test_supported_feature_profiles_include_reservation(
    autojump_clock: trio.testing.MockClock, csms_network: tuple[EmbeddedCsms, MemoryNetwork]
) -> None:
    csms, network = csms_network
    station = station_for(network)
    with trio.fail_after(HOUR):
        async with running(station, csms):
            answer = await csms.call(
                station.station_id, "GetConfiguration", {"key": ["SupportedFeatureProfiles"]}
            )
    [entry] = answer["configurationKey"]
    assert "Reservation" in entry["value"].split(",")


# -- pure rules ------------------------------------------------------------------------------------
def test_a_store_restored_after_the_expiry_date_is_empty() -> None:
    now = datetime.now(UTC)
    store = ReservationStore()
    store.add(Reservation(1, 1, "A", now + timedelta(seconds=1)))
    store.add(Reservation(2, 2, "B", now - timedelta(seconds=1), parent_id_tag="P"))
    state = [r.to_state() for r in (store.get(1), store.get(2)) if r is not None]
    restored = ReservationStore()
    restored.load_state(state, now=now)
    assert [r.reservation_id for r in restored] == [1]


def test_a_reservation_matches_its_tag_or_its_parent_only() -> None:
    now = datetime.now(UTC)
    with_parent = Reservation(1, 1, "A", now, parent_id_tag="P")
    without = Reservation(2, 1, "A", now)
    assert with_parent.matches("A", None)
    assert with_parent.matches("B", "P")
    assert not with_parent.matches("B", "Q")
    assert not with_parent.matches("B", None)
    assert with_parent.matches("a", None)  # IdTokens are case-insensitive (1.6 §7.27)
    assert with_parent.matches("B", "p")
    assert not without.matches("B", "P")


def test_connector_zero_answers_faulted_or_unavailable_when_no_connector_is_free() -> None:
    now = datetime.now(UTC)
    faulted = {1: Connector(1, "Faulted", "Faulted"), 2: Connector(2, "Faulted", "Faulted")}
    mixed = {1: Connector(1, "Faulted", "Faulted"), 2: Connector(2, "Available", "Unavailable")}
    request = Reservation(1, 0, "A", now + timedelta(hours=1))
    for connectors, expected in ((faulted, "Faulted"), (mixed, "Unavailable")):
        status = reserve_now_status(
            connectors, ReservationStore(), request, now=now, connector_zero_supported=True
        )
        assert status == expected
