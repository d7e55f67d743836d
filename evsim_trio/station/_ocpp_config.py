"""A station's OCPP configuration keys (OCPP 1.6 §9): defaults, template overrides, changes.

The standard keys and their rules are the table of `_keys`. A station starts with the keys of
that table it ships for its feature profiles, overridden and extended by its template's
`[[configuration]]` entries; the CSMS changes them with ChangeConfiguration (`change`, 1.6 §5.3),
the station's own code with `set`. Key names compare case-insensitively (they are CiString50 in
1.6 §5.3/§5.8); the name a key was created with is the one reported.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Literal, Protocol

import attrs

from evsim_trio.station._keys import (
    KEYS,
    InvalidValue,
    KeySpec,
    default_phase_rotation,
    normalize,
    split_csl,
)

log = logging.getLogger(__name__)

ChangeStatus = Literal["Accepted", "Rejected", "RebootRequired", "NotSupported"]
"""ConfigurationStatus of ChangeConfiguration.conf (OCPP 1.6 §7.10)."""

# Profiles whose keys need no feature profile to be shipped (the table ships none of them).
_ALWAYS_ALLOWED = frozenset({"Security"})
# Standard key names compare case-insensitively.
_TABLE_BY_LOWER: Mapping[str, KeySpec] = {spec.name.lower(): spec for spec in KEYS}


class TemplateEntry(Protocol):
    """A `[[configuration]]` entry of a station template (evsim_trio.config.ConfigurationKey)."""

    @property
    def key(self) -> str: ...

    @property
    def value(self) -> str: ...

    @property
    def readonly(self) -> bool: ...

    @property
    def visible(self) -> bool: ...

    @property
    def reboot(self) -> bool: ...


@attrs.define
class ConfigurationKey:
    """One OCPP configuration key as GetConfiguration reports it, plus our flags."""

    key: str
    value: str
    readonly: bool = False
    visible: bool = True
    reboot: bool = False


class OcppConfiguration:
    """The configuration keys of one station, in order: shipped defaults, then template-only keys.

    `number_of_connectors` (ids > 0) gives NumberOfConnectors, which the template cannot
    contradict, and bounds ConnectorPhaseRotation; `supported_profiles` gives
    SupportedFeatureProfiles (a template entry may override it) and, through it, which
    profiles' keys are shipped. `on_change(key, value)` is called after every change answered
    Accepted, once the value is stored, so that the station applies it at once.
    """

    def __init__(
        self,
        entries: Iterable[TemplateEntry] = (),
        *,
        number_of_connectors: int = 1,
        supported_profiles: Iterable[str] = ("Core",),
        number_of_phases: int = 3,
        label: str = "",
    ) -> None:
        self.on_change: Callable[[str, str], None] | None = None
        # Bumped by every change of a key (all of them go through this class): the state file
        # renders the keys again only when it moved.
        self.version = 0
        self._label = label or "configuration"
        self._connectors = number_of_connectors
        self._keys: dict[str, ConfigurationKey] = {}
        overrides = {entry.key.lower(): entry for entry in entries}
        computed = {
            "NumberOfConnectors": str(number_of_connectors),
            "SupportedFeatureProfiles": ",".join(supported_profiles),
            "ConnectorPhaseRotation": default_phase_rotation(
                number_of_connectors, number_of_phases
            ),
            "ConnectorPhaseRotationMaxLength": str(number_of_connectors + 1),
        }
        self._defaults: dict[str, str] = {
            spec.name: computed.get(spec.name, spec.default or "") for spec in KEYS
        }
        profiles_entry = overrides.get("supportedfeatureprofiles")
        profiles = set(
            split_csl(
                profiles_entry.value
                if profiles_entry is not None
                else computed["SupportedFeatureProfiles"]
            )
        )
        for spec in KEYS:
            if spec.shipped and (spec.profile in profiles or spec.profile in _ALWAYS_ALLOWED):
                self._add(ConfigurationKey(spec.name, self._defaults[spec.name], spec.readonly))
        for entry in overrides.values():
            self._apply_template_entry(entry)

    # -- construction ---------------------------------------------------------------------
    def _add(self, entry: ConfigurationKey) -> None:
        self._keys[entry.key.lower()] = entry
        self.version += 1

    def _apply_template_entry(self, entry: TemplateEntry) -> None:
        spec = self._spec(entry.key)
        # Standard keys keep the specification's spelling, whatever case the template used.
        name = spec.name if spec is not None else entry.key
        value = entry.value
        if spec is not None and spec.name == "NumberOfConnectors":
            station_value = self._defaults[spec.name]
            if value != station_value:
                log.warning(
                    "%s: template NumberOfConnectors %s ignored; the station has %s",
                    self._label,
                    value,
                    station_value,
                )
            value = station_value
        elif spec is not None:
            try:
                value = self._normalize(spec, value)
            except InvalidValue as exc:
                # Kept as written: a template may want to show a CSMS a bad value on purpose.
                log.warning("%s: template value kept although invalid: %s", self._label, exc)
        # A template may make a key readonly, not a key the specification makes readonly
        # writable (1.6 §9 "Accessibility").
        readonly = entry.readonly or (spec is not None and spec.readonly)
        self._add(ConfigurationKey(name, value, readonly, entry.visible, entry.reboot))

    # -- reading ----------------------------------------------------------------------------
    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._keys

    def __iter__(self) -> Iterator[ConfigurationKey]:
        return iter(self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)

    def entry(self, key: str) -> ConfigurationKey | None:
        """The entry of `key` (any case), or None when the station does not have it."""
        return self._keys.get(key.lower())

    def get(self, key: str) -> str | None:
        """The value of `key`, or None when the station does not have it."""
        entry = self.entry(key)
        return None if entry is None else entry.value

    def visible_keys(self) -> list[ConfigurationKey]:
        """The keys a CSMS may see and change (GetConfiguration without a key list)."""
        return [entry for entry in self._keys.values() if entry.visible]

    def get_int(self, key: str, default: int | None = None) -> int:
        """`key` as an integer.

        When the station lacks the key or its value is not an integer: `default` if given,
        else the table's default; KeyError when there is neither.
        """
        value = self.get(key)
        if value is not None:
            try:
                return int(value)
            except ValueError:
                pass
        if default is not None:
            return default
        return int(self._fallback(key))

    def get_bool(self, key: str, default: bool | None = None) -> bool:
        """`key` as a boolean ("true"/"false", any case); fallbacks as for `get_int`."""
        value = self.get(key)
        if value is not None and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if default is not None:
            return default
        return self._fallback(key).lower() == "true"

    def get_csl(self, key: str, default: Iterable[str] | None = None) -> tuple[str, ...]:
        """`key` as the members of a comma-separated list; fallbacks as for `get_int`."""
        value = self.get(key)
        if value is None:
            value = ",".join(default) if default is not None else self._fallback(key)
        return tuple(split_csl(value))

    def _fallback(self, key: str) -> str:
        spec = self._spec(key)
        if spec is None:
            raise KeyError(key)
        return self._defaults[spec.name]

    @staticmethod
    def _spec(key: str) -> KeySpec | None:
        return _TABLE_BY_LOWER.get(key.lower())

    # -- writing ---------------------------------------------------------------------------
    def set(self, key: str, value: str) -> None:
        """Set `key` (creating it if needed); the station's own writes ignore `readonly`."""
        entry = self.entry(key)
        if entry is None:
            self._add(ConfigurationKey(key, value))
        else:
            entry.value = value
            self.version += 1

    def change(self, key: str, value: str) -> ChangeStatus:
        """A change asked for by the CSMS (ChangeConfiguration, OCPP 1.6 §5.3).

        NotSupported: the station has no such key (hidden keys included); Rejected: the key is
        readonly or the value is not one the key takes (type, range, list members, list length);
        RebootRequired: stored, applied at the next boot; Accepted: stored and `on_change`
        called. Values are stored canonically (`_keys.normalize`).
        """
        entry = self.entry(key)
        if entry is None or not entry.visible:
            return "NotSupported"
        if entry.readonly:
            return "Rejected"
        spec = self._spec(entry.key)
        if spec is not None:
            try:
                value = self._normalize(spec, value)
            except InvalidValue as exc:
                log.info("%s: ChangeConfiguration rejected: %s", self._label, exc)
                return "Rejected"
        entry.value = value
        self.version += 1
        if entry.reboot:
            return "RebootRequired"
        if self.on_change is not None:
            self.on_change(entry.key, value)
        return "Accepted"

    def _normalize(self, spec: KeySpec, value: str) -> str:
        max_items = None
        if spec.max_items_key is not None and spec.max_items_key in self:
            max_items = self.get_int(spec.max_items_key)
        return normalize(spec, value, max_items=max_items, number_of_connectors=self._connectors)

    # -- persistence -----------------------------------------------------------------------
    def to_state(self) -> list[dict[str, Any]]:
        """Every key (hidden ones too) as plain dicts, for the station's state file."""
        return [attrs.asdict(entry) for entry in self._keys.values()]

    def load_state(self, entries: Iterable[Mapping[str, Any]]) -> None:
        """Restore values saved by `to_state`.

        The template and the station stay authoritative for readonly keys and for every key's
        flags: a saved value replaces the value of a writable key the station has, if it is
        valid for that key. A saved key the station does not have is restored when it is a
        vendor key (the station or the UI created it); a standard key is not (its profile is
        no longer supported, say).
        """
        for saved in entries:
            key, value = saved.get("key"), saved.get("value")
            if not isinstance(key, str) or not isinstance(value, str):
                log.warning("%s: saved configuration entry ignored: %r", self._label, saved)
                continue
            entry = self.entry(key)
            spec = self._spec(key)
            if entry is None:
                if spec is None:
                    self._add(
                        ConfigurationKey(
                            key,
                            value,
                            readonly=saved.get("readonly") is True,
                            visible=saved.get("visible") is not False,
                            reboot=saved.get("reboot") is True,
                        )
                    )
                continue
            if entry.readonly:
                continue
            if spec is not None:
                try:
                    value = self._normalize(spec, value)
                except InvalidValue as exc:
                    log.warning("%s: saved value ignored: %s", self._label, exc)
                    continue
            entry.value = value
            self.version += 1
