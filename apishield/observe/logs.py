"""Log output for ``apishield serve``: one JSON object per line, on standard error.

Audit events are already JSON (see ``pipeline/audit.py``) and are written as they are; every
other record becomes ``{"ts", "level", "logger", "message"}``. Tracebacks of unexpected errors
stay in this log, for the operator, and never reach a client.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import TextIO


class JSONLineFormatter(logging.Formatter):
    """Formats a record as one JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.name == "apishield.audit" and message.startswith("{"):
            return message
        event: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message,
        }
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        return json.dumps(event, separators=(",", ":"))


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> logging.Handler:
    """Send apishield's and uvicorn's logs to ``stream`` as JSON lines; returns the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JSONLineFormatter())
    for name in ("apishield", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    return handler
