"""The load profile of issue 6 as a site config, a station template and an id tag file.

Stations with 2 connectors; ATG transactions of 20-40 s every 5-10 s (probability 1, Authorize
first, as the reference's templates do); MeterValues every 10 s; heartbeat 60 s. The embedded
CSMS is disabled (stations connect to the separate load CSMS), the UI server is disabled and
logging is at warning, so nothing is logged per message.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["PROFILE", "write_profile"]

PROFILE = {
    "connectors": 2,
    "atg_duration_s": [20, 40],
    "atg_delay_s": [5, 10],
    "atg_probability": 1,
    "atg_require_authorize": True,
    "meter_value_sample_interval_s": 10,
    "heartbeat_interval_s": 60,
}

_TEMPLATE = """\
# evsim-trio benchmark station: issue 6's load profile.
base_name = "BENCH"
charge_point_vendor = "evsim-trio"
charge_point_model = "BENCH-2C"
charge_point_serial_number_prefix = "BENCH-"
firmware_version = "1.0.0"
power = 22
power_unit = "kW"
power_shared_by_connectors = true
current_out_type = "AC"
voltage_out = 230
number_of_phases = 3
number_of_connectors = 2
use_connector_id0 = true
authorization_file = "tags.toml"
auto_reconnect_max_retries = -1

[[configuration]]
key = "HeartbeatInterval"
value = "{heartbeat}"

[[configuration]]
key = "MeterValueSampleInterval"
value = "{meter_interval}"

[[configuration]]
key = "MeterValuesSampledData"
value = "Energy.Active.Import.Register,Power.Active.Import,Current.Import,Voltage"

[[configuration]]
key = "NumberOfConnectors"
value = "2"
readonly = true

[automatic_transaction_generator]
enable = true
min_duration = 20
max_duration = 40
min_delay_between_two_transactions = 5
max_delay_between_two_transactions = 10
probability_of_start = 1
stop_after_hours = 24
stop_on_connection_failure = false
require_authorize = true
id_tag_distribution = "round-robin"

[connectors.0]

[connectors.1]
boot_status = "Available"

[[connectors.1.meter_values]]
measurand = "Energy.Active.Import.Register"
unit = "Wh"

[[connectors.1.meter_values]]
measurand = "Power.Active.Import"
unit = "W"
fluctuation_percent = 5

[[connectors.1.meter_values]]
measurand = "Current.Import"
unit = "A"
phase = "L1"

[[connectors.1.meter_values]]
measurand = "Voltage"
unit = "V"
phase = "L1-N"
"""

_TAGS = 'id_tags = ["TAG-0001", "TAG-0002", "TAG-0003", "TAG-0004"]\n'

_SITE = """\
# evsim-trio benchmark site: {stations} stations against the load CSMS at {url}.
[simulator]
seed = {seed}
state_dir = "{state_dir}"
statistics_interval = 60

[log]
level = "warning"
console = true

[supervision]
urls = ["{url}"]

[csms]
enabled = false

[ui_server]
enabled = false

[workers]
processes = {workers}

[[stations]]
template = "bench-2conn.toml"
count = {stations}
"""


def write_profile(
    directory: Path, *, stations: int, csms_url: str, seed: int = 1, workers: str = "0"
) -> Path:
    """Write site.toml, bench-2conn.toml and tags.toml into `directory`; return site.toml.

    `workers`: the `[workers] processes` value ("auto", or a number; 0 = in-process).
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tags.toml").write_text(_TAGS)
    (directory / "bench-2conn.toml").write_text(
        _TEMPLATE.format(
            heartbeat=PROFILE["heartbeat_interval_s"],
            meter_interval=PROFILE["meter_value_sample_interval_s"],
        )
    )
    site = directory / "site.toml"
    site.write_text(
        _SITE.format(
            stations=stations,
            url=csms_url,
            seed=seed,
            state_dir=(directory / "state").as_posix(),
            workers='"auto"' if workers == "auto" else int(workers),
        )
    )
    return site
