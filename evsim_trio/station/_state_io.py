"""A station's persisted state: what it is, what it knows, what it still owes the CSMS.

One TOML file per hashId under the site's state_dir, written atomically and debounced: OCPP
configuration keys (when `ocpp_persistent_configuration`), station info and serial numbers,
energy registers, availability, open transactions, the transaction message queue, the
authorization cache, charging profiles. A restart continues from it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from evsim_trio.station._connector import Connector, Transaction
from evsim_trio.station._persistence import STATE_VERSION, write_state_file
from evsim_trio.station._reservations import restore_statuses, station_now
from evsim_trio.station._state_text import StateText, configuration_section, resolve
from evsim_trio.station._state_writer import discard_spare, state_writer, write_batch

if TYPE_CHECKING:
    from evsim_trio.config import StationTemplate
    from evsim_trio.station._charging_profiles import ProfileStore
    from evsim_trio.station._identity import StationIdentity
    from evsim_trio.station._local_auth import LocalAuthList
    from evsim_trio.station._metering import MeterModel
    from evsim_trio.station._ocpp_config import OcppConfiguration
    from evsim_trio.station._queue import MessageQueue
    from evsim_trio.station._reservations import ReservationStore

log = logging.getLogger(__name__)

# Writes of one station are at least this far apart (trio seconds).
PERSIST_DEBOUNCE = 1.0
# Changes a crash may lose without harm are written within this long, or with any earlier
# write: a transaction id learnt or a delivered message leaving the queue (after a crash the
# message is sent again: at least once), the authorization cache, the ATG's counters. A
# transaction's StartTransaction and StopTransaction flush the state before they leave anyway.
LAZY_DEBOUNCE = 60.0


def _now() -> float:
    """trio's clock, or 0.0 outside a trio run (a station changed before it runs)."""
    try:
        return trio.current_time()
    except RuntimeError:
        return 0.0


def _virtual_time() -> bool:
    """Whether trio runs on a virtual clock (tests under MockClock)."""
    # Without importing trio.testing (it imports pytest when installed): no MockClock can
    # exist unless it was imported.
    testing = sys.modules.get("trio.testing")
    return testing is not None and isinstance(trio.lowlevel.current_clock(), testing.MockClock)


