"""Garbage collection for processes that hold a fleet: thousands of long-lived objects each.

CPython's cyclic collector rescans the surviving objects in its older generations again and
again; with a fleet in memory (or a CSMS with thousands of connections), py-spy showed about
40 % of a worker process's time in collections triggered from ordinary allocations. Objects that
live as long as the fleet are moved out of the collector's sight (`gc.freeze`) once they exist,
and young collections run less often. Only for processes we own (the CLI's and the workers'),
never in a library caller's process.
"""

from __future__ import annotations

import gc
from collections.abc import Awaitable, Callable

import trio

__all__ = ["GEN0_THRESHOLD", "freeze_long_lived", "freeze_when_settled", "tune_for_fleet"]

# Allocations between young collections (CPython's default: 700).
GEN0_THRESHOLD = 50_000
# After this long, freeze again whatever the fleet's state (connections made meanwhile).
SETTLE_TIMEOUT = 120.0


def tune_for_fleet() -> None:
    """Fewer young collections; older generations collected at CPython's default ratios."""
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)


def freeze_long_lived() -> None:
    """Collect garbage now, then exempt every surviving object from future collections."""
    gc.collect()
    gc.freeze()


async def freeze_when_settled(wait_settled: Callable[[], Awaitable[object]]) -> None:
    """Freeze now, and again once `wait_settled()` returns (connections and their buffers
    exist), or after SETTLE_TIMEOUT seconds."""
    freeze_long_lived()
    with trio.move_on_after(SETTLE_TIMEOUT):
        await wait_settled()
    freeze_long_lived()
