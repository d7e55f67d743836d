"""The HTTP side of the UI server: the procedure twin's status codes and bad bodies, the page.

Every procedure's effect over HTTP is tested in test_ui_ws.py (its `transport` parameter).
"""

from __future__ import annotations

import functools
import json
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from uiclient import Ui, http_request, open_ui, write_site

import evsim_trio.ui._app as ui_app
from evsim_trio.ui import MAX_PAYLOAD_BYTES

pytestmark = pytest.mark.integration


@pytest.fixture
async def ui(tmp_path: Path) -> AsyncIterator[Ui]:
    async with open_ui(tmp_path) as running:
        yield running


async def post_raw(ui: Ui, procedure: str, body: bytes) -> tuple[int, dict[str, object]]:
    response = await http_request(ui.url, "POST", f"/ui/0.0.1/{procedure}", body=body)
    return response.status, response.json()


async def test_success_is_200_with_the_response_payload(ui: Ui) -> None:
    with trio.fail_after(10):
        response = await ui.post("heartbeat", {"hashIds": ui.hash_ids()[:1]})
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"status": "success", "hashIdsSucceeded": ui.hash_ids()[:1]}


async def test_an_empty_body_is_an_empty_payload(ui: Ui) -> None:
    with trio.fail_after(10):
        status, body = await post_raw(ui, "simulatorState", b"")
    assert status == 200
    assert body["status"] == "success"


async def test_the_readme_spelling_of_procedures_is_accepted(ui: Ui) -> None:
    with trio.fail_after(10):
        response = await ui.post("Heartbeat")
    assert response.status == 200
    assert sum(r.heartbeats for r in ui.csms.stations.values()) == 2


@pytest.mark.parametrize(
    ("procedure", "body", "error"),
    [
        pytest.param("heartbeat", b"{not json", "not valid JSON", id="not-json"),
        pytest.param("heartbeat", b"\xff\xfe\x00", "not valid JSON", id="not-utf8"),
        pytest.param("heartbeat", b"[1, 2]", "JSON object", id="not-an-object"),
        pytest.param("noSuchProcedure", b"{}", "unknown procedure", id="unknown-procedure"),
        pytest.param("startTransaction", b'{"connectorId": 1}', "idTag", id="missing-field"),
        pytest.param("lockConnector", b'{"connectorId": -1}', "invalid payload", id="range"),
        pytest.param("heartbeat", b'{"hashIds": ["nope"]}', "unknown hashIds", id="hash-ids"),
    ],
)
async def test_bad_requests_are_400_failures_naming_the_problem(
    ui: Ui, procedure: str, body: bytes, error: str
) -> None:
    with trio.fail_after(10):
        status, payload = await post_raw(ui, procedure, body)
        assert status == 400
        assert payload["status"] == "failure"
        assert error in str(payload["error"])
        # The server is still fine.
        assert (await ui.post("simulatorState")).status == 200


async def test_a_body_over_1_mib_is_refused_with_413(ui: Ui) -> None:
    body = json.dumps({"data": "x" * MAX_PAYLOAD_BYTES}).encode()
    with trio.fail_after(10):
        status, payload = await post_raw(ui, "dataTransfer", body)
        assert status == 413
        assert payload["status"] == "failure"
        assert (await ui.post("simulatorState")).status == 200
    assert sum(r.received["DataTransfer"] for r in ui.csms.stations.values()) == 0


async def test_procedures_answer_only_post(ui: Ui) -> None:
    with trio.fail_after(10):
        response = await http_request(ui.url, "GET", "/ui/0.0.1/heartbeat")
    assert response.status == 405


async def test_a_burst_of_requests_from_one_client_is_served_or_rate_limited(ui: Ui) -> None:
    statuses: list[int] = []
    pool = trio.CapacityLimiter(50)  # a client with a pool of 50 connections

    async def one() -> None:
        async with pool:
            statuses.append((await ui.post("simulatorState")).status)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for _ in range(300):
                nursery.start_soon(one)
        assert set(statuses) <= {200, 429}
        assert statuses.count(200) >= 100
        assert len(statuses) == 300


# -- the page --------------------------------------------------------------------------------


async def test_the_page_is_404_with_a_hint_until_the_web_ui_is_installed(
    ui: Ui, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ui_app, "WEB_DIR", tmp_path / "no-web")
    with trio.fail_after(10):
        page = await http_request(ui.url, "GET", "/")
        static = await http_request(ui.url, "GET", "/static/app.js")
    assert page.status == 404
    assert b"ui0.0.1" in page.body
    assert static.status == 404


async def test_the_page_and_its_static_files_are_served_from_the_web_directory(
    ui: Ui, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    web = tmp_path / "web"
    (web / "js").mkdir(parents=True)
    (web / "index.html").write_text("<!doctype html><title>evsim</title>")
    (web / "js" / "app.js").write_text("export const answer = 42;\n")
    (tmp_path / "secret.txt").write_text("no")
    monkeypatch.setattr(ui_app, "WEB_DIR", web)
    with trio.fail_after(10):
        page = await http_request(ui.url, "GET", "/")
        script = await http_request(ui.url, "GET", "/static/js/app.js")
        missing = await http_request(ui.url, "GET", "/static/js/nope.js")
        escape = await http_request(ui.url, "GET", "/static/../secret.txt")
        escape_encoded = await http_request(ui.url, "GET", "/static/%2e%2e/secret.txt")
    assert page.status == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.body == b"<!doctype html><title>evsim</title>"
    assert script.status == 200
    assert "javascript" in script.headers["content-type"]
    assert script.body == b"export const answer = 42;\n"
    assert missing.status == 404
    assert escape.status == 404
    assert escape_encoded.status == 404


async def test_run_serves_the_ui_and_prints_its_url(tmp_path: Path) -> None:
    path = write_site(tmp_path, counts={"ac-1phase.toml": 1})
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            command = [sys.executable, "-m", "evsim_trio", "run", str(path)]
            process: trio.Process = await nursery.start(
                functools.partial(
                    trio.run_process,
                    command,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    check=False,
                )
            )
            assert process.stdout is not None
            seen = b""
            async for chunk in process.stdout:
                seen += chunk
                if b"1 booted" in seen:
                    break
            match = re.search(rb"UI: (http://127\.0\.0\.1:\d+)/", seen)
            assert match is not None, seen
            metrics = await http_request(match.group(1).decode(), "GET", "/metrics")
            assert metrics.status == 200
            assert b'evsim_stations{state="booted"} 1.0' in metrics.body
            process.send_signal(signal.SIGINT)
            with trio.move_on_after(5) as scope:
                async for chunk in process.stdout:
                    seen += chunk
                await process.wait()
            assert not scope.cancelled_caught, seen
            assert process.returncode == 0, seen
