"""Station templates (`station_templates/*.toml`): the seed's template keys in snake_case.

Defaults are the seed README's; `reconnect_base_delay`, `reconnect_max_delay`, `call_timeout`
and `[firmware_upgrade]` are evsim-trio additions.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import attrs

from evsim_trio.config._checks import integer, length, number, url_safe, ws_urls
from evsim_trio.config._convert import (
    HOOK,
    int_or_ints,
    number_or_numbers,
    ocpp_text,
    string_or_strings,
)
from evsim_trio.config._errors import OMIT, Invalid, show
from evsim_trio.config._ocpp16 import (
    BOOLEAN_KEYS,
    INTEGER_KEYS,
    ChargePointStatus,
    Location,
    Measurand,
    Phase,
    UnitOfMeasure,
    units_for,
)
from evsim_trio.ocpp.v16 import CENTRAL_SYSTEM_INITIATED, CHARGE_POINT_INITIATED

IdTagDistribution = Literal["random", "round-robin", "connector-affinity"]
PowerUnit = Literal["W", "kW"]
CurrentOutType = Literal["AC", "DC"]
AmperageUnit = Literal["A", "cA", "dA", "mA"]
Phases = Literal[0, 1, 3]


@attrs.frozen
class ConfigurationKey:
    """One `[[configuration]]` entry: an OCPP configuration key and its initial value."""

    key: str = attrs.field(validator=length(1, 50, "an OCPP 1.6 configuration key"))
    value: str = attrs.field(
        metadata={HOOK: ocpp_text}, validator=length(0, 500, "an OCPP 1.6 configuration value")
    )
    readonly: bool = False
    visible: bool = True
    reboot: bool = False

    def __attrs_post_init__(self) -> None:
        if self.key in INTEGER_KEYS:
            try:
                ok = int(self.value) >= 0
            except ValueError:
                ok = False
            if not ok:
                raise Invalid(
                    ("value",), f"expected an integer >= 0 for {self.key}, got {show(self.value)}"
                )
        if self.key in BOOLEAN_KEYS and self.value.lower() not in ("true", "false"):
            raise Invalid(
                ("value",), f"expected true or false for {self.key}, got {show(self.value)}"
            )


@attrs.frozen
class AtgConfig:
    """`[automatic_transaction_generator]`: per-connector random transactions."""

    enable: bool = False
    min_duration: int = attrs.field(default=60, validator=integer(ge=0))
    max_duration: int = attrs.field(default=80, validator=integer(ge=0))
    min_delay_between_two_transactions: int = attrs.field(default=15, validator=integer(ge=0))
    max_delay_between_two_transactions: int = attrs.field(default=30, validator=integer(ge=0))
    probability_of_start: float = attrs.field(default=1.0, validator=number(ge=0, le=1))
    stop_after_hours: float = attrs.field(default=0.3, validator=number(gt=0))
    stop_on_connection_failure: bool = True
    require_authorize: bool = True
    id_tag_distribution: IdTagDistribution = "random"

    def __attrs_post_init__(self) -> None:
        for low, high in (
            ("min_duration", "max_duration"),
            ("min_delay_between_two_transactions", "max_delay_between_two_transactions"),
        ):
            if getattr(self, high) < getattr(self, low):
                raise Invalid(
                    (high,),
                    f"expected a value >= {low} ({getattr(self, low)}), got {getattr(self, high)}",
                )


FirmwareFailure = Literal["none", "download", "install"]


@attrs.frozen
class FirmwareUpgrade:
    """`[firmware_upgrade]`: how an UpdateFirmware (OCPP 1.6 §5.19) plays out (evsim-trio addition).

    `version` is the firmware version installed; empty derives it from the running version by
    incrementing its last integer ("1.4.2" -> "1.4.3").
    """

    download_duration: float = attrs.field(default=10.0, validator=number(ge=0))
    install_duration: float = attrs.field(default=30.0, validator=number(ge=0))
    failure: FirmwareFailure = "none"
    version: str = attrs.field(
        default="", validator=length(0, 50, "BootNotification firmwareVersion")
    )
    reset: bool = True


def _default_unit(meter: MeterValueTemplate) -> str | None:
    units = units_for(meter.measurand)
    return units[0] if units else None


@attrs.frozen
class MeterValueTemplate:
    """One `[[connectors.N.meter_values]]` entry: a sampled value the connector reports.

    `unit` defaults to the measurand's natural unit (Wh for the default
    Energy.Active.Import.Register); None means the sampled value carries no unit.
    """

    measurand: Measurand = "Energy.Active.Import.Register"
    unit: UnitOfMeasure | None = attrs.field(default=attrs.Factory(_default_unit, takes_self=True))
    phase: Phase | None = None
    location: Location | None = None
    value: str | None = attrs.field(default=None, metadata={HOOK: ocpp_text})
    fluctuation_percent: float | None = attrs.field(default=None, validator=number(ge=0, le=100))

    def __attrs_post_init__(self) -> None:
        units = units_for(self.measurand)
        if units and self.unit not in units:
            raise Invalid(
                ("unit",),
                f"expected {' or '.join(units)} for measurand {self.measurand}, got {self.unit}",
            )


@attrs.frozen
class ConnectorTemplate:
    """One `[connectors.N]` table."""

    boot_status: ChargePointStatus = "Available"
    meter_values: tuple[MeterValueTemplate, ...] = ()


def _commands(known: frozenset[str], direction: str) -> Any:
    def check(_inst: Any, attribute: attrs.Attribute[Any], value: Mapping[str, bool]) -> None:
        for name in value:
            if name not in known:
                raise Invalid(
                    (attribute.name, name), f"expected an OCPP 1.6 action sent by the {direction}"
                )

    return check


@attrs.frozen
class CommandsSupport:
    """`[commands_support]`: actions switched on or off; an empty table means all on."""

    incoming_commands: Mapping[str, bool] = attrs.field(
        factory=dict, validator=_commands(CENTRAL_SYSTEM_INITIATED, "CSMS")
    )
    outgoing_commands: Mapping[str, bool] = attrs.field(
        factory=dict, validator=_commands(CHARGE_POINT_INITIATED, "station")
    )


@attrs.frozen
class StationTemplate:
    """A station template: identity, electrical ratings, behaviour switches, OCPP keys.

    Loaded by `load_template`, which also resolves `authorization_file` against the template's
    directory and fills `connectors` so that every id of `connector_ids()` has a definition.
    """

    supervision_urls: tuple[str, ...] = attrs.field(
        default=(), validator=ws_urls, metadata={HOOK: string_or_strings}
    )
    supervision_user: str = ""
    supervision_password: str = ""
    supervision_url_ocpp_configuration: bool = False
    supervision_url_ocpp_key: str = "ConnectionUrl"
    ocpp_version: Literal["1.6"] = "1.6"
    ocpp_protocol: Literal["json"] = "json"
    ocpp_strict_compliance: bool = False
    ocpp_persistent_configuration: bool = True
    station_info_persistent_configuration: bool = True
    ws_options: Mapping[str, Any] = attrs.field(factory=dict)
    authorization_file: Path | None = None
    base_name: str = attrs.field(default="", validator=url_safe)
    name_suffix: str = attrs.field(default="", validator=url_safe)
    fixed_name: bool = False
    charge_point_model: str = attrs.field(
        default="", validator=length(1, 20, "BootNotification chargePointModel")
    )
    charge_point_vendor: str = attrs.field(
        default="", validator=length(1, 20, "BootNotification chargePointVendor")
    )
    charge_point_serial_number_prefix: str = attrs.field(
        default="", validator=length(0, 25, "BootNotification chargePointSerialNumber")
    )
    charge_box_serial_number_prefix: str = attrs.field(
        default="", validator=length(0, 25, "BootNotification chargeBoxSerialNumber")
    )
    firmware_version: str = attrs.field(
        default="", validator=length(0, 50, "BootNotification firmwareVersion")
    )
    power: float | tuple[float, ...] | None = attrs.field(
        default=None, validator=number(gt=0), metadata={HOOK: number_or_numbers}
    )
    power_shared_by_connectors: bool = False
    power_unit: PowerUnit = "W"
    current_out_type: CurrentOutType = "AC"
    voltage_out: float | None = attrs.field(default=None, validator=number(gt=0))
    number_of_phases: Phases | None = None
    number_of_connectors: int | tuple[int, ...] | None = attrs.field(
        default=None, validator=integer(ge=1), metadata={HOOK: int_or_ints}
    )
    use_connector_id0: bool = True
    random_connectors: bool = False
    reset_time: float = attrs.field(default=60.0, validator=number(ge=0))
    auto_register: bool = False
    auto_reconnect_max_retries: int = attrs.field(default=-1, validator=integer(ge=-1))
    reconnect_exponential_delay: bool = False
    registration_max_retries: int = attrs.field(default=-1, validator=integer(ge=-1))
    amperage_limitation_ocpp_key: str | None = None
    amperage_limitation_unit: AmperageUnit = "A"
    enable_statistics: bool = True
    must_authorize_at_remote_start: bool = True
    payload_schema_validation: bool = True
    begin_end_meter_values: bool = False
    out_of_order_end_meter_values: bool = False
    metering_per_transaction: bool = True
    transaction_data_meter_values: bool = False
    main_voltage_meter_values: bool = True
    phase_line_to_line_voltage_meter_values: bool = True
    custom_value_limitation_meter_values: bool = True
    commands_support: CommandsSupport = attrs.field(factory=CommandsSupport)
    configuration: tuple[ConfigurationKey, ...] = ()
    automatic_transaction_generator: AtgConfig = attrs.field(factory=AtgConfig)
    firmware_upgrade: FirmwareUpgrade = attrs.field(factory=FirmwareUpgrade)
    connectors: Mapping[int, ConnectorTemplate] = attrs.field(factory=dict)
    # evsim-trio additions
    reconnect_base_delay: float = attrs.field(default=1.0, validator=number(gt=0))
    reconnect_max_delay: float = attrs.field(default=60.0, validator=number(gt=0))
    call_timeout: float = attrs.field(default=30.0, validator=number(gt=0))
    # The file it was loaded from (set by the loader, not a template key).
    path: Path | None = attrs.field(default=None, metadata={OMIT: True})

    def __attrs_post_init__(self) -> None:
        phases = self.number_of_phases
        if self.current_out_type == "DC" and phases not in (None, 0):
            raise Invalid(("number_of_phases",), f"expected 0 for a DC station, got {phases}")
        if self.current_out_type == "AC" and phases == 0:
            raise Invalid(("number_of_phases",), "expected 1 or 3 for an AC station, got 0")
        if self.reconnect_max_delay < self.reconnect_base_delay:
            raise Invalid(
                ("reconnect_max_delay",),
                f"expected a number >= reconnect_base_delay ({show(self.reconnect_base_delay)}), "
                f"got {show(self.reconnect_max_delay)}",
            )
        seen: dict[str, int] = {}
        for index, entry in enumerate(self.configuration):
            if entry.key in seen:
                raise Invalid(
                    ("configuration", index, "key"),
                    f"{entry.key} is already set by configuration[{seen[entry.key]}]",
                )
            seen[entry.key] = index
        ids = sorted(cid for cid in self.connectors if cid > 0)
        if ids != list(range(1, len(ids) + 1)):
            raise Invalid(
                ("connectors",),
                "expected connector ids 1, 2, ... without gaps (and 0 for the station), "
                f"got {', '.join(str(cid) for cid in sorted(self.connectors))}",
            )
        if self.automatic_transaction_generator.enable and self.authorization_file is None:
            raise Invalid(
                ("authorization_file",),
                "expected a file of id tags: automatic_transaction_generator.enable is true",
            )

    @property
    def template_name(self) -> str:
        """The template's file name without extension ("template" if not loaded from a file)."""
        return self.path.stem if self.path is not None else "template"

    def max_connectors(self) -> int:
        """The largest number of connectors (ids > 0) a station of this template can have."""
        count = self.number_of_connectors
        if count is None:
            return sum(1 for cid in self.connectors if cid > 0)
        return max(count) if isinstance(count, tuple) else count

    def connector_ids(self) -> tuple[int, ...]:
        """Connector ids > 0: `1..number_of_connectors` (its largest value if it is a list)."""
        return tuple(range(1, self.max_connectors() + 1))

    def nominal_voltage(self) -> float:
        """`voltage_out`, or the seed's default: 230 V AC, 400 V DC."""
        if self.voltage_out is not None:
            return self.voltage_out
        return 230.0 if self.current_out_type == "AC" else 400.0

    def phases(self) -> int:
        """`number_of_phases`, or the seed's default: 3 AC, 0 DC."""
        if self.number_of_phases is not None:
            return self.number_of_phases
        return 3 if self.current_out_type == "AC" else 0
