"""Where the shipped data lives: schemas, station templates and configs.

In a wheel they sit in ``evsim_trio/_data/<name>`` (hatch force-include); in a source checkout or
an editable install they are the top-level directories of the repository.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent

DATA_NAMES = ("schemas", "station_templates", "configs")


def data_dir(name: str) -> Path:
    """Return the directory of shipped data `name` (one of `DATA_NAMES`)."""
    if name not in DATA_NAMES:
        raise ValueError(f"unknown data directory {name!r}")
    installed = _PACKAGE_DIR / "_data" / name
    if installed.is_dir():
        return installed
    checkout = _PACKAGE_DIR.parent / name
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"evsim-trio data directory {name!r} is missing from the installation")
