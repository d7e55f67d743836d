"""The web page in headless Chromium, against a running fleet with the embedded CSMS.

The fleet and its UI server run in the test's trio loop; the browser is driven by Playwright's
sync API in a worker thread (`trio.to_thread.run_sync`), so both sides run at once. Every wait
is on a page condition (Playwright's auto-waiting `expect`), never a sleep. Chromium is Debian's
`/usr/bin/chromium`, never a browser downloaded by `playwright install`; when it (or the
playwright package) is missing the test fails saying how to install it.

The test writes docs/screenshot.png, the README's picture of the page.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trio
from uiclient import PASSWORD, USER, Ui, open_ui

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, HttpCredentials, Locator, Page

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium tries to reach the internet.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshot.png"
# Playwright's bound on each page condition; every wait below is one of these.
EXPECT_TIMEOUT_MS = 15_000
STATION = "AC7-00001"
ID_TAG = "E2E-TAG-0001"


def require_browser() -> None:
    """Fail (never skip) with the fix when Chromium or Playwright is missing."""
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium "
            "(`apt-get install -y chromium`; .ci/run installs it)",
            pytrace=False,
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail(
            "the playwright package is missing: `pip install 'playwright>=1.45'` "
            "(`nox -s e2e` installs it; never `playwright install`, Chromium comes from apt)",
            pytrace=False,
        )


def station(page: Page, station_id: str) -> Locator:
    """The <tbody> of one station in the table."""
    return page.locator(f'tbody.station[data-station-id="{station_id}"]')


def connector(page: Page, station_id: str, connector_id: int) -> Locator:
    """One connector row of a station."""
    return station(page, station_id).locator(
        f'tr.connector-row[data-connector-id="{connector_id}"]'
    )


def last_log(page: Page, procedure: str) -> Locator:
    """The newest activity log entry of a procedure."""
    return page.locator(f'#log li[data-procedure="{procedure}"]').first


def drive_page(
    url: str,
    session: Callable[[Page], None],
    page_errors: list[str],
    http_credentials: HttpCredentials | None = None,
) -> None:
    """A browser session on the page; runs in a worker thread (Playwright's sync API).

    Uncaught page errors and console errors are collected in `page_errors`, except Chromium's
    own report of a refused WebSocket handshake (expected when credentials are wrong).
    """
    from playwright.sync_api import expect, sync_playwright

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and not message.text.startswith("WebSocket connection to"):
            page_errors.append(f"console: {message.text}")

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                viewport={"width": 1440, "height": 1000}, http_credentials=http_credentials
            )
            page = context.new_page()
            page.on("pageerror", lambda error: page_errors.append(f"page error: {error}"))
            page.on("console", on_console)
            page.goto(url)
            session(page)
        finally:
            browser.close()


def charging_session(page: Page) -> None:
    """What a user does: look, configure, charge, add stations; what the page must show."""
    from playwright.sync_api import expect

    # The fleet is listed live: every station, connected and registered.
    expect(page.locator("#connection")).to_have_text("connected")
    expect(page.locator("tbody.station")).to_have_count(3)
    first = station(page, STATION)
    expect(first.locator(".ws-state")).to_have_text("open")
    expect(first.locator(".registration")).to_have_text("Accepted")
    expect(first.locator(".template")).to_have_text("ac-1phase")
    plug = connector(page, STATION, 1)
    expect(plug.locator(".connector-status")).to_have_text("Available")
    expect(page.locator("#simulator-state")).to_have_text("simulator started")

    # Sample energy every second on this station, from the page's configuration form.
    first.get_by_label(f"Select {STATION}").check()
    expect(page.locator("#selected-count")).to_have_text("1")
    config = page.locator("#config-form")
    config.get_by_label("Key").fill("MeterValueSampleInterval")
    config.get_by_label("Value").fill("1")
    config.get_by_role("button", name="Change").click()
    expect(last_log(page, "changeConfiguration")).to_have_attribute("data-status", "success")

    # A refused change is shown as a failure, with the station's answer.
    config.get_by_label("Key").fill("NoSuchKey")
    config.get_by_role("button", name="Change").click()
    banner = page.locator("#failure-banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("changeConfiguration failed")
    expect(banner).to_contain_text(f"{STATION}: ChangeConfiguration NoSuchKey: NotSupported")
    expect(last_log(page, "changeConfiguration")).to_have_attribute("data-status", "failure")
    banner.get_by_role("button", name="Dismiss").click()
    expect(banner).to_be_hidden()

    # Start a transaction from the connector's row: Charging, with an id and growing energy.
    plug.get_by_label(f"idTag for {STATION} connector 1").fill(ID_TAG)
    plug.get_by_role("button", name="Start tx", exact=True).click()
    expect(plug.locator(".connector-status")).to_have_text("Charging")
    expect(plug.locator(".id-tag")).to_have_text(ID_TAG)
    expect(plug.locator(".tx-id")).to_have_text(re.compile(r"^\d+$"))
    energy = plug.locator("td.energy")
    expect(energy).not_to_have_attribute("data-tx-wh", "0")
    first_reading = energy.get_attribute("data-tx-wh")
    assert first_reading is not None
    expect(energy).not_to_have_attribute("data-tx-wh", first_reading)
    later_reading = energy.get_attribute("data-tx-wh")
    assert later_reading is not None
    assert float(later_reading) > float(first_reading) > 0
    expect(plug.locator("td.power")).to_have_text(re.compile(r"^\d+\.\d\d kW$"))
    expect(page.locator("#summary-charging")).to_have_text("1")

    # The traffic chart has points from /metrics.
    expect(page.locator("#chart")).not_to_have_attribute("data-samples", "0")
    expect(page.locator("#rate-now")).to_have_text(re.compile(r"^\d+(\.\d)?$"))

    # Add two stations from a template: they appear, connect and register.
    page.locator("#template-select").select_option("ac-1phase")
    add = page.locator("#add-form")
    add.get_by_label("Number").fill("2")
    add.get_by_role("button", name="Add stations").click()
    expect(last_log(page, "addChargingStations")).to_have_attribute("data-status", "success")
    expect(page.locator("tbody.station")).to_have_count(5)
    for added in ("AC7-00003", "AC7-00004"):
        expect(station(page, added).locator(".ws-state")).to_have_text("open")
        expect(station(page, added).locator(".registration")).to_have_text("Accepted")
        expect(connector(page, added, 1).locator(".connector-status")).to_have_text("Available")

    # A few chart points for the README's picture (one per 2 s scrape), still charging.
    expect(page.locator("#chart")).to_have_attribute(
        "data-samples", re.compile(r"^([5-9]|\d{2,})$"), timeout=30_000
    )
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    # Stop the transaction: the connector is free again.
    plug.get_by_role("button", name="Stop tx", exact=True).click()
    expect(plug.locator(".connector-status")).to_have_text("Available")
    expect(plug.locator(".tx-id")).to_have_text("")
    expect(plug.get_by_role("button", name="Start tx", exact=True)).to_be_visible()
    expect(last_log(page, "stopTransaction")).to_have_attribute("data-status", "success")

    # With no transaction running the page lists stations only after an action and on the
    # server's ["refresh"] push: a station reconnecting after its answer shows up by the push.
    second = station(page, "AC7-00002")
    second.get_by_role("button", name="Disconnect", exact=True).click()
    expect(second.locator(".ws-state")).to_have_text("closed")
    expect(second.get_by_role("button", name="Connect", exact=True)).to_be_visible()
    pushes = page.locator("body").get_attribute("data-refreshes")
    assert pushes is not None
    assert int(pushes) > 0
    second.get_by_role("button", name="Connect", exact=True).click()
    expect(second.locator(".ws-state")).to_have_text("open")
    expect(second.locator(".registration")).to_have_text("Accepted")
    expect(page.locator("body")).not_to_have_attribute("data-refreshes", pushes)


async def test_page_lists_stations_charges_and_adds_stations(tmp_path: Path) -> None:
    require_browser()
    page_errors: list[str] = []
    async with open_ui(tmp_path, counts={"ac-1phase.toml": 2, "ac-3phase-2conn.toml": 1}) as ui:
        # The bound covers the whole browser session; each page wait has its own (15 s).
        with trio.fail_after(180):
            await trio.to_thread.run_sync(drive_page, ui.url, charging_session, page_errors)
        assert_fleet_saw_it(ui)
    assert page_errors == []
    assert SCREENSHOT.is_file()


def assert_fleet_saw_it(ui: Ui) -> None:
    """What the page did reached the stations and the CSMS."""
    assert [s.station_id for s in ui.stations][-2:] == ["AC7-00003", "AC7-00004"]
    record = ui.csms.stations[STATION]
    assert record.received["StartTransaction"] == 1
    assert record.received["StopTransaction"] == 1
    assert record.received["MeterValues"] >= 2
    [first] = [s for s in ui.stations if s.station_id == STATION]
    assert first.configuration.get("MeterValueSampleInterval") == "1"
    assert first.connectors[1].transaction is None
    assert ui.csms.stations["AC7-00002"].connections == 2


def protocol_auth_session(page: Page) -> None:
    """protocol-basic-auth: the page asks for credentials and sends them as a subprotocol."""
    from playwright.sync_api import expect

    login = page.locator("#login")
    expect(login).to_be_visible()
    expect(page.locator("#connection")).to_have_text("not connected")
    login.get_by_label("User").fill(USER)
    login.get_by_label("Password").fill("wrong password")
    login.get_by_role("button", name="Connect").click()
    expect(page.locator("#login-message")).to_contain_text("refused these credentials")
    login.get_by_label("Password").fill(PASSWORD)
    login.get_by_role("button", name="Connect").click()
    expect(page.locator("#connection")).to_have_text("connected")
    expect(login).to_be_hidden()
    expect(page.locator("tbody.station")).to_have_count(2)
    expect(station(page, STATION).locator(".registration")).to_have_text("Accepted")
    # /metrics needs the Authorization header in this mode: the page sends it.
    expect(page.locator("#chart")).not_to_have_attribute("data-samples", "0")
    expect(page.locator("#chart-note")).not_to_have_class(re.compile("failure-text"))


def basic_auth_session(page: Page) -> None:
    """basic-auth: the browser's own credentials cover the page, its WebSocket and /metrics."""
    from playwright.sync_api import expect

    expect(page.locator("#connection")).to_have_text("connected")
    expect(page.locator("#login")).to_be_hidden()
    expect(page.locator("tbody.station")).to_have_count(2)
    expect(page.locator("#chart")).not_to_have_attribute("data-samples", "0")


async def test_page_signs_in_with_protocol_basic_auth(tmp_path: Path) -> None:
    require_browser()
    page_errors: list[str] = []
    async with open_ui(tmp_path, auth="protocol-basic-auth") as ui:
        with trio.fail_after(120):
            await trio.to_thread.run_sync(drive_page, ui.url, protocol_auth_session, page_errors)
    assert page_errors == []


async def test_page_works_behind_basic_auth(tmp_path: Path) -> None:
    require_browser()
    page_errors: list[str] = []
    credentials: HttpCredentials = {"username": USER, "password": PASSWORD}
    async with open_ui(tmp_path, auth="basic-auth") as ui:
        with trio.fail_after(120):
            await trio.to_thread.run_sync(
                drive_page, ui.url, basic_auth_session, page_errors, credentials
            )
    assert page_errors == []


METRICS_BEFORE = """# HELP evsim_messages_sent OCPP CALLs sent by stations, by action
# TYPE evsim_messages_sent counter
evsim_messages_sent_total{action="Heartbeat"} 4.0
evsim_messages_sent_total{action="Meter\\\\Values \\"x\\""} 6.0
evsim_csms_response_seconds_bucket{action="Heartbeat",le="0.005"} 3.0
evsim_csms_response_seconds_bucket{action="Heartbeat",le="0.05"} 4.0
evsim_csms_response_seconds_bucket{action="Heartbeat",le="+Inf"} 4.0
evsim_csms_response_seconds_count{action="Heartbeat"} 4.0
evsim_csms_response_seconds_sum{action="Heartbeat"} 0.012
"""
METRICS_AFTER = """evsim_messages_sent_total{action="Heartbeat"} 14.0
evsim_messages_sent_total{action="Meter\\\\Values \\"x\\""} 16.0
evsim_csms_response_seconds_bucket{action="Heartbeat",le="0.005"} 3.0
evsim_csms_response_seconds_bucket{action="Heartbeat",le="0.05"} 14.0
evsim_csms_response_seconds_bucket{action="Heartbeat",le="+Inf"} 14.0
evsim_csms_response_seconds_count{action="Heartbeat"} 14.0
evsim_csms_response_seconds_sum{action="Heartbeat"} 0.212
"""
CHART_MATH = """async ([before, after]) => {
    const m = await import("./static/metrics.js");
    const labels = m.parsePrometheus(before)[1].labels;
    const a = m.fleetTotals(m.parsePrometheus(before), 0);
    const b = m.fleetTotals(m.parsePrometheus(after), 4000);
    return {labels, point: m.ratePoint(a, b), reset: m.ratePoint(b, {...a, time: 8000})};
}"""


def chart_math_session(page: Page) -> None:
    """The chart's numbers from two /metrics texts: rates, mean latency, p95 bound, resets."""
    from playwright.sync_api import expect

    expect(page.locator("#connection")).to_have_text("connected")
    result = page.evaluate(CHART_MATH, [METRICS_BEFORE, METRICS_AFTER])
    assert result["labels"] == {"action": 'Meter\\Values "x"'}
    point = result["point"]
    assert point["rate"] == pytest.approx(20 / 4)  # 20 CALLs in 4 s
    assert point["latencyMs"] == pytest.approx(200 / 10)  # 0.2 s over 10 answers
    assert point["p95Ms"] == pytest.approx(50)  # the 0.05 s bucket holds them all
    # Counters that went down (stations deleted): that interval is unknown, not negative.
    assert result["reset"]["rate"] is None
    assert result["reset"]["latencyMs"] is None


async def test_chart_reads_rates_and_latency_from_metrics_text(tmp_path: Path) -> None:
    require_browser()
    page_errors: list[str] = []
    async with open_ui(tmp_path, counts={"ac-1phase.toml": 1}) as ui:
        with trio.fail_after(120):
            await trio.to_thread.run_sync(drive_page, ui.url, chart_math_session, page_errors)
    assert page_errors == []