class StateMixin:
    """to_state / restore / debounced persistence of a Station."""

    label: str
    identity: StationIdentity
    template: StationTemplate
    configuration: OcppConfiguration
    connectors: dict[int, Connector]
    meters: dict[int, MeterModel]
    profiles: ProfileStore
    queue: MessageQueue
    tx_ids: dict[int, int | None]
    next_local_tx: int
    firmware_version: str
    auth_cache: dict[str, dict[str, Any]]
    reservations: ReservationStore
    local_list: LocalAuthList
    spec: Any
    _dirty: trio.Event
    _soon: bool
    _soon_event: trio.Event
    _dirty_since: float
    _write_lock: trio.Lock
    _state_text: StateText

    start_meter_loop: Callable[[int], None]

    def _state_path(self) -> Path | None:
        path: Path | None = self.spec.state_path
        return path

    def to_state(self) -> dict[str, Any]:
        """Everything that must survive a restart, as plain data."""
        return resolve(self._state_sections())

    def state_text(self) -> str:
        """The state file's text: `tomli_w.dumps({"version": 1, **to_state()})`, rendered
        again only where it changed since the last call (see `_state_text`).
        """
        return self._state_text.render({"version": STATE_VERSION, **self._state_sections()})

    def _state_sections(self) -> dict[str, Any]:
        identity = self.identity
        state: dict[str, Any] = {
            "station_info": {
                "station_id": identity.station_id,
                "charge_point_serial_number": identity.charge_point_serial_number,
                "charge_box_serial_number": identity.charge_box_serial_number,
            },
            "connectors": {
                str(cid): {
                    "availability": c.availability,
                    "pending_availability": c.pending_availability,
                    "meter": self.meters[cid].to_state() if cid in self.meters else None,
                    "transaction": c.transaction.to_state() if c.transaction else None,
                }
                for cid, c in self.connectors.items()
            },
            "queue": self.queue.to_state(),
            "tx_ids": {str(k): v for k, v in self.tx_ids.items() if v is not None},
            "open_tx": sorted(self.tx_ids),
            "next_local_tx": self.next_local_tx,
            "firmware_version": self.firmware_version,
            "auth_cache": self.auth_cache,
            "local_list": self.local_list.to_state(),
            "profiles": self.profiles.to_state(),
            "reservations": self.reservations.to_state(),
        }
        if self.template.ocpp_persistent_configuration:
            # Rarely changes, and the largest part by far: built only when it did.
            state["configuration"] = configuration_section(self.configuration)
        state.update(self.extra_state())
        return state

    def extra_state(self) -> dict[str, Any]:
        """State of later components (ATG, ...); overridden by the station."""
        return {}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Load what `to_state()` wrote (called at construction)."""
        if self.template.ocpp_persistent_configuration and "configuration" in state:
            self.configuration.load_state(list(state["configuration"]))
        for key, saved in dict(state.get("connectors", {})).items():
            connector = self.connectors.get(int(key))
            if connector is None:
                continue
            connector.availability = str(saved.get("availability", "Operative"))
            connector.pending_availability = saved.get("pending_availability")
            if connector.connector_id in self.meters and "meter" in saved:
                self.meters[connector.connector_id].from_state(saved["meter"])
            if "transaction" in saved:
                connector.transaction = Transaction.from_state(saved["transaction"])
            if connector.availability != "Operative":
                connector.set_status("Unavailable")
            elif connector.transaction is not None:
                connector.set_status("Charging")
        self.queue.load_state(list(state.get("queue", [])))
        self.tx_ids = {int(k): None for k in state.get("open_tx", [])}
        self.tx_ids.update({int(k): int(v) for k, v in dict(state.get("tx_ids", {})).items()})
        self.next_local_tx = int(state.get("next_local_tx", 0))
        self.firmware_version = str(state.get("firmware_version", self.firmware_version))
        self.auth_cache = dict(state.get("auth_cache", {}))
        if "local_list" in state:
            self.local_list.from_state(state["local_list"])
        if "profiles" in state:
            self.profiles.from_state(state["profiles"])
        # 1.6 §5.13: reservations survive a restart; expired ones are dropped here.
        self.reservations.load_state(list(state.get("reservations", [])), now=station_now())
        restore_statuses(self.reservations, self.connectors)
        self.restore_extra(state)

    def restore_extra(self, state: Mapping[str, Any]) -> None:
        """Restore later components' state; overridden by the station."""

    def resume_transactions(self) -> None:
        """After a (re)start: keep metering the transactions that were running."""
        for connector_id, connector in self.connectors.items():
            if connector.transaction is not None and connector_id in self.meters:
                self.meters[connector_id].set_active(True)
                self.start_meter_loop(connector_id)

    def persist(self) -> None:
        """Schedule a state write (within PERSIST_DEBOUNCE)."""
        self.persist_lazily()
        if not self._soon:
            self._soon = True
            self._soon_event.set()

    def persist_lazily(self) -> None:
        """Schedule a state write within LAZY_DEBOUNCE (or with an earlier one)."""
        if not self._dirty.is_set():
            self._dirty_since = _now()
            self._dirty.set()

    def _lazy_due(self) -> bool:
        return trio.current_time() >= self._dirty_since + LAZY_DEBOUNCE

    def _mark_clean(self) -> None:
        """Everything changed so far is being written."""
        self._dirty = trio.Event()
        if self._soon:
            self._soon = False
            self._soon_event = trio.Event()

    def save_now(self) -> None:
        """Write the state at once, synchronously: when the station stops.

        The energy registers move with every sample without marking the state changed; they are
        saved with the next change, and here. No fsync: on a clean stop the kernel writes the
        file out, and a fleet of thousands stops in seconds rather than minutes.
        """
        path = self._state_path()
        if path is None:
            return
        self._mark_clean()
        try:
            write_state_file(path, self.state_text().encode(), fsync=False)
            discard_spare(path)
        except OSError:
            log.exception("%s: could not write state to %s", self.label, path)

    async def flush_state(self) -> None:
        """Write pending changes now (before a StartTransaction/StopTransaction leaves).

        Returns once every change made so far is on disk, including one a debounced write was
        writing meanwhile.
        """
        path = self._state_path()
        if path is None:
            return
        await self._write_if_dirty(path)

    async def _write_if_dirty(self, path: Path) -> None:
        """Write the state if it changed since the last write (one write at a time)."""
        async with self._write_lock:
            if self._dirty.is_set():
                self._mark_clean()
                await self._write(path, self.state_text().encode())

    async def _write(self, path: Path, data: bytes) -> None:
        try:
            if _virtual_time():
                # A thread would let MockClock's autojump run virtual time away meanwhile.
                error = write_batch({path: data}).get(path)
                if error is not None:
                    raise error
            else:
                await state_writer().write(path, data)
        except OSError:
            log.exception("%s: could not write state to %s", self.label, path)

    async def run_persistence(self) -> None:
        """Write the state after changes, at most once per PERSIST_DEBOUNCE, off the event loop."""
        path = self._state_path()
        if path is None:
            return
        while True:
            await self._dirty.wait()
            if self._soon:
                await trio.sleep(PERSIST_DEBOUNCE)
                if not self._soon and not self._lazy_due():
                    continue  # flushed meanwhile; what changed since can wait
            elif not self._lazy_due():
                # Only lazy changes: until they are due, or a change that should not wait.
                with trio.move_on_at(self._dirty_since + LAZY_DEBOUNCE):
                    await self._soon_event.wait()
                continue
            await self._write_if_dirty(path)  # (nothing if flushed meanwhile)
