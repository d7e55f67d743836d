"""The site config (`configs/site.toml`): which stations to run, and where."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import attrs

from evsim_trio.config._checks import (
    PORT,
    integer,
    non_empty_when_enabled,
    number,
    url_safe,
    ws_urls,
)
from evsim_trio.config._convert import HOOK, int_or_auto
from evsim_trio.config._errors import Invalid
from evsim_trio.config._template import StationTemplate

LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LogFormat = Literal["text", "json"]
Distribution = Literal["charging-station-affinity", "round-robin", "random"]
UiAuthenticationType = Literal["basic-auth", "protocol-basic-auth"]
PerformanceStorageType = Literal["none", "jsonfile", "sqlite"]


@attrs.frozen
class SimulatorSection:
    """`[simulator]`: seed, where station state is kept, statistics period, start ramp."""

    seed: int | None = None
    state_dir: str = ".evsim-trio/state"
    statistics_interval: float = attrs.field(default=60.0, validator=number(gt=0))
    # Stations started per second at the start of a run (0: all at once).
    ramp_per_second: float = attrs.field(default=0.0, validator=number(ge=0))


@attrs.frozen
class LogSection:
    """`[log]`: level, console and file output, format, rotation."""

    level: LogLevel = "info"
    console: bool = True
    file: str = ""
    format: LogFormat = "text"
    rotate: bool = True
    max_files: int = attrs.field(default=7, validator=integer(ge=0))


@attrs.frozen
class SupervisionSection:
    """`[supervision]`: the CSMS URLs used by stations that name none, and how to share them."""

    urls: tuple[str, ...] = attrs.field(default=(), validator=ws_urls)
    distribution: Distribution = "charging-station-affinity"


@attrs.frozen
class CsmsSection:
    """`[csms]`: the embedded CSMS."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = attrs.field(default=9000, validator=PORT)
    heartbeat_interval: int = attrs.field(default=60, validator=integer(gt=0))


@attrs.frozen
class WorkersSection:
    """`[workers]`: worker processes (0 = all stations in the main process)."""

    processes: int | Literal["auto"] = attrs.field(default=0, metadata={HOOK: int_or_auto})

    @processes.validator
    def _check_processes(self, attribute: attrs.Attribute[object], value: object) -> None:
        if isinstance(value, int) and value < 0:
            raise Invalid((attribute.name,), f'expected "auto" or an integer >= 0, got {value}')


@attrs.frozen
class UiAuthentication:
    """`[ui_server.authentication]`."""

    enabled: bool = False
    type: UiAuthenticationType = "basic-auth"
    username: str = attrs.field(default="", validator=non_empty_when_enabled)
    password: str = attrs.field(default="", validator=non_empty_when_enabled)


@attrs.frozen
class UiServerSection:
    """`[ui_server]`: the UI's WebSocket/HTTP server."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = attrs.field(default=8080, validator=PORT)
    authentication: UiAuthentication = attrs.field(factory=UiAuthentication)


@attrs.frozen
class PerformanceStorageSection:
    """`[performance_storage]`: where fleet statistics are recorded every statistics interval.

    Records are written when `enabled` and `type` is not `none`.
    """

    enabled: bool = False
    type: PerformanceStorageType = attrs.field(default="none")
    uri: str = ""

    @type.validator
    def _check_type(self, attribute: attrs.Attribute[object], value: object) -> None:
        if self.enabled and value == "none":
            raise Invalid((attribute.name,), "expected jsonfile or sqlite when enabled is true")

    @property
    def active(self) -> bool:
        """Whether records are written."""
        return self.enabled and self.type != "none"


@attrs.frozen
class FailIf:
    """`[report.fail_if]`: thresholds that make `evsim-trio run` exit 3; unset ones are off."""

    p95_ms: float | None = attrs.field(default=None, validator=number(ge=0))
    p99_ms: float | None = attrs.field(default=None, validator=number(ge=0))
    error_rate: float | None = attrs.field(default=None, validator=number(ge=0, le=1))
    timeouts: int | None = attrs.field(default=None, validator=integer(ge=0))


@attrs.frozen
class ReportSection:
    """`[report]`: the end-of-run report's pass/fail thresholds."""

    fail_if: FailIf = attrs.field(factory=FailIf)


@attrs.frozen
class StationEntry:
    """One `[[stations]]` entry: `count` stations from one template."""

    template: Path
    count: int = attrs.field(default=1, validator=integer(ge=0))
    base_name: str | None = attrs.field(default=None, validator=url_safe)
    supervision_urls: tuple[str, ...] | None = attrs.field(default=None, validator=ws_urls)
    auto_start: bool = True


@attrs.frozen
class SiteConfig:
    """The whole site config file, every section defaulted."""

    simulator: SimulatorSection = attrs.field(factory=SimulatorSection)
    log: LogSection = attrs.field(factory=LogSection)
    supervision: SupervisionSection = attrs.field(factory=SupervisionSection)
    csms: CsmsSection = attrs.field(factory=CsmsSection)
    workers: WorkersSection = attrs.field(factory=WorkersSection)
    ui_server: UiServerSection = attrs.field(factory=UiServerSection)
    performance_storage: PerformanceStorageSection = attrs.field(factory=PerformanceStorageSection)
    report: ReportSection = attrs.field(factory=ReportSection)
    stations: tuple[StationEntry, ...] = ()


@attrs.frozen
class Site:
    """A loaded site: its config, every template it uses and their id tags.

    `path` is the site file as given; `templates` is keyed by each entry's resolved
    `StationEntry.template`, `id_tags` by each template's resolved `authorization_file`.
    """

    path: Path
    config: SiteConfig
    templates: Mapping[Path, StationTemplate]
    id_tags: Mapping[Path, tuple[str, ...]]

    def template_for(self, entry: StationEntry) -> StationTemplate:
        """The template of a `[[stations]]` entry."""
        return self.templates[entry.template]

    def id_tags_for(self, template: StationTemplate) -> tuple[str, ...]:
        """The id tags of `template` (empty when it has no authorization file)."""
        if template.authorization_file is None:
            return ()
        return self.id_tags.get(template.authorization_file, ())
