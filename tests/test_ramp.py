"""`[simulator] ramp_per_second`: the fleet starts at the configured rate, not all at once."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing
from memlink import MemoryNetwork

from evsim_trio._resources import data_dir
from evsim_trio.config import ConfigError, load_site
from evsim_trio.csms import EmbeddedCsms
from evsim_trio.simulator import Simulator, execute

TEMPLATE = (data_dir("station_templates") / "ac-1phase.toml").as_posix()


def write_site(tmp_path: Path, ramp: str, count: int = 30) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(
        f'[simulator]\nseed = 2\nstate_dir = "{(tmp_path / "state").as_posix()}"\n'
        f"ramp_per_second = {ramp}\n"
        '[csms]\nenabled = false\n[supervision]\nurls = ["ws://csms.test/ocpp"]\n'
        f'[ui_server]\nenabled = false\n[[stations]]\ntemplate = "{TEMPLATE}"\ncount = {count}\n'
    )
    return path


async def test_stations_start_at_the_ramp_rate_in_config_order(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    csms = EmbeddedCsms()
    site = load_site(write_site(tmp_path, "10"))
    async with trio.open_nursery() as nursery:
        network = MemoryNetwork(nursery, csms.handle_request)
        simulator = Simulator(site, connect=network.connect())
        began = trio.current_time()
        await nursery.start(simulator.run)
        await network.wait_attempts(30)
        # One connection every 0.1 s, in config order: the 30th 2.9 s after the first.
        offsets = [round(t - began, 3) for t in network.attempts]
        assert offsets == [round(i / 10, 3) for i in range(30)]
        assert [s.identity.index for s in simulator.stations if s.started] == list(range(1, 31))
        await simulator.wait_until(lambda counts: counts.booted == 30)
        await simulator.shutdown()


async def test_a_station_the_ui_stops_during_the_ramp_stays_stopped(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    csms = EmbeddedCsms()
    site = load_site(write_site(tmp_path, "1", count=5))
    async with trio.open_nursery() as nursery:
        network = MemoryNetwork(nursery, csms.handle_request)
        simulator = Simulator(site, connect=network.connect())
        await nursery.start(simulator.run)
        last = simulator.stations[-1]
        stopped = await execute(simulator, "stopChargingStation", {"hashIds": [last.hash_id]})
        assert stopped["status"] == "success"
        await trio.sleep(10)  # twice the ramp's length
        assert [s.started for s in simulator.stations] == [True, True, True, True, False]
        assert len(network.attempts) == 4
        await simulator.shutdown()


def test_a_negative_ramp_is_a_config_error(tmp_path: Path) -> None:
    path = write_site(tmp_path, "-1")
    with pytest.raises(ConfigError) as error:
        load_site(path)
    assert "simulator.ramp_per_second" in str(error.value)
    assert str(path) in str(error.value)
