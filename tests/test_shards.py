"""`--shard K/N`: N disjoint slices of one config whose union is the whole fleet."""

from __future__ import annotations

import contextlib
import functools
import json
import signal
import sys
from pathlib import Path

import pytest
import trio

from evsim_trio._resources import data_dir
from evsim_trio.cli import main
from evsim_trio.config import Site, load_site
from evsim_trio.csms import EmbeddedCsms
from evsim_trio.simulator import PlannedStation, build_specs, parse_shard, plan_fleet

TEMPLATES = data_dir("station_templates")


def write_site(tmp_path: Path, head: str = "") -> Path:
    path = tmp_path / "site.toml"
    path.write_text(
        f'[simulator]\nseed = 3\nstate_dir = "{(tmp_path / "state").as_posix()}"\n'
        '[log]\nlevel = "warning"\n[ui_server]\nenabled = false\n'
        f"{head}\n"
        f'[[stations]]\ntemplate = "{(TEMPLATES / "ac-3phase-2conn.toml").as_posix()}"\n'
        "count = 4\n"
        f'[[stations]]\ntemplate = "{(TEMPLATES / "ac-1phase.toml").as_posix()}"\ncount = 3\n'
        f'[[stations]]\ntemplate = "{(TEMPLATES / "dc-fast.toml").as_posix()}"\ncount = 2\n'
    )
    return path


def plan(site: Site, shard: tuple[int, int] | None = None) -> list[PlannedStation]:
    return plan_fleet(site, seed=3, embedded_csms_url="ws://127.0.0.1:9000", shard=shard)


def key(station: PlannedStation) -> tuple[str, int, int, str]:
    return (station.station_id, station.entry_index, station.index, station.supervision_url)


@pytest.mark.parametrize("count", [1, 2, 3, 4, 9, 12])
def test_shards_are_disjoint_and_together_the_whole_fleet(tmp_path: Path, count: int) -> None:
    site = load_site(write_site(tmp_path))
    whole = plan(site)
    assert len(whole) == 9
    shards = [plan(site, (k, count)) for k in range(1, count + 1)]
    ids = [station.station_id for shard in shards for station in shard]
    assert len(ids) == len(set(ids))  # disjoint
    assert set(ids) == {station.station_id for station in whole}
    # A station is the same in its shard as in the whole fleet (index, URL), and shards are
    # as even as they can be.
    assert sorted(key(s) for shard in shards for s in shard) == sorted(key(s) for s in whole)
    sizes = [len(shard) for shard in shards]
    assert max(sizes) - min(sizes) <= 1


def test_round_robin_urls_are_dealt_as_without_shards(tmp_path: Path) -> None:
    urls = '["ws://a.test/ocpp", "ws://b.test/ocpp", "ws://c.test/ocpp"]'
    site = load_site(
        write_site(tmp_path, f'[supervision]\nurls = {urls}\ndistribution = "round-robin"\n')
    )
    whole = {s.station_id: s.supervision_url for s in plan(site)}
    assert len(set(whole.values())) == 3
    for k in (1, 2, 3):
        for station in plan(site, (k, 3)):
            assert station.supervision_url == whole[station.station_id]


def test_a_shard_is_a_pure_function_of_config_and_shard(tmp_path: Path) -> None:
    site = load_site(write_site(tmp_path))
    assert plan(site, (2, 3)) == plan(load_site(site.path), (2, 3))
    specs = build_specs(
        site, seed=3, state_dir=tmp_path / "state", embedded_csms_url="ws://x:1", shard=(2, 3)
    )
    assert [s.identity.station_id for s in specs] == [s.station_id for s in plan(site, (2, 3))]


@pytest.mark.parametrize("text", ["0/3", "4/3", "1/0", "a/b", "3", "", "1/3/5", "-1/3"])
def test_bad_shards_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="K/N"):
        parse_shard(text)


def test_parse_shard_reads_k_of_n() -> None:
    assert parse_shard("2/3") == (2, 3)
    assert parse_shard("1/1") == (1, 1)


