"""Authorization, transactions, delivery of transaction messages (1.6 §4.1, §4.8, §4.10).

A mixin of `Station`: the attributes annotated below are the station's.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from evsim_trio.ocpp import OcppError
from evsim_trio.station._clock import ocpp_timestamp, utc_now
from evsim_trio.station._connector import Connector, Transaction
from evsim_trio.station._link import CallTimeout, LinkError, Payload
from evsim_trio.station._local_auth import AuthorizationKeys, authorization_decision
from evsim_trio.station._queue import MessageQueue, QueuedMessage

if TYPE_CHECKING:
    from evsim_trio.config import StationTemplate
    from evsim_trio.station._local_auth import LocalAuthList
    from evsim_trio.station._metering import MeterModel
    from evsim_trio.station._ocpp_config import OcppConfiguration
    from evsim_trio.station._reservations import Reservation, ReservationStore

log = logging.getLogger(__name__)


class TransactionsMixin:
    """Start, stop, authorize; the queue sender that delivers transaction messages in order."""

    async def reservation_for_start(
        self, connector_id: int, id_tag: str
    ) -> tuple[bool, Reservation | None]:
        """Whether reservations let `id_tag` start here (implemented by ReservationsMixin)."""
        raise NotImplementedError

    def consume_reservation(self, reservation: Reservation) -> None:
        """A start under `reservation` (implemented by ReservationsMixin)."""
        raise NotImplementedError

    label: str
    template: StationTemplate
    configuration: OcppConfiguration
    connectors: dict[int, Connector]
    meters: dict[int, MeterModel]
    queue: MessageQueue
    registration: str | None
    # CSMS transaction id per local transaction id, while messages of it may still be queued.
    tx_ids: dict[int, int | None]
    next_local_tx: int
    auth_cache: dict[str, dict[str, Any]]
    local_list: LocalAuthList
    stats: Any

    call: Callable[[str, Payload], Awaitable[Payload]]
    send_status: Callable[..., Awaitable[None]]
    persist: Callable[[], None]
    persist_lazily: Callable[[], None]
    changed: Callable[[], None]
    flush_state: Callable[[], Awaitable[None]]
    spawn: Callable[..., None]
    is_online: Callable[[], bool]
    start_meter_loop: Callable[[int], None]
    advance_meter: Callable[[int], None]
    limits_changed: Callable[[], None]
    transaction_ended: Callable[[int], None]
    enqueue_meter_values: Callable[[int, Transaction, str], None]
    reservations: ReservationStore

    # -- authorization (1.6 §3.4, §4.1; keys §9.1) --------------------------------------------
    def clear_authorization_cache(self) -> None:
        """ClearCache: forget every cached idTagInfo."""
        self.auth_cache.clear()
        self.persist()

    async def authorize(self, id_tag: str, *, ask_csms: bool = False) -> str:
        """The idTagInfo status for `id_tag`: local list and cache (1.6 §3.4), else the CSMS.

        The decision is `_local_auth.authorization_decision`. The CSMS's answer to Authorize
        goes into the cache (when enabled), except for an idTag of the local list (§3.4.3: list
        identifiers are not cached; the list changes only by SendLocalList). An Authorize that
        gets no answer (timeout, link lost) falls back to the offline rules. With `ask_csms`
        an online station always sends Authorize (no local pre-authorization).
        """
        if self.is_online():
            keys = AuthorizationKeys.from_configuration(self.configuration)
            list_info = self.local_list.get(id_tag)
            decision = authorization_decision(
                online=True,
                list_info=list_info,
                cache_info=self.auth_cache.get(id_tag),
                keys=keys,
                now=utc_now(),
            )
            if decision.status is not None and not ask_csms:
                return decision.status
            try:
                response = await self.call("Authorize", {"idTag": id_tag})
            except OcppError as exc:
                log.warning("%s: Authorize failed: %s", self.label, exc)
                return "Invalid"
            except (CallTimeout, LinkError) as exc:
                log.info("%s: Authorize not answered (%s); offline rules apply", self.label, exc)
            else:
                info: dict[str, Any] = response["idTagInfo"]
                if self.cache_id_tag_info(id_tag, info):
                    self.persist_lazily()
                return str(info["status"])
        # Offline, or the CSMS did not answer: the keys and entries as they are now.
        decision = authorization_decision(
            online=False,
            list_info=self.local_list.get(id_tag),
            cache_info=self.auth_cache.get(id_tag),
            keys=AuthorizationKeys.from_configuration(self.configuration),
            now=utc_now(),
        )
        assert decision.status is not None
        if decision.source == "unknown" or decision.status != "Accepted":
            log.info(
                "%s: offline: idTag %s %s (%s)",
                self.label,
                id_tag,
                decision.status,
                decision.source,
            )
        return decision.status

    def cache_id_tag_info(self, id_tag: str, info: dict[str, Any]) -> bool:
        """Cache the CSMS's idTagInfo of `id_tag` if AuthorizationCacheEnabled, unless the tag is
        in the enabled local list (never cached, 1.6 §3.4.3); whether it was cached."""
        keys = AuthorizationKeys.from_configuration(self.configuration)
        if not keys.authorization_cache_enabled:
            return False
        if keys.local_auth_list_enabled and self.local_list.get(id_tag) is not None:
            return False
        self.auth_cache[id_tag] = info
        return True

    # -- transactions ---------------------------------------------------------------------
    def enqueue(self, action: str, payload: Payload, local_tx: int) -> QueuedMessage:
        """Queue a transaction message for in-order delivery."""
        message = QueuedMessage(action, payload, local_tx)
        sender_idle = not self.queue
        self.queue.push(message)
        online = self.is_online()
        if online and sender_idle:
            # The sender takes it at once. A StartTransaction / StopTransaction is flushed
            # before it leaves (marked dirty here for that flush, with no debounce wakeup of
            # its own); writing the state for a MeterValues that leaves at once would be most
            # of the simulator's CPU.
            if action != "MeterValues":
                self.persist_lazily()
        elif action != "MeterValues" or not online:
            # It waits behind others, or for the CSMS: the queue is persisted.
            self.persist()
        return message

    def transaction_for(self, transaction_id: int) -> Connector | None:
        """The connector running the transaction the CSMS knows as `transaction_id`."""
        for connector in self.connectors.values():
            tx = connector.transaction
            if tx is not None and tx.transaction_id == transaction_id:
                return connector
        return None

    async def start_transaction(
        self,
        connector_id: int,
        id_tag: str,
        *,
        remote: bool = False,
        reservation_id: int | None = None,
        authorize: bool | None = None,
    ) -> bool:
        """Start a transaction; False when refused (tag rejected, connector busy or inoperative).

        Reservations (1.6 §5.13, rules in `_reservations.py`): a Reserved connector starts only
        for the reservation's idTag or parentIdTag and stays Reserved (no Preparing) until the
        tag is checked; a start that uses a reservation consumes it and StartTransaction
        carries its reservationId.
        """
        connector = self.connectors.get(connector_id)
        reserved = self.reservations.on_connector(connector_id)
        if (
            connector_id == 0
            or connector is None
            or not connector.can_start(reserved_ok=reserved is not None)
        ):
            return False
        if authorize is None:
            authorize = not remote or self.configuration.get_bool("AuthorizeRemoteTxRequests", True)
        if reserved is None and connector.status != "Preparing":
            await self.send_status(connector_id, "Preparing")
        if authorize:
            # must_authorize_at_remote_start: a remote start is always checked with the CSMS.
            ask = remote and self.template.must_authorize_at_remote_start
            status = await self.authorize(id_tag, ask_csms=ask)
            if status != "Accepted":
                log.info("%s: idTag %s %s; no transaction", self.label, id_tag, status)
                if reserved is None:
                    await self.send_status(connector_id, "Available")
                return False
        allowed, reservation = await self.reservation_for_start(connector_id, id_tag)
        if not allowed:
            log.info("%s: idTag %s refused on connector %d", self.label, id_tag, connector_id)
            if reserved is None:
                await self.send_status(connector_id, "Available")
            return False
        if reservation is not None:
            reservation_id = reservation.reservation_id
            self.consume_reservation(reservation)
        if connector.status != "Preparing":
            await self.send_status(connector_id, "Preparing")
        if connector.transaction is not None:  # lost a race with another start
            return False
        meter = self.meters[connector_id]
        self.next_local_tx += 1
        tx = Transaction(
            local_id=self.next_local_tx,
            connector_id=connector_id,
            id_tag=id_tag,
            meter_start=meter.meter_reading_wh(),
            start_timestamp=ocpp_timestamp(),
            reservation_id=reservation_id,
            start_energy_wh=meter.energy_register_wh,
        )
        # The other connectors' energy up to now, before the power share changes.
        self.limits_changed()
        connector.transaction = tx
        self.stats.transactions_started += 1
        self.tx_ids[tx.local_id] = None
        meter.plug_in()  # a new EV (its own SoC)
        meter.set_active(True)
        payload: Payload = {
            "connectorId": connector_id,
            "idTag": id_tag,
            "meterStart": tx.meter_start,
            "timestamp": tx.start_timestamp,
        }
        if reservation_id is not None:
            payload["reservationId"] = reservation_id
        message = self.enqueue("StartTransaction", payload, tx.local_id)
        if self.template.begin_end_meter_values:
            self.enqueue_meter_values(connector_id, tx, "Transaction.Begin")
        if self.is_online():
            # Keep StatusNotification(Charging) after StartTransaction on the wire.
            with trio.move_on_after(self.template.call_timeout + 1):
                await message.done.wait()
        if connector.transaction is tx and tx.id_tag_status == "Accepted":
            await self.send_status(connector_id, "Charging")
            self.start_meter_loop(connector_id)
        return True

    async def stop_transaction(self, connector_id: int, reason: str = "Local") -> bool:
        """Stop the transaction on `connector_id`; False when there is none."""
        connector = self.connectors.get(connector_id)
        tx = connector.transaction if connector is not None else None
        if connector is None or tx is None:
            return False
        # Every active connector's energy up to now (this one ends, the power share changes).
        self.limits_changed()
        meter = self.meters[connector_id]
        if self.template.begin_end_meter_values:
            self.enqueue_meter_values(connector_id, tx, "Transaction.End")
        payload: Payload = {
            "idTag": tx.id_tag,
            "meterStop": max(tx.meter_start, meter.meter_reading_wh()),
            "timestamp": ocpp_timestamp(),
            "reason": reason,
        }
        if self.template.transaction_data_meter_values and tx.meter_values:
            payload["transactionData"] = list(tx.meter_values)
        connector.transaction = None
        self.stats.transactions_stopped += 1
        meter.set_active(False)
        message = self.enqueue("StopTransaction", payload, tx.local_id)
        self.transaction_ended(connector_id)
        if self.is_online():
            # StopTransaction before StatusNotification(Finishing) on the wire.
            with trio.move_on_after(self.template.call_timeout + 1):
                await message.done.wait()
        await self.send_status(connector_id, "Finishing")
        pending = connector.pending_availability
        changed_availability = pending is not None
        if pending is not None:
            connector.availability = pending
            connector.pending_availability = None
        await self.send_status(
            connector_id, "Available" if connector.availability == "Operative" else "Unavailable"
        )
        if changed_availability:
            self.persist()
        else:
            self.persist_lazily()  # the transaction's end was flushed before it left
        return True

    # -- delivery ---------------------------------------------------------------------------
    def _prepare(self, message: QueuedMessage) -> Payload | None:
        """The payload to send, with the CSMS transaction id filled in; None to drop it."""
        if message.action == "StartTransaction":
            return message.payload
        transaction_id = self.tx_ids.get(message.local_tx)
        if transaction_id is None:
            if message.action == "MeterValues":
                return message.payload  # transactionId is optional there
            log.error(
                "%s: StopTransaction of local transaction %d has no CSMS transaction id "
                "(its StartTransaction was never accepted); dropped",
                self.label,
                message.local_tx,
            )
            return None
        return {**message.payload, "transactionId": transaction_id}

    async def run_sender(self) -> None:
        """Deliver queued transaction messages in order, with the 1.6 retry rules."""
        queue = self.queue
        while True:
            await queue.wait_nonempty()
            message = queue.peek()
            assert message is not None
            payload = self._prepare(message)
            if payload is None:
                self._finish(queue.pop(), None)
                continue
            if message.action != "MeterValues":
                # A transaction the CSMS learns of is on disk first: a kill -9 right after
                # can't lose it (MeterValues ride on the debounced writes).
                await self.flush_state()
            try:
                result = await self.call(message.action, payload)
            except (CallTimeout, OcppError) as exc:
                message.attempts += 1
                attempts = self.configuration.get_int("TransactionMessageAttempts", 3)
                if message.attempts >= attempts:
                    log.error(
                        "%s: %s given up after %d attempts: %s",
                        self.label,
                        message.action,
                        message.attempts,
                        exc,
                    )
                    self._finish(queue.pop(), None)
                    continue
                interval = self.configuration.get_int("TransactionMessageRetryInterval", 60)
                self.persist()
                await trio.sleep(interval * message.attempts)
                continue
            self._finish(queue.pop(), result)

    def _finish(self, message: QueuedMessage, result: Payload | None) -> None:
        message.result = result
        if message.action == "StartTransaction":
            self._started(message, result)
        elif message.action == "StopTransaction":
            self.tx_ids.pop(message.local_tx, None)
        message.done.set()
        if message.action != "MeterValues":
            # (A message delivered but still in the saved queue is sent again after a crash:
            # at least once.)
            self.persist_lazily()
        self.changed()  # a transaction id learnt, the queue shorter

    def _started(self, message: QueuedMessage, result: Payload | None) -> None:
        """StartTransaction answered: learn the id; a rejected idTag ends or suspends (1.6 §4.8)."""
        connector = self.connectors.get(int(message.payload["connectorId"]))
        tx = connector.transaction if connector is not None else None
        if tx is not None and tx.local_id != message.local_tx:
            tx = None
        if result is None:
            return
        transaction_id = int(result["transactionId"])
        self.tx_ids[message.local_tx] = transaction_id
        status = str(result["idTagInfo"]["status"])
        id_tag = str(message.payload["idTag"])
        self.cache_id_tag_info(id_tag, result["idTagInfo"])
        if tx is None or connector is None:
            return
        tx.transaction_id = transaction_id
        tx.id_tag_status = status
        if status != "Accepted":
            log.info("%s: transaction %d: idTag %s", self.label, transaction_id, status)
            if self.configuration.get_bool("StopTransactionOnInvalidId", True):
                self.spawn(self.stop_transaction, connector.connector_id, "DeAuthorized")
            else:
                self.meters[connector.connector_id].set_active(False)
                self.spawn(self.send_status, connector.connector_id, "SuspendedEVSE")
