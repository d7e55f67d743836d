"""Site configs and station templates: shipped files, defaults, paths, and one-line errors."""

# The error tables keep one case per line, message in full, so that they read like the output.
# ruff: noqa: E501

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest

import evsim_trio.config
from evsim_trio._resources import data_dir
from evsim_trio.config import (
    AtgConfig,
    CommandsSupport,
    ConfigError,
    ConfigurationKey,
    ConnectorTemplate,
    FailIf,
    MeterValueTemplate,
    SiteConfig,
    StationTemplate,
    load_id_tags,
    load_site,
    load_template,
    validate_site,
)

TEMPLATES = data_dir("station_templates")
SHIPPED_TEMPLATES = sorted(
    p.name for p in TEMPLATES.glob("*.toml") if "authorization" not in p.name
)

# The smallest valid template: BootNotification needs a vendor and a model, a station a connector.
MINIMAL = 'charge_point_vendor = "V"\ncharge_point_model = "M"\nnumber_of_connectors = 1\n'


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project directory (the current directory) with configs/ and station_templates/."""
    (tmp_path / "configs").mkdir()
    (tmp_path / "station_templates").mkdir()
    (tmp_path / "station_templates" / "ok.toml").write_text(MINIMAL)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def site_error(body: str) -> ConfigError:
    Path("configs/site.toml").write_text(body)
    with pytest.raises(ConfigError) as info:
        load_site("configs/site.toml")
    return info.value


def template_error(body: str) -> ConfigError:
    Path("station_templates/t.toml").write_text(body)
    with pytest.raises(ConfigError) as info:
        load_template("station_templates/t.toml")
    return info.value


# -- shipped files ----------------------------------------------------------------------------


def test_shipped_site_config_loads_every_template_and_their_id_tags() -> None:
    site = load_site(data_dir("configs") / "site.toml")
    config = site.config
    assert [(e.template.name, e.count) for e in config.stations] == [
        ("ac-3phase-2conn.toml", 4),
        ("ac-1phase.toml", 3),
        ("dc-fast.toml", 2),
    ]
    assert config.csms.enabled
    assert (config.csms.port, config.csms.heartbeat_interval) == (9000, 60)
    assert set(site.templates) == {e.template for e in config.stations}
    assert all(e.template.is_absolute() for e in config.stations)
    [tags] = site.id_tags.values()
    assert len(tags) >= 10
    assert not any(tag.upper().startswith("BAD") for tag in tags)


def test_small_config_runs_two_stations_on_any_free_port() -> None:
    site = load_site(data_dir("configs") / "small.toml")
    assert sum(e.count for e in site.config.stations) == 2
    assert site.config.csms.port == 0


@pytest.mark.parametrize("name", SHIPPED_TEMPLATES)
def test_shipped_template_loads_with_connectors_and_id_tags(name: str) -> None:
    template = load_template(TEMPLATES / name)
    assert template.template_name == Path(name).stem
    assert template.connector_ids()
    assert all(cid in template.connectors for cid in template.connector_ids())
    assert template.authorization_file is not None
    assert load_id_tags(template.authorization_file)
    assert template.power is not None


def test_shipped_templates_have_the_documented_ratings() -> None:
    ac3 = load_template(TEMPLATES / "ac-3phase-2conn.toml")
    ac1 = load_template(TEMPLATES / "ac-1phase.toml")
    dc = load_template(TEMPLATES / "dc-fast.toml")
    assert (ac3.power, ac3.power_unit, ac3.phases(), ac3.connector_ids()) == (22, "kW", 3, (1, 2))
    assert (ac1.power, ac1.power_unit, ac1.phases(), ac1.connector_ids()) == (7400, "W", 1, (1,))
    assert (dc.power, dc.power_unit, dc.current_out_type, dc.phases()) == (150, "kW", "DC", 0)
    assert dc.number_of_connectors == (1, 2)
    assert (ac1.nominal_voltage(), dc.nominal_voltage()) == (230, 400)


def test_validate_site_lists_no_problem_for_the_shipped_config() -> None:
    assert validate_site(data_dir("configs") / "site.toml") == []


# -- defaults ---------------------------------------------------------------------------------


def test_minimal_template_gets_the_seed_defaults(project: Path) -> None:
    template = load_template("station_templates/ok.toml")
    expected = StationTemplate(
        charge_point_vendor="V", charge_point_model="M", number_of_connectors=1
    )
    assert attrs.evolve(template, path=None, connectors={}) == expected
    assert template.connectors == {1: ConnectorTemplate()}
    assert template.path == (project / "station_templates" / "ok.toml").resolve()
    seed_defaults = {
        "supervision_urls": (),
        "supervision_url_ocpp_key": "ConnectionUrl",
        "ocpp_version": "1.6",
        "ocpp_protocol": "json",
        "ocpp_strict_compliance": False,
        "ocpp_persistent_configuration": True,
        "station_info_persistent_configuration": True,
        "ws_options": {},
        "authorization_file": None,
        "base_name": "",
        "fixed_name": False,
        "power": None,
        "power_shared_by_connectors": False,
        "power_unit": "W",
        "current_out_type": "AC",
        "voltage_out": None,
        "number_of_phases": None,
        "use_connector_id0": True,
        "random_connectors": False,
        "reset_time": 60,
        "auto_register": False,
        "auto_reconnect_max_retries": -1,
        "reconnect_exponential_delay": False,
        "registration_max_retries": -1,
        "amperage_limitation_ocpp_key": None,
        "amperage_limitation_unit": "A",
        "enable_statistics": True,
        "must_authorize_at_remote_start": True,
        "payload_schema_validation": True,
        "begin_end_meter_values": False,
        "out_of_order_end_meter_values": False,
        "metering_per_transaction": True,
        "transaction_data_meter_values": False,
        "main_voltage_meter_values": True,
        "phase_line_to_line_voltage_meter_values": True,
        "custom_value_limitation_meter_values": True,
        "commands_support": CommandsSupport(incoming_commands={}, outgoing_commands={}),
        "configuration": (),
        "reconnect_base_delay": 1.0,
        "reconnect_max_delay": 60.0,
        "call_timeout": 30.0,
    }
    assert {key: getattr(template, key) for key in seed_defaults} == seed_defaults
    assert template.automatic_transaction_generator == AtgConfig(
        enable=False,
        min_duration=60,
        max_duration=80,
        min_delay_between_two_transactions=15,
        max_delay_between_two_transactions=30,
        probability_of_start=1,
        stop_after_hours=0.3,
        stop_on_connection_failure=True,
        require_authorize=True,
        id_tag_distribution="random",
    )
    assert (template.nominal_voltage(), template.phases()) == (230, 3)


def test_empty_site_config_takes_every_default(project: Path) -> None:
    Path("configs/site.toml").write_text("")
    config = load_site("configs/site.toml").config
    assert config == SiteConfig()
    assert config.simulator.seed is None
    assert config.simulator.state_dir == ".evsim-trio/state"
    assert config.simulator.statistics_interval == 60
    assert (config.log.level, config.log.console, config.log.file) == ("info", True, "")
    assert (config.log.format, config.log.rotate, config.log.max_files) == ("text", True, 7)
    assert config.supervision.urls == ()
    assert config.supervision.distribution == "charging-station-affinity"
    assert (config.csms.enabled, config.csms.host, config.csms.port) == (True, "127.0.0.1", 9000)
    assert config.csms.heartbeat_interval == 60
    assert config.workers.processes == 0
    assert (config.ui_server.enabled, config.ui_server.port) == (True, 8080)
    assert not config.ui_server.authentication.enabled
    assert not config.performance_storage.enabled
    assert config.performance_storage.type == "none"
    assert config.report.fail_if == FailIf()
    assert config.stations == ()


def test_meter_value_unit_defaults_to_the_measurands_unit(project: Path) -> None:
    Path("station_templates/t.toml").write_text(
        MINIMAL
        + "[connectors.1]\n"
        + "[[connectors.1.meter_values]]\n"
        + '[[connectors.1.meter_values]]\nmeasurand = "Current.Import"\nphase = "L1"\n'
        + '[[connectors.1.meter_values]]\nmeasurand = "Power.Factor"\n'
    )
    meters = load_template("station_templates/t.toml").connectors[1].meter_values
    assert meters == (
        MeterValueTemplate(measurand="Energy.Active.Import.Register", unit="Wh"),
        MeterValueTemplate(measurand="Current.Import", unit="A", phase="L1"),
        MeterValueTemplate(measurand="Power.Factor", unit=None),
    )


def test_configuration_values_written_as_numbers_or_booleans_become_ocpp_strings(
    project: Path,
) -> None:
    Path("station_templates/t.toml").write_text(
        MINIMAL
        + '[[configuration]]\nkey = "HeartbeatInterval"\nvalue = 30\n'
        + '[[configuration]]\nkey = "AuthorizeRemoteTxRequests"\nvalue = false\n'
        + '[[configuration]]\nkey = "Vendor"\nvalue = "x"\nreadonly = true\nvisible = false\n'
    )
    assert load_template("station_templates/t.toml").configuration == (
        ConfigurationKey("HeartbeatInterval", "30"),
        ConfigurationKey("AuthorizeRemoteTxRequests", "false"),
        ConfigurationKey("Vendor", "x", readonly=True, visible=False, reboot=False),
    )


def test_supervision_urls_may_be_one_string_as_in_the_seed(project: Path) -> None:
    Path("station_templates/t.toml").write_text(MINIMAL + 'supervision_urls = "ws://h:9/ocpp"\n')
    assert load_template("station_templates/t.toml").supervision_urls == ("ws://h:9/ocpp",)


# -- paths ------------------------------------------------------------------------------------


def test_template_paths_are_relative_to_the_site_file_not_the_current_directory(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    absolute = (project / "station_templates" / "ok.toml").as_posix()
    Path("configs/site.toml").write_text(
        '[[stations]]\ntemplate = "../station_templates/ok.toml"\ncount = 2\n'
        f'[[stations]]\ntemplate = "{absolute}"\ncount = 1\nbase_name = "OTHER"\n'
    )
    monkeypatch.chdir(project / "station_templates")  # somewhere else entirely
    site = load_site(project / "configs" / "site.toml")
    resolved = (project / "station_templates" / "ok.toml").resolve()
    assert [e.template for e in site.config.stations] == [resolved, resolved]
    assert list(site.templates) == [resolved]
    assert site.template_for(site.config.stations[1]) is site.templates[resolved]
    assert site.path == project / "configs" / "site.toml"


def test_authorization_file_is_relative_to_the_template(project: Path) -> None:
    (project / "station_templates" / "tags").mkdir()
    (project / "station_templates" / "tags" / "ids.toml").write_text('id_tags = ["A1", "B2"]\n')
    Path("station_templates/t.toml").write_text(MINIMAL + 'authorization_file = "tags/ids.toml"\n')
    Path("configs/site.toml").write_text(
        '[[stations]]\ntemplate = "../station_templates/t.toml"\ncount = 1\n'
    )
    site = load_site("configs/site.toml")
    template = next(iter(site.templates.values()))
    tags_file = (project / "station_templates" / "tags" / "ids.toml").resolve()
    assert template.authorization_file == tags_file
    assert site.id_tags == {tags_file: ("A1", "B2")}
    assert site.id_tags_for(template) == ("A1", "B2")


def test_authorization_file_may_be_the_reference_simulators_json_array(project: Path) -> None:
    Path("station_templates/ids.json").write_text(json.dumps(["X1", "X2", "X3"]))
    assert load_id_tags("station_templates/ids.json") == ("X1", "X2", "X3")


# -- connectors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("connectors", "count", "ids", "expected"),
    [
        # number_of_connectors beyond the definitions: the last definition is reused.
        ("0 1 2", "3", (1, 2, 3), {0: "Unavailable", 1: "Available", 2: "Faulted", 3: "Faulted"}),
        # fewer than defined: only the first ones are used.
        ("1 2", "1", (1,), {1: "Available"}),
        # not given: one connector per definition (connector 0 is the station).
        ("0 1 2", None, (1, 2), {0: "Unavailable", 1: "Available", 2: "Faulted"}),
        # a list of counts: room for the largest.
        ("1", "[1, 3]", (1, 2, 3), {1: "Available", 2: "Available", 3: "Available"}),
        # no definition at all: default connectors.
        ("", "2", (1, 2), {1: "Available", 2: "Available"}),
    ],
)
def test_connectors_follow_number_of_connectors_reusing_the_last_definition(
    project: Path,
    connectors: str,
    count: str | None,
    ids: tuple[int, ...],
    expected: dict[int, str],
) -> None:
    status = {"0": "Unavailable", "1": "Available", "2": "Faulted"}
    body = 'charge_point_vendor = "V"\ncharge_point_model = "M"\n'
    if count is not None:
        body += f"number_of_connectors = {count}\n"
    for cid in connectors.split():
        body += f'[connectors.{cid}]\nboot_status = "{status[cid]}"\n'
    Path("station_templates/t.toml").write_text(body)
    template = load_template("station_templates/t.toml")
    assert template.connector_ids() == ids
    assert {cid: c.boot_status for cid, c in template.connectors.items()} == expected


def test_reused_connector_keeps_the_meter_values_of_the_last_definition(project: Path) -> None:
    Path("station_templates/t.toml").write_text(
        'charge_point_vendor = "V"\ncharge_point_model = "M"\nnumber_of_connectors = 2\n'
        '[connectors.1]\n[[connectors.1.meter_values]]\nmeasurand = "Voltage"\n'
    )
    template = load_template("station_templates/t.toml")
    assert template.connectors[2] == template.connectors[1]
    assert template.connectors[2].meter_values[0].unit == "V"


# -- errors: one line, file and key path ------------------------------------------------------

SITE_ERRORS = [
    ("[simulator]\nsead = 1\n", "simulator.sead: unknown key (did you mean seed?)"),
    ('[simulator]\nseed = "x"\n', 'simulator.seed: expected an integer, got "x"'),
    ("[simulator]\nstatistics_interval = 0\n", "simulator.statistics_interval: expected a number > 0, got 0"),
    ('[log]\nlevel = "verbose"\n', 'log.level: expected one of debug, info, warning, error, critical, got "verbose"'),
    ('[log]\nconsole = "yes"\n', 'log.console: expected true or false, got "yes"'),
    ("[log]\nmax_files = -1\n", "log.max_files: expected an integer >= 0, got -1"),
    ('[supervision]\nurls = ["http://csms"]\n', 'supervision.urls[0]: expected a ws:// or wss:// URL, got "http://csms"'),
    ('[supervision]\nurls = "ws://csms"\n', 'supervision.urls: expected an array, got "ws://csms"'),
    ('[supervision]\ndistribution = "nearest"\n', 'supervision.distribution: expected one of charging-station-affinity, round-robin, random, got "nearest"'),
    ("[csms]\nport = 70000\n", "csms.port: expected an integer between 0 and 65535, got 70000"),
    ("[csms]\nheartbeat_interval = 0\n", "csms.heartbeat_interval: expected an integer > 0, got 0"),
    ('[workers]\nprocesses = "many"\n', 'workers.processes: expected "auto" or an integer, got "many"'),
    ("[workers]\nprocesses = -1\n", 'workers.processes: expected "auto" or an integer >= 0, got -1'),
    ("[ui_server.authentication]\nenabled = true\n", "ui_server.authentication.username: expected a non-empty string when enabled is true"),
    ('[ui_server.authentication]\ntype = "digest"\n', 'ui_server.authentication.type: expected one of basic-auth, protocol-basic-auth, got "digest"'),
    ('[performance_storage]\ntype = "mongodb"\n', 'performance_storage.type: expected one of none, jsonfile, sqlite, got "mongodb"'),
    ("[performance_storage]\nenabled = true\n", "performance_storage.type: expected jsonfile or sqlite when enabled is true"),
    ("[report.fail_if]\np95_ms = -1\n", "report.fail_if.p95_ms: expected a number >= 0, got -1"),
    ('[report.fail_if]\np99_ms = "1s"\n', 'report.fail_if.p99_ms: expected a number >= 0, got "1s"'),
    ("[report.fail_if]\nerror_rate = 2\n", "report.fail_if.error_rate: expected a number between 0 and 1, got 2"),
    ("[report.fail_if]\ntimeouts = 1.5\n", "report.fail_if.timeouts: expected an integer >= 0, got 1.5"),
    ("[report.fail_if]\np90_ms = 100\n", "report.fail_if.p90_ms: unknown key (did you mean p99_ms?)"),
    ("simulator = 5\n", "simulator: expected a table, got 5"),
    ("[[stations]]\ncount = 1\n", "stations[0].template: missing required key"),
    ('[[stations]]\ntemplate = "../station_templates/ok.toml"\n[[stations]]\ntemplate = "../station_templates/ok.toml"\ncount = -3\n', "stations[1].count: expected an integer >= 0, got -3"),
    ('[[stations]]\ntemplate = "../station_templates/ok.toml"\ncount = "3"\n', 'stations[0].count: expected an integer >= 0, got "3"'),
    ('[[stations]]\ntemplate = "../station_templates/ok.toml"\nbase_name = "a/b"\n', 'stations[0].base_name: expected letters, digits and . _ ~ - (no spaces or /), got "a/b"'),
    ('[[stations]]\ntemplate = "../station_templates/ok.toml"\nsupervision_urls = ["ws://"]\n', 'stations[0].supervision_urls[0]: expected a ws:// or wss:// URL, got "ws://"'),
    ('[[stations]]\ntemplate = ""\n', 'stations[0].template: expected a file path (a non-empty string), got ""'),
    ("[[stations]]\ntemplate = 3\n", "stations[0].template: expected a file path (a non-empty string), got 3"),
    ("stations = {}\n", "stations: expected an array, got a table"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "message"), SITE_ERRORS)
def test_bad_site_config_names_file_key_path_and_expectation(
    project: Path, body: str, message: str
) -> None:
    error = site_error(body)
    assert str(error) == f"configs/site.toml: {message}"
    assert error.errors[0] == str(error)


def test_missing_template_file_is_named_with_its_resolved_path(project: Path) -> None:
    error = site_error('[[stations]]\ntemplate = "../station_templates/x.toml"\n')
    missing = (project / "station_templates" / "x.toml").resolve()
    assert str(error) == f"configs/site.toml: stations[0].template: file not found: {missing}"


def test_station_without_any_supervision_url_is_an_error_when_the_csms_is_disabled(
    project: Path,
) -> None:
    error = site_error(
        '[csms]\nenabled = false\n[[stations]]\ntemplate = "../station_templates/ok.toml"\n'
    )
    assert str(error) == (
        "configs/site.toml: supervision.urls: no supervision URL and the embedded CSMS is "
        "disabled (stations[0] and its template ok.toml name none)"
    )


@pytest.mark.parametrize(
    "where",
    [
        '[supervision]\nurls = ["ws://csms:9000/ocpp"]\n',
        'supervision_urls = ["ws://csms:9000/ocpp"]\n',  # in the entry
    ],
)
def test_a_supervision_url_anywhere_allows_a_disabled_csms(project: Path, where: str) -> None:
    head, entry = (where, "") if where.startswith("[") else ("", where)
    Path("configs/site.toml").write_text(
        f"[csms]\nenabled = false\n{head}"
        f'[[stations]]\ntemplate = "../station_templates/ok.toml"\n{entry}'
    )
    assert load_site("configs/site.toml").config.csms.enabled is False


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[simulator\n", "configs/site.toml:1: TOML syntax error: Expected ']' at the end of a table declaration (column 11)"),
        ("[log]\nlevel = \n", "configs/site.toml:2: TOML syntax error: Invalid value (column 9)"),
        ("[log]\nlevel = 'info", "configs/site.toml:2: TOML syntax error: Expected \"'\" at the end of the file"),
    ],
)  # fmt: skip
def test_toml_syntax_error_names_the_line(project: Path, body: str, message: str) -> None:
    assert str(site_error(body)) == message


def test_missing_site_file_is_one_line(project: Path) -> None:
    with pytest.raises(ConfigError, match=r"^configs/absent\.toml: file not found$"):
        load_site("configs/absent.toml")


TEMPLATE_ERRORS = [
    ("", "charge_point_model: expected a string of 1 to 20 characters (BootNotification chargePointModel), got \"\""),
    ('charge_point_vendor = "V"\ncharge_point_model = "M"\n', "number_of_connectors: expected an integer >= 1 or [connectors.N] tables with N >= 1: the template defines no connector"),
    (MINIMAL + "sead = 1\n", "sead: unknown key"),
    (MINIMAL + "base_nme = 'X'\n", "base_nme: unknown key (did you mean base_name?)"),
    (MINIMAL + "path = 'x'\n", "path: unknown key"),
    (MINIMAL + "power = -1\n", "power: expected a number > 0, got -1"),
    (MINIMAL + "power = [11, 0]\n", "power[1]: expected a number > 0, got 0"),
    (MINIMAL + "power = '22kW'\n", 'power: expected a number or an array of them, got "22kW"'),
    (MINIMAL + "power_unit = 'MW'\n", 'power_unit: expected one of W, kW, got "MW"'),
    (MINIMAL + "voltage_out = 0\n", "voltage_out: expected a number > 0, got 0"),
    (MINIMAL + "number_of_phases = 2\n", "number_of_phases: expected one of 0, 1, 3, got 2"),
    (MINIMAL + "number_of_phases = true\n", "number_of_phases: expected one of 0, 1, 3, got true"),
    (MINIMAL + "current_out_type = 'DC'\nnumber_of_phases = 3\n", "number_of_phases: expected 0 for a DC station, got 3"),
    (MINIMAL + "number_of_phases = 0\n", "number_of_phases: expected 1 or 3 for an AC station, got 0"),
    ('charge_point_vendor = "V"\ncharge_point_model = "M"\nnumber_of_connectors = 0\n', "number_of_connectors: expected an integer >= 1, got 0"),
    ('charge_point_vendor = "V"\ncharge_point_model = "M"\nnumber_of_connectors = "2"\n', 'number_of_connectors: expected an integer or an array of them, got "2"'),
    (MINIMAL + "ocpp_version = 1.6\n", 'ocpp_version: expected one of 1.6 (a string: write "1.6"), got 1.6'),
    (MINIMAL + "ocpp_version = '2.0.1'\n", 'ocpp_version: expected one of 1.6, got "2.0.1"'),
    (MINIMAL + "auto_reconnect_max_retries = -2\n", "auto_reconnect_max_retries: expected an integer >= -1, got -2"),
    (MINIMAL + "reconnect_max_delay = 0.5\n", "reconnect_max_delay: expected a number >= reconnect_base_delay (1), got 0.5"),
    (MINIMAL + "call_timeout = 0\n", "call_timeout: expected a number > 0, got 0"),
    ("charge_point_vendor = 'A-vendor-name-longer-than-20'\ncharge_point_model = 'M'\n", "charge_point_vendor: expected a string of 1 to 20 characters (BootNotification chargePointVendor), got \"A-vendor-name-longer-than-20\""),
    (MINIMAL + "base_name = 'a b'\n", 'base_name: expected letters, digits and . _ ~ - (no spaces or /), got "a b"'),
    (MINIMAL + "supervision_urls = ['http://x']\n", 'supervision_urls[0]: expected a ws:// or wss:// URL, got "http://x"'),
    (MINIMAL + "ws_options = 3\n", "ws_options: expected a table, got 3"),
    (MINIMAL + "[commands_support.incoming_commands]\nBootNotification = false\n", "commands_support.incoming_commands.BootNotification: expected an OCPP 1.6 action sent by the CSMS"),
    (MINIMAL + "[commands_support.outgoing_commands]\nHeartbeat = 'no'\n", 'commands_support.outgoing_commands.Heartbeat: expected true or false, got "no"'),
    (MINIMAL + "[[configuration]]\nkey = 'X'\n", "configuration[0].value: missing required key"),
    (MINIMAL + "[[configuration]]\nkey = 'HeartbeatInterval'\nvalue = 'often'\n", 'configuration[0].value: expected an integer >= 0 for HeartbeatInterval, got "often"'),
    (MINIMAL + "[[configuration]]\nkey = 'LocalPreAuthorize'\nvalue = 'yes'\n", 'configuration[0].value: expected true or false for LocalPreAuthorize, got "yes"'),
    (MINIMAL + "[[configuration]]\nkey = 'A'\nvalue = '1'\n[[configuration]]\nkey = 'A'\nvalue = '2'\n", "configuration[1].key: A is already set by configuration[0]"),
    (MINIMAL + "[[configuration]]\nkey = 'A'\nvalue = '1'\nhidden = true\n", "configuration[0].hidden: unknown key"),
    (MINIMAL + "configuration = [1]\n", "configuration[0]: expected a table, got 1"),
    (MINIMAL + "[automatic_transaction_generator]\nmin_duration = 100\n", "automatic_transaction_generator.max_duration: expected a value >= min_duration (100), got 80"),
    (MINIMAL + "[automatic_transaction_generator]\nmax_delay_between_two_transactions = 10\n", "automatic_transaction_generator.max_delay_between_two_transactions: expected a value >= min_delay_between_two_transactions (15), got 10"),
    (MINIMAL + "[automatic_transaction_generator]\nprobability_of_start = 1.5\n", "automatic_transaction_generator.probability_of_start: expected a number between 0 and 1, got 1.5"),
    (MINIMAL + "[automatic_transaction_generator]\nmin_duration = 1.5\n", "automatic_transaction_generator.min_duration: expected an integer >= 0, got 1.5"),
    (MINIMAL + "[automatic_transaction_generator]\nstop_after_hours = 0\n", "automatic_transaction_generator.stop_after_hours: expected a number > 0, got 0"),
    (MINIMAL + "[automatic_transaction_generator]\nid_tag_distribution = 'fair'\n", 'automatic_transaction_generator.id_tag_distribution: expected one of random, round-robin, connector-affinity, got "fair"'),
    (MINIMAL + "[automatic_transaction_generator]\nenable = true\n", "authorization_file: expected a file of id tags: automatic_transaction_generator.enable is true"),
    (MINIMAL + "[firmware_upgrade]\nfailure = 'later'\n", 'firmware_upgrade.failure: expected one of none, download, install, got "later"'),
    (MINIMAL + "[connectors.1]\nboot_status = 'Broken'\n", 'connectors.1.boot_status: expected one of Available, Preparing, Charging, SuspendedEVSE, SuspendedEV, Finishing, Reserved, Unavailable, Faulted, got "Broken"'),
    (MINIMAL + "[connectors.1]\nstatus = 'Available'\n", "connectors.1.status: unknown key (did you mean boot_status?)"),
    (MINIMAL + "[connectors.one]\n", "connectors.one: expected an integer key >= 0"),
    (MINIMAL + "[connectors]\n1 = 5\n", "connectors.1: expected a table, got 5"),
    (MINIMAL + "[connectors.1]\n[connectors.3]\n", "connectors: expected connector ids 1, 2, ... without gaps (and 0 for the station), got 1, 3"),
    (MINIMAL + "[connectors.1]\n[[connectors.1.meter_values]]\nunit = 'kw'\n", 'connectors.1.meter_values[0].unit: expected one of W, kW, Wh, kWh, varh, kvarh, var, kvar, VA, kVA, A, V, Celsius, Fahrenheit, K, Percent, Hertz, got "kw"'),
    (MINIMAL + "[connectors.1]\n[[connectors.1.meter_values]]\nmeasurand = 'Energy'\n", 'connectors.1.meter_values[0].measurand: expected one of Energy.Active.Export.Register, Energy.Active.Import.Register, Energy.Reactive.Export.Register, Energy.Reactive.Import.Register, Energy.Active.Export.Interval, Energy.Active.Import.Interval, Energy.Reactive.Export.Interval, Energy.Reactive.Import.Interval, Power.Active.Export, Power.Active.Import, Power.Offered, Power.Reactive.Export, Power.Reactive.Import, Power.Factor, Current.Import, Current.Export, Current.Offered, Voltage, Frequency, Temperature, SoC, RPM, got "Energy"'),
    (MINIMAL + "[connectors.1]\n[[connectors.1.meter_values]]\nmeasurand = 'Current.Import'\nunit = 'W'\n", "connectors.1.meter_values[0].unit: expected A for measurand Current.Import, got W"),
    (MINIMAL + "[connectors.1]\n[[connectors.1.meter_values]]\nphase = 'L4'\n", 'connectors.1.meter_values[0].phase: expected one of L1, L2, L3, N, L1-N, L2-N, L3-N, L1-L2, L2-L3, L3-L1, got "L4"'),
    (MINIMAL + "[connectors.1]\n[[connectors.1.meter_values]]\nlocation = 'Roof'\n", 'connectors.1.meter_values[0].location: expected one of Body, Cable, EV, Inlet, Outlet, got "Roof"'),
    (MINIMAL + "[connectors.1]\n[[connectors.1.meter_values]]\nfluctuation_percent = 150\n", "connectors.1.meter_values[0].fluctuation_percent: expected a number between 0 and 100, got 150"),
    (MINIMAL + "[connectors.1]\n[[connectors.1.meter_values]]\nfluctuation_percent = '10'\n", 'connectors.1.meter_values[0].fluctuation_percent: expected a number between 0 and 100, got "10"'),
    (MINIMAL + "[connectors.1]\nmeter_values = {}\n", "connectors.1.meter_values: expected an array, got a table"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "message"), TEMPLATE_ERRORS)
def test_bad_template_names_file_key_path_and_expectation(
    project: Path, body: str, message: str
) -> None:
    error = template_error(body)
    assert str(error) == f"station_templates/t.toml: {message}"
    assert "\n" not in str(error)


def test_error_in_a_template_names_the_template_as_reached_from_the_site(project: Path) -> None:
    Path("station_templates/keba.toml").write_text(
        MINIMAL + "[connectors.1]\n[[connectors.1.meter_values]]\nunit = 'watt'\n"
    )
    error = site_error('[[stations]]\ntemplate = "../station_templates/keba.toml"\n')
    assert str(error).startswith(
        "station_templates/keba.toml: connectors.1.meter_values[0].unit: expected one of W, kW, "
    )


def test_every_problem_is_listed_and_unknown_keys_come_first(project: Path) -> None:
    error = site_error(
        "[log]\nlevel = 'loud'\n[csms]\nprot = 9000\n[[stations]]\ntemplte = 'x.toml'\n"
    )
    assert error.errors == [
        "configs/site.toml: csms.prot: unknown key (did you mean port?)",
        "configs/site.toml: stations[0].templte: unknown key (did you mean template?)",
        'configs/site.toml: log.level: expected one of debug, info, warning, error, critical, got "loud"',
        "configs/site.toml: stations[0].template: missing required key",
    ]
    assert str(error) == error.errors[0]


def test_problems_in_several_templates_are_all_collected(project: Path) -> None:
    Path("station_templates/a.toml").write_text(MINIMAL + "power = 0\n")
    Path("station_templates/b.toml").write_text(MINIMAL + "reset_time = -1\n")
    error = site_error(
        '[[stations]]\ntemplate = "../station_templates/a.toml"\n'
        '[[stations]]\ntemplate = "../station_templates/b.toml"\n'
        '[[stations]]\ntemplate = "../station_templates/a.toml"\n'
    )
    assert error.errors == [
        "station_templates/a.toml: power: expected a number > 0, got 0",
        "station_templates/b.toml: reset_time: expected a number >= 0, got -1",
    ]
    assert validate_site("configs/site.toml") == error.errors


# -- authorization files ----------------------------------------------------------------------


def test_missing_authorization_file_is_named_from_the_template(project: Path) -> None:
    error = template_error(MINIMAL + 'authorization_file = "tags.toml"\n')
    missing = (project / "station_templates" / "tags.toml").resolve()
    assert str(error) == (
        f"station_templates/t.toml: authorization_file: file not found: {missing}"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("id_tags = []\n", " id_tags: expected at least one id tag"),
        ("id_tags = 'A1'\n", ' id_tags: expected an array of id tags, got "A1"'),
        ("id_tags = ['A1', 7]\n", " id_tags[1]: expected a string of 1 to 20 characters (an OCPP 1.6 IdToken), got 7"),
        ("id_tags = ['A1', 'ABCDEFGHIJKLMNOPQRSTU']\n", ' id_tags[1]: expected a string of 1 to 20 characters (an OCPP 1.6 IdToken), got "ABCDEFGHIJKLMNOPQRSTU"'),
        ("tags = ['A1']\n", " tags: unknown key"),
        ("", " id_tags: missing required key"),
        ("id_tags = [\n", "2: TOML syntax error: Invalid value at the end of the file"),
    ],
)  # fmt: skip
def test_bad_authorization_file_is_named_relative_to_the_template(
    project: Path, content: str, message: str
) -> None:
    Path("station_templates/tags.toml").write_text(content)
    Path("station_templates/t.toml").write_text(MINIMAL + 'authorization_file = "tags.toml"\n')
    error = site_error('[[stations]]\ntemplate = "../station_templates/t.toml"\n')
    assert str(error) == f"station_templates/tags.toml:{message}"


def test_bad_json_authorization_file_names_the_line(project: Path) -> None:
    Path("station_templates/ids.json").write_text('[\n"A1",\n]\n')
    with pytest.raises(ConfigError, match=r"^station_templates/ids\.json:3: JSON syntax error: "):
        load_id_tags("station_templates/ids.json")


# -- the reference documentation --------------------------------------------------------------

DOCS = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
MODELS = [
    getattr(evsim_trio.config, name)
    for name in evsim_trio.config.__all__
    if name != "Site" and attrs.has(getattr(evsim_trio.config, name))
]


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.__name__)
def test_configuration_reference_documents_every_key(model: type) -> None:
    if not DOCS.exists():
        pytest.skip("docs/ is not part of this checkout")
    text = DOCS.read_text(encoding="utf-8")
    keys = [f.name for f in attrs.fields(model) if f.name != "path"]  # path: not a key
    forms = ("`{}`", ".{}`", "`[{}]`", "`[[{}]]`", "`[{}.", "`[[{}.", "`{}.")  # keys, sections
    assert [key for key in keys if not any(f.format(key) in text for f in forms)] == []