def test_plan_fleet_refuses_a_shard_out_of_range(tmp_path: Path) -> None:
    site = load_site(write_site(tmp_path))
    with pytest.raises(ValueError, match="shard 4/3"):
        plan(site, (4, 3))


def test_validate_with_a_shard_counts_its_stations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_site(tmp_path)
    assert main(["validate", str(path), "--shard", "2/4"]) == 0
    assert "ok: 2 stations (shard 2/4) from 3 templates" in capsys.readouterr().out


@pytest.mark.parametrize("text", ["0/3", "x"])
def test_run_and_validate_refuse_a_bad_shard_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    path = write_site(tmp_path)
    for command in ("run", "validate"):
        assert main([command, str(path), "--shard", text]) == 2
        assert "K/N" in capsys.readouterr().err


@pytest.mark.integration
async def test_three_shard_processes_run_the_whole_fleet_on_one_csms(tmp_path: Path) -> None:
    csms = EmbeddedCsms(heartbeat_interval=60)
    with trio.fail_after(60), contextlib.ExitStack() as files:
        async with trio.open_nursery() as nursery:
            await nursery.start(csms.serve, "127.0.0.1", 0)
            path = write_site(
                tmp_path, f'[csms]\nenabled = false\n[supervision]\nurls = ["{csms.url}/ocpp"]\n'
            )
            whole = {s.station_id for s in plan(load_site(path))}
            processes: list[trio.Process] = []
            for k in (1, 2, 3):
                command = [
                    sys.executable,
                    "-m",
                    "evsim_trio",
                    "run",
                    str(path),
                    "--shard",
                    f"{k}/3",
                    "--report",
                    str(tmp_path / f"report-{k}.json"),
                ]
                output = files.enter_context((tmp_path / f"shard-{k}.log").open("wb"))
                process: trio.Process = await nursery.start(
                    functools.partial(
                        trio.run_process, command, stdout=output, stderr=output, check=False
                    )
                )
                processes.append(process)
            await csms.wait_until(
                lambda: (
                    set(csms.stations) == whole
                    and all(r.registration == "Accepted" for r in csms.stations.values())
                )
            )
            for process in processes:
                process.send_signal(signal.SIGINT)
            for process in processes:
                await process.wait()
            nursery.cancel_scope.cancel()
    logs = {k: (tmp_path / f"shard-{k}.log").read_text() for k in (1, 2, 3)}
    assert [p.returncode for p in processes] == [0, 0, 0], logs
    reports = [json.loads((tmp_path / f"report-{k}.json").read_text()) for k in (1, 2, 3)]
    assert [r["shard"] for r in reports] == ["1/3", "2/3", "3/3"]
    shard_ids = [{s["id"] for s in report["stations"]} for report in reports]
    assert sum(len(ids) for ids in shard_ids) == len(whole) == 9
    assert set().union(*shard_ids) == whole
    assert all(r.boot_count == 1 for r in csms.stations.values())  # no id served twice


@pytest.mark.parametrize(("shards", "workers"), [(1, 2), (2, 2), (3, 2), (2, 3)])
def test_workers_deal_a_shard_disjointly(tmp_path: Path, shards: int, workers: int) -> None:
    site = load_site(write_site(tmp_path))
    for k in range(1, shards + 1):
        shard = plan(site, (k, shards))
        parts = [
            plan_fleet(
                site,
                seed=3,
                embedded_csms_url="ws://127.0.0.1:9000",
                shard=(k, shards),
                worker=(j, workers),
            )
            for j in range(1, workers + 1)
        ]
        dealt = [key(s) for part in parts for s in part]
        assert len(dealt) == len(set(dealt))
        assert sorted(dealt) == sorted(key(s) for s in shard)
        # Round-robin: worker j has the shard's stations j-1, j-1+W, ...
        assert [key(s) for s in parts[0]] == [key(s) for s in shard[::workers]]
