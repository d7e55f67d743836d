"""UI authentication: basic-auth and protocol-basic-auth, over WebSocket, HTTP and the page;
and the refusal to serve a non-loopback address without authentication."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import trio
import trio_websocket
from uiclient import (
    PASSWORD,
    USER,
    basic,
    http_request,
    open_ui,
    open_ws,
    protocol_auth,
    write_site,
)

from evsim_trio.cli import main
from evsim_trio.config import UiAuthentication, UiServerSection, load_site
from evsim_trio.ui import Authenticator, UiConfigError, check_ui_config, is_loopback, serve_ui

WRONG = basic(USER, "wrong")


# -- basic-auth ------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param([], 401, id="missing"),
        pytest.param([("Authorization", WRONG)], 401, id="wrong"),
        pytest.param([("Authorization", "Bearer abc")], 401, id="other-scheme"),
        pytest.param([("Authorization", "Basic !!!")], 401, id="not-base64"),
        pytest.param([("Authorization", basic())], 200, id="right"),
    ],
)
async def test_basic_auth_guards_http_procedures_metrics_and_the_page(
    tmp_path: Path, headers: list[tuple[str, str]], status: int
) -> None:
    with trio.fail_after(15):
        async with open_ui(tmp_path, auth="basic-auth") as ui:
            ui.auth_headers = headers
            procedure = await ui.post("heartbeat")
            metrics = await http_request(ui.url, "GET", "/metrics", headers=headers)
            page = await http_request(ui.url, "GET", "/static/nothing.js", headers=headers)
            heartbeats = sum(r.heartbeats for r in ui.csms.stations.values())
    assert procedure.status == status
    assert metrics.status == status
    if status == 401:
        assert procedure.json() == {"status": "failure", "error": "authentication required"}
        assert procedure.headers["www-authenticate"].startswith("Basic ")
        assert page.status == 401
        assert heartbeats == 0
    else:
        assert page.status == 404  # authenticated; the file just does not exist
        assert heartbeats == 2


@pytest.mark.integration
@pytest.mark.parametrize(
    ("headers", "accepted"),
    [
        pytest.param([], False, id="missing"),
        pytest.param([("Authorization", WRONG)], False, id="wrong"),
        pytest.param([("Authorization", basic())], True, id="right"),
    ],
)
async def test_basic_auth_guards_the_websocket_handshake(
    tmp_path: Path, headers: list[tuple[str, str]], accepted: bool
) -> None:
    with trio.fail_after(15):
        async with open_ui(tmp_path, auth="basic-auth") as ui:
            if accepted:
                async with open_ws(ui.url, headers=headers) as client:
                    assert (await client.request("heartbeat"))["status"] == "success"
            else:
                with pytest.raises(trio_websocket.ConnectionRejected) as rejected:
                    async with open_ws(ui.url, headers=headers):
                        pass
                assert rejected.value.status_code == 401


@pytest.mark.integration
async def test_basic_auth_ignores_the_protocol_credentials(tmp_path: Path) -> None:
    with trio.fail_after(15):
        async with open_ui(tmp_path, auth="basic-auth") as ui:
            with pytest.raises(trio_websocket.ConnectionRejected) as rejected:
                async with open_ws(ui.url, subprotocols=["ui0.0.1", protocol_auth()]):
                    pass
    assert rejected.value.status_code == 401


# -- protocol-basic-auth ---------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize(
    ("subprotocols", "accepted"),
    [
        pytest.param(["ui0.0.1"], False, id="missing"),
        pytest.param(["ui0.0.1", protocol_auth(USER, "wrong")], False, id="wrong"),
        pytest.param(["ui0.0.1", "authorization.basic.%%%"], False, id="not-base64"),
        pytest.param([protocol_auth()], False, id="right-but-no-ui-protocol"),
        pytest.param(["ui0.0.1", protocol_auth()], True, id="right"),
        pytest.param([protocol_auth(), "ui0.0.1"], True, id="right-first"),
    ],
)
async def test_protocol_basic_auth_guards_the_websocket_by_subprotocol(
    tmp_path: Path, subprotocols: list[str], accepted: bool
) -> None:
    with trio.fail_after(15):
        async with open_ui(tmp_path, auth="protocol-basic-auth") as ui:
            if accepted:
                async with open_ws(ui.url, subprotocols=subprotocols) as client:
                    assert client.ws.subprotocol == "ui0.0.1"
                    assert (await client.request("heartbeat"))["status"] == "success"
            else:
                with pytest.raises(trio_websocket.ConnectionRejected) as rejected:
                    async with open_ws(ui.url, subprotocols=subprotocols):
                        pass
                assert rejected.value.status_code in (400, 401)


@pytest.mark.integration
async def test_protocol_basic_auth_uses_the_header_for_http_and_serves_the_page(
    tmp_path: Path,
) -> None:
    with trio.fail_after(15):
        async with open_ui(tmp_path, auth="protocol-basic-auth") as ui:
            missing = await ui.post("heartbeat")
            ui.auth_headers = [("Authorization", basic())]
            right = await ui.post("heartbeat")
            # The page holds no data; it asks for the credentials it then sends by subprotocol.
            page = await http_request(ui.url, "GET", "/static/nothing.js")
    assert missing.status == 401
    assert right.status == 200
    assert page.status == 404


# -- the check, sans-I/O ---------------------------------------------------------------------


def authenticator(kind: str = "basic-auth") -> Authenticator:
    return Authenticator(UiAuthentication(True, kind, USER, PASSWORD))  # type: ignore[arg-type]


def test_credentials_are_accepted_in_standard_or_url_safe_base64_with_or_without_padding() -> None:
    auth = authenticator("protocol-basic-auth")
    raw = f"{USER}:{PASSWORD}".encode()
    for token in (
        base64.b64encode(raw).decode(),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    ):
        assert auth.check_subprotocols(["ui0.0.1", f"authorization.basic.{token}"])
        assert auth.check_header(f"Basic {token}")
    assert not auth.check_subprotocols(["ui0.0.1", "authorization.basic."])
    assert not auth.check_header("Basic")
    assert not auth.check_header(basic(USER, PASSWORD + "x"))


def test_without_authentication_everything_is_open() -> None:
    auth = Authenticator(UiAuthentication())
    assert auth.check_header(None)
    assert auth.check_websocket(None, ["ui0.0.1"])
    assert not auth.page_needs_header()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("example.org", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_non_loopback_host_without_authentication_is_refused() -> None:
    with pytest.raises(UiConfigError, match=r"0\.0\.0\.0.*not a loopback.*authentication"):
        check_ui_config(UiServerSection(host="0.0.0.0"))
    check_ui_config(UiServerSection(host="127.0.0.1"))
    check_ui_config(
        UiServerSection(
            host="0.0.0.0", authentication=UiAuthentication(True, "basic-auth", "u", "p")
        )
    )


async def test_serve_ui_refuses_an_open_non_loopback_host_before_binding(tmp_path: Path) -> None:
    site = load_site(write_site(tmp_path, counts={"ac-1phase.toml": 1}, host="0.0.0.0"))
    with trio.fail_after(5), pytest.raises(UiConfigError):
        await serve_ui(None, site.config.ui_server)  # type: ignore[arg-type]


def test_run_refuses_an_open_non_loopback_host_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_site(tmp_path, counts={"ac-1phase.toml": 1}, host="0.0.0.0")
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "ui_server.host" in err
    assert "[ui_server.authentication]" in err
