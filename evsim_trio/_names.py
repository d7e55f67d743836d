"""Names as the UI protocol spells them."""

from __future__ import annotations

__all__ = ["camel"]


def camel(name: str) -> str:
    """snake_case as camelCase (`transactions_started` -> `transactionsStarted`)."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)
