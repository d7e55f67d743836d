"""Fixtures shared by the in-memory station tests (see memlink.py)."""

from __future__ import annotations

import pytest
import trio
from memlink import MemoryNetwork

from evsim_trio.csms import EmbeddedCsms


@pytest.fixture
def csms_network(nursery: trio.Nursery) -> tuple[EmbeddedCsms, MemoryNetwork]:
    """The embedded CSMS (heartbeat 600 s, out of the way) and a memory network to it."""
    csms = EmbeddedCsms(heartbeat_interval=600)
    return csms, MemoryNetwork(nursery, csms.handle_request)
