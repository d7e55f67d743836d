"""A station's OCPP configuration keys (OCPP 1.6 §9): defaults, template overrides, typed reads."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import attrs

# Standard keys this slice acts on, with defaults used when the template does not set them.
# (key, value, readonly)
STANDARD_DEFAULTS: tuple[tuple[str, str, bool], ...] = (
    ("HeartbeatInterval", "60", False),
    ("WebSocketPingInterval", "60", False),
    ("SupportedFeatureProfiles", "Core", True),
)


@attrs.define
class ConfigurationKey:
    """One OCPP configuration key as GetConfiguration reports it, plus our flags."""

    key: str
    value: str
    readonly: bool = False
    visible: bool = True
    reboot: bool = False


class OcppConfiguration:
    """The keys of one station, in insertion order; template entries override defaults."""

    def __init__(self, entries: Iterable[ConfigurationKey] = ()) -> None:
        self._keys: dict[str, ConfigurationKey] = {}
        for key, value, readonly in STANDARD_DEFAULTS:
            self._keys[key] = ConfigurationKey(key, value, readonly=readonly)
        for entry in entries:
            self._keys[entry.key] = attrs.evolve(entry)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __iter__(self) -> Iterator[ConfigurationKey]:
        return iter(self._keys.values())

    def get(self, key: str) -> str | None:
        """The value of `key`, or None when the station does not have it."""
        entry = self._keys.get(key)
        return None if entry is None else entry.value

    def get_int(self, key: str, default: int) -> int:
        """The value of `key` as an integer; `default` when absent or not an integer."""
        value = self.get(key)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            return default

    def set(self, key: str, value: str) -> None:
        """Set `key` (creating it if needed); the station's own writes ignore `readonly`."""
        entry = self._keys.get(key)
        if entry is None:
            self._keys[key] = ConfigurationKey(key, value)
        else:
            entry.value = value
