"""Reconnect delays: exponential with jitter, capped (BEHAVIOUR.md, Life cycle)."""

from __future__ import annotations

import random

# +/- 20 % jitter keeps successive exponential delays strictly growing (x2 * 0.8 > 1.2)
# while spreading a fleet that lost its CSMS at the same instant.
JITTER = 0.2


def reconnect_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    exponential: bool,
    rng: random.Random,
) -> float:
    """Seconds to wait before reconnect attempt number `attempt` (0 for the first retry)."""
    nominal = base * (2.0**attempt) if exponential else base
    nominal = min(nominal, cap)
    return nominal * rng.uniform(1.0 - JITTER, 1.0 + JITTER)
