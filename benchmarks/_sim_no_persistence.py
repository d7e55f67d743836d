"""`evsim-trio` with the stations' state persistence switched off: an experiment, not a mode.

`run_bench.py --variant no-persistence` runs the simulator through this file to measure what
the per-station state writes (TOML + fsync in a worker thread, debounced, and flushed before
every StartTransaction / StopTransaction) cost per round trip. Serial numbers are still written
once at build time.
"""

from __future__ import annotations

import sys
from pathlib import Path

from evsim_trio.cli import main
from evsim_trio.station._state_io import StateMixin


def _no_state_path(self: StateMixin) -> Path | None:
    # No path: persist(), flush_state() and run_persistence() all return at once.
    return None


StateMixin._state_path = _no_state_path  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
