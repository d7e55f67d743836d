"""The transaction message queue (BEHAVIOUR.md, Offline queue).

StartTransaction, StopTransaction and transaction MeterValues go through this queue, online or
not, so that they reach the CSMS exactly in the order they happened. While the link is down they
wait here (and in the state file); after the next Accepted registration the sender drains them.
A CALLERROR or a timeout is retried up to TransactionMessageAttempts times, waiting
TransactionMessageRetryInterval x attempts so far (1.6 §4.10 "Error responses to transaction-related
messages"). The queue is bounded: when full, the oldest MeterValues are dropped (never a Start or
a Stop), and each drop is counted and logged.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import attrs
import trio

log = logging.getLogger(__name__)

DEFAULT_CAPACITY = 1000


@attrs.define(eq=False)
class QueuedMessage:
    """One transaction-related CALL waiting to be delivered.

    `local_tx` ties the message to its transaction; the CSMS transaction id is filled into the
    payload at send time (a StopTransaction for a transaction started offline only learns it once
    the StartTransaction was delivered).
    """

    action: str
    payload: dict[str, Any]
    local_tx: int
    attempts: int = 0
    # Set when the CSMS answered (or the message was given up); result holds the answer.
    done: trio.Event = attrs.field(factory=trio.Event, repr=False)
    result: dict[str, Any] | None = None

    def to_state(self) -> dict[str, Any]:
        """Plain data for the state file."""
        return {
            "action": self.action,
            "payload": self.payload,
            "local_tx": self.local_tx,
            "attempts": self.attempts,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> QueuedMessage:
        """Rebuild from `to_state()` output."""
        return cls(
            action=str(state["action"]),
            payload=dict(state["payload"]),
            local_tx=int(state["local_tx"]),
            attempts=int(state.get("attempts", 0)),
        )


class MessageQueue:
    """A bounded FIFO of transaction messages; `wait_nonempty` wakes the sender."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._items: deque[QueuedMessage] = deque()
        self._nonempty = trio.Event()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Any:
        return iter(self._items)

    def push(self, message: QueuedMessage) -> None:
        """Append a message; when over capacity drop the oldest MeterValues."""
        self._items.append(message)
        if len(self._items) > self.capacity:
            for item in self._items:
                if item.action == "MeterValues":
                    self._items.remove(item)
                    item.done.set()
                    self.dropped += 1
                    log.warning(
                        "queue full: dropped a MeterValues of transaction %d", item.local_tx
                    )
                    break
        self._nonempty.set()

    def peek(self) -> QueuedMessage | None:
        """The oldest message, or None."""
        return self._items[0] if self._items else None

    def pop(self) -> QueuedMessage:
        """Remove and return the oldest message."""
        item = self._items.popleft()
        if not self._items:
            self._nonempty = trio.Event()
        return item

    async def wait_nonempty(self) -> None:
        """Wait until there is something to send."""
        if not self._items:
            await self._nonempty.wait()

    def to_state(self) -> list[dict[str, Any]]:
        """Plain data for the state file."""
        return [item.to_state() for item in self._items]

    def load_state(self, state: list[dict[str, Any]]) -> None:
        """Restore messages persisted by `to_state()` (after a restart)."""
        for entry in state:
            self._items.append(QueuedMessage.from_state(entry))
        if self._items:
            self._nonempty.set()
