"""Logging handlers from the `[log]` section; called by the CLI only (library code never does)."""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
from datetime import UTC, datetime
from pathlib import Path

from evsim_trio.config import LogSection

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and exception text)."""

    def format(self, record: logging.LogRecord) -> str:
        """Render `record` as a single JSON line."""
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(section: LogSection, level: str | None = None) -> None:
    """Install console and file handlers on the root logger as `[log]` says."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel((level or section.level).upper())
    formatter: logging.Formatter = (
        JsonFormatter() if section.format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    handlers: list[logging.Handler] = []
    if section.console:
        handlers.append(logging.StreamHandler(sys.stderr))
    if section.file:
        path = Path(section.file)
        path.parent.mkdir(parents=True, exist_ok=True)
        if section.rotate:
            handlers.append(
                logging.handlers.TimedRotatingFileHandler(
                    path, when="midnight", backupCount=section.max_files, encoding="utf-8"
                )
            )
        else:
            handlers.append(logging.FileHandler(path, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    if not handlers:
        root.addHandler(logging.NullHandler())
