"""The command line: validate, run (in a subprocess, stopped by SIGINT), exit codes."""

from __future__ import annotations

import functools
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from evsim_trio._resources import data_dir
from evsim_trio.cli import main

TEMPLATE = (data_dir("station_templates") / "ac-3phase-2conn.toml").as_posix()


def small_site(tmp_path: Path, *, count: int = 2, extra: str = "") -> Path:
    path = tmp_path / "site.toml"
    path.write_text(
        f'[simulator]\nseed = 3\nstate_dir = "{(tmp_path / "state").as_posix()}"\n'
        '[log]\nconsole = true\nlevel = "warning"\n'
        "[csms]\nenabled = true\nport = 0\n[ui_server]\nenabled = false\n"
        f'{extra}\n[[stations]]\ntemplate = "{TEMPLATE}"\ncount = {count}\n'
    )
    return path


def test_validate_accepts_the_shipped_site_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(data_dir("configs") / "site.toml")]) == 0
    assert "ok" in capsys.readouterr().out


def test_validate_finds_the_shipped_config_by_its_documented_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no configs/ here: the shipped one is used
    assert main(["validate", "configs/site.toml"]) == 0
    assert "stations" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[[stations]]\ncount = 1\n", "stations[0].template"),
        ('[[stations]]\ntemplate = "nope.toml"\ncount = 1\n', "file not found"),
        (f'[[stations]]\ntemplate = "{TEMPLATE}"\ncount = -1\n', "stations[0].count"),
        ("[simulator\n", "TOML"),
        (
            f'[csms]\nenabled = false\n[[stations]]\ntemplate = "{TEMPLATE}"\ncount = 1\n',
            "supervision",
        ),
    ],
)
def test_validate_reports_a_bad_config_in_one_line_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(body)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "Traceback" not in err
    assert message in err
    assert "bad.toml" in err


def test_validate_reports_colliding_station_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = small_site(tmp_path, extra=f'[[stations]]\ntemplate = "{TEMPLATE}"\ncount = 1\n')
    assert main(["validate", str(path)]) == 2
    assert "already used" in capsys.readouterr().err


def test_missing_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "absent.toml")]) == 2
    assert "absent.toml" in capsys.readouterr().err


def test_usage_error_exits_2() -> None:
    assert main(["frobnicate"]) == 2


async def test_run_boots_then_stops_cleanly_on_sigint_within_2_s(tmp_path: Path) -> None:
    path = small_site(tmp_path)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            command = [sys.executable, "-m", "evsim_trio", "run", str(path)]
            process: trio.Process = await nursery.start(
                functools.partial(
                    trio.run_process,
                    command,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    check=False,
                )
            )
            assert process.stdout is not None
            seen = b""
            async for chunk in process.stdout:
                seen += chunk
                if b"2 booted" in seen:
                    break
            assert b"embedded CSMS: ws://127.0.0.1:" in seen
            process.send_signal(signal.SIGINT)
            with trio.move_on_after(2) as scope:
                async for chunk in process.stdout:
                    seen += chunk
                await process.wait()
            assert not scope.cancelled_caught, seen
            assert process.returncode == 0, seen
            assert b"stopped after" in seen


def test_console_script_is_installed() -> None:
    result = subprocess.run(
        [Path(sys.executable).parent / "evsim-trio", "--version"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0
    assert result.stdout.startswith("evsim-trio ")
