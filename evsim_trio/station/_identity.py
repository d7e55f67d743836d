"""Station identity: ids, hashIds, serial numbers and the per-station random stream."""

from __future__ import annotations

import hashlib
import json
import random

import attrs

# Five digits, 1-based, per template entry of the site config (BEHAVIOUR.md, Identity).
_INDEX_WIDTH = 5


def station_id(
    base_name: str, index: int, *, name_suffix: str = "", fixed_name: bool = False
) -> str:
    """Build a station id: `<base_name>-<5-digit index><name_suffix>`, or `base_name` alone."""
    if fixed_name:
        return base_name
    return f"{base_name}-{index:0{_INDEX_WIDTH}d}{name_suffix}"


def hash_id(
    station: str,
    *,
    vendor: str,
    model: str,
    charge_point_serial_number_prefix: str = "",
    charge_box_serial_number_prefix: str = "",
) -> str:
    """A stable hex digest of the template identity plus the station id.

    It keys persisted state and UI addressing, so it must not depend on anything random.
    """
    identity = {
        "chargePointVendor": vendor,
        "chargePointModel": model,
        "chargePointSerialNumberPrefix": charge_point_serial_number_prefix,
        "chargeBoxSerialNumberPrefix": charge_box_serial_number_prefix,
        "chargingStationId": station,
    }
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha384(text.encode()).hexdigest()


def station_rng(seed: int, station: str) -> random.Random:
    """One seeded random stream per station, derived from the site seed and the station id."""
    # A str seed is hashed with SHA-512 by random.Random: stable across runs and platforms.
    return random.Random(f"{seed}/{station}")


def serial_number(prefix: str, rng: random.Random, *, max_length: int = 25) -> str:
    """A serial number: the template prefix and a random hex suffix, within the 1.6 length cap."""
    suffix = f"{rng.getrandbits(48):012x}"
    return (prefix + suffix)[:max_length] if prefix else suffix[:max_length]


@attrs.frozen
class StationIdentity:
    """Who a station is: fixed for its whole life, persisted where random."""

    station_id: str
    hash_id: str
    index: int
    template_name: str
    template_index: int
    charge_point_serial_number: str
    charge_box_serial_number: str
