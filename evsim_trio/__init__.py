"""evsim-trio: a simulator of OCPP-J charging stations built on Trio."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
