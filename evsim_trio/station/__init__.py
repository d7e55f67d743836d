"""One simulated charging station's life: link, boot, heartbeat, connectors, handlers."""

from __future__ import annotations

from evsim_trio.station import (
    _h_config,  # noqa: F401  (registers the configuration handlers)
    _h_core,  # noqa: F401  (registers the core handlers)
    _h_diagnostics,  # noqa: F401  (registers GetDiagnostics)
    _h_firmware,  # noqa: F401  (registers UpdateFirmware)
    _h_local_auth,  # noqa: F401  (registers SendLocalList, GetLocalListVersion)
    _h_reservations,  # noqa: F401  (registers ReserveNow, CancelReservation)
)
from evsim_trio.station._backoff import reconnect_delay
from evsim_trio.station._clock import ocpp_timestamp, utc_now
from evsim_trio.station._connector import Connector, Transaction
from evsim_trio.station._identity import (
    StationIdentity,
    hash_id,
    serial_number,
    station_id,
    station_rng,
)
from evsim_trio.station._link import (
    OCPP16_SUBPROTOCOL,
    CallTimeout,
    Connect,
    LinkError,
    NotConnected,
    WebSocket,
    default_connect,
)
from evsim_trio.station._ocpp_config import ConfigurationKey, OcppConfiguration
from evsim_trio.station._online import RegistrationFailed, StationState, WsState
from evsim_trio.station._persistence import (
    load_state,
    remove_temp_files,
    save_state,
    set_aside,
    state_path,
)
from evsim_trio.station._station import Station, StationSpec
from evsim_trio.station._stats import LatencyHistogram, StationStatistics

__all__ = [
    "OCPP16_SUBPROTOCOL",
    "CallTimeout",
    "ConfigurationKey",
    "Connect",
    "Connector",
    "LatencyHistogram",
    "LinkError",
    "NotConnected",
    "OcppConfiguration",
    "RegistrationFailed",
    "Station",
    "StationIdentity",
    "StationSpec",
    "StationState",
    "StationStatistics",
    "Transaction",
    "WebSocket",
    "WsState",
    "default_connect",
    "hash_id",
    "load_state",
    "ocpp_timestamp",
    "reconnect_delay",
    "remove_temp_files",
    "save_state",
    "serial_number",
    "set_aside",
    "state_path",
    "station_id",
    "station_rng",
    "utc_now",
]
