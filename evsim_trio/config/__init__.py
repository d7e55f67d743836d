"""Site configs and station templates: TOML files read into frozen attrs models.

`load_site` reads a site config, every station template it names and their id tag files, and
raises `ConfigError` with a one-line message naming the file, the key path and what was expected.
"""

from __future__ import annotations

from evsim_trio.config._errors import ConfigError
from evsim_trio.config._load import load_id_tags, load_site, load_template, validate_site
from evsim_trio.config._ocpp16 import ChargePointStatus
from evsim_trio.config._site import (
    CsmsSection,
    FailIf,
    LogSection,
    PerformanceStorageSection,
    ReportSection,
    SimulatorSection,
    Site,
    SiteConfig,
    StationEntry,
    SupervisionSection,
    UiAuthentication,
    UiServerSection,
    WorkersSection,
)
from evsim_trio.config._template import (
    AtgConfig,
    CommandsSupport,
    ConfigurationKey,
    ConnectorTemplate,
    FirmwareUpgrade,
    MeterValueTemplate,
    StationTemplate,
)

__all__ = [
    "AtgConfig",
    "ChargePointStatus",
    "CommandsSupport",
    "ConfigError",
    "ConfigurationKey",
    "ConnectorTemplate",
    "CsmsSection",
    "FailIf",
    "FirmwareUpgrade",
    "LogSection",
    "MeterValueTemplate",
    "PerformanceStorageSection",
    "ReportSection",
    "SimulatorSection",
    "Site",
    "SiteConfig",
    "StationEntry",
    "StationTemplate",
    "SupervisionSection",
    "UiAuthentication",
    "UiServerSection",
    "WorkersSection",
    "load_id_tags",
    "load_site",
    "load_template",
    "validate_site",
]
