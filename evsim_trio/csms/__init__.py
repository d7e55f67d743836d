"""The embedded CSMS: a small, correct OCPP 1.6-J central system for demos, benchmarks, tests.

It uses `evsim_trio.ocpp` and never the station code. `EmbeddedCsms.serve` listens on a TCP
port; `EmbeddedCsms.handle_request` serves one trio-websocket request, so that tests can also
connect stations to it over in-memory streams.
"""

from __future__ import annotations

from ._connection import SUBPROTOCOL, StationNotConnected, station_id_from_path
from ._handlers import Handler, id_tag_info, utc_now
from ._records import StationRecord
from ._run import run_csms
from ._server import EmbeddedCsms

__all__ = [
    "SUBPROTOCOL",
    "EmbeddedCsms",
    "Handler",
    "StationNotConnected",
    "StationRecord",
    "id_tag_info",
    "run_csms",
    "station_id_from_path",
    "utc_now",
]
