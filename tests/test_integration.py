"""Whole fleets over real WebSockets on 127.0.0.1: our embedded CSMS and one we did not write."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio
from ocpp_lib_peer import open_ocpp_lib_csms

import evsim_trio
from evsim_trio._resources import data_dir
from evsim_trio.config import load_site
from evsim_trio.simulator import Simulator
from evsim_trio.station import StationState, load_state, state_path

pytestmark = pytest.mark.integration

TEMPLATES = data_dir("station_templates")


def write_site(tmp_path: Path, body: str, *, counts: dict[str, int]) -> Path:
    """A site config in tmp_path using the shipped templates."""
    stations = "".join(
        f'\n[[stations]]\ntemplate = "{(TEMPLATES / name).as_posix()}"\ncount = {count}\n'
        for name, count in counts.items()
    )
    path = tmp_path / "site.toml"
    path.write_text(
        f'[simulator]\nseed = 11\nstate_dir = "{(tmp_path / "state").as_posix()}"\n'
        f"[ui_server]\nenabled = false\n{body}\n{stations}"
    )
    return path


async def test_package_under_test_is_the_installed_one() -> None:
    # nox runs the suite against a plain `pip install .`: package data must come from the wheel.
    if os.environ.get("EVSIM_TRIO_EXPECT_INSTALLED") != "1":
        pytest.skip("only meaningful under `nox -s tests`")
    assert "site-packages" in Path(evsim_trio.__file__).parts
    assert "_data" in data_dir("schemas").parts


async def test_50_stations_boot_against_the_embedded_csms(tmp_path: Path) -> None:
    path = write_site(
        tmp_path,
        "[csms]\nenabled = true\nport = 0\nheartbeat_interval = 30\n",
        counts={"ac-3phase-2conn.toml": 20, "ac-1phase.toml": 20, "dc-fast.toml": 10},
    )
    site = load_site(path)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            simulator: Simulator = await nursery.start(Simulator(site).run)
            csms = simulator.csms
            assert csms is not None
            await simulator.wait_until(lambda counts: counts.booted == 50)
            expected_statuses = sum(len(s.connectors) for s in simulator.stations)
            await csms.wait_until(
                lambda: (
                    sum(r.received["StatusNotification"] for r in csms.stations.values())
                    == expected_statuses
                )
            )
            assert len(csms.stations) == 50
            assert all(r.registration == "Accepted" for r in csms.stations.values())
            assert csms.violations == []
            await simulator.shutdown()
    counts = simulator.counts()
    assert counts.stopped == 50
    assert counts.call_errors == counts.call_timeouts == 0
    # Serial numbers were persisted once per station, keyed by hashId.
    station = simulator.stations[0]
    state = load_state(state_path(tmp_path / "state", station.hash_id))
    assert state is not None
    assert state["station_info"]["charge_point_serial_number"] == (
        station.identity.charge_point_serial_number
    )


async def test_serial_numbers_survive_a_restart(tmp_path: Path) -> None:
    path = write_site(tmp_path, "[csms]\nenabled = true\nport = 0\n", counts={"ac-1phase.toml": 3})
    serials = []
    for seed in (1, 2):  # a different seed must not change persisted serial numbers
        site = load_site(path)
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                simulator: Simulator = await nursery.start(Simulator(site, seed=seed).run)
                await simulator.wait_until(lambda counts: counts.booted == 3)
                serials.append([s.identity.charge_point_serial_number for s in simulator.stations])
                await simulator.shutdown()
    assert serials[0] == serials[1]
    assert len(set(serials[0])) == 3


async def test_20_stations_boot_against_the_ocpp_library_csms(tmp_path: Path) -> None:
    async with open_ocpp_lib_csms("--heartbeat-interval", "5") as peer:
        path = write_site(
            tmp_path,
            f'[csms]\nenabled = false\n[supervision]\nurls = ["{peer.url}"]\n',
            counts={"ac-3phase-2conn.toml": 10, "dc-fast.toml": 10},
        )
        site = load_site(path)
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                simulator: Simulator = await nursery.start(Simulator(site).run)
                await simulator.wait_until(lambda counts: counts.booted == 20)
                statuses = sum(len(s.connectors) for s in simulator.stations)

                def done() -> bool:
                    actions = [m["action"] for m in peer.messages]
                    return (
                        actions.count("StatusNotification") == statuses
                        and actions.count("Heartbeat") >= 20
                    )

                await peer.wait_until(done)
                await simulator.shutdown()
        assert peer.stations() == {s.station_id for s in simulator.stations}
        assert peer.violations == []
        counts = simulator.counts()
        assert counts.call_errors == 0
        assert all(s.state is StationState.STOPPED for s in simulator.stations)
