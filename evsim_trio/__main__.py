"""`python -m evsim_trio` is the `evsim-trio` command."""

from __future__ import annotations

import sys

from evsim_trio.cli import main

sys.exit(main())
