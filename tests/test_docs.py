"""The README says what the code does: its OCPP support table is generated from the code."""

from __future__ import annotations

import re
from pathlib import Path

from evsim_trio.station._support import SENT, implemented, support_markdown

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_support_table_matches_the_code() -> None:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- support-table:begin -->\n(.*?)<!-- support-table:end -->", text, re.S)
    assert match is not None, "README.md lost its support-table markers"
    assert match.group(1) == support_markdown(), (
        "README.md's OCPP support table is stale; replace it with support_markdown()"
    )


def test_support_table_marks_what_the_station_sends() -> None:
    assert implemented("BootNotification")
    assert "Heartbeat" in SENT
    assert implemented("ReserveNow")
    assert not implemented("SignedUpdateFirmware")  # the security whitepaper is not done
