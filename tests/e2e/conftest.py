"""Browser tests: make the shared helpers of tests/ (uiclient) importable from tests/e2e.

pytest's default `prepend` import mode puts only a test file's own directory on sys.path, and
tests/e2e has no __init__.py; `nox -s e2e` runs `pytest tests/e2e` alone.
"""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parent.parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
